//! Payment status (README and ARCHITECTURE.md): links are checked on a back-off schedule, so
//! a cycle's calls grow with what is due, not with every open link ever made.

use crate::common;

use common::{SandboxHost, TestEnv};
use invoice_sync::sandbox::SandboxOptions;

fn linked_env(host: &SandboxHost, n: usize, extra: &str) -> TestEnv {
    let env = TestEnv::new(&common::merge_toml(&host.cm_toml(), extra));
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for i in 0..n {
        csv.push_str(&format!(
            "P-{i:03},c{i}@example.com,{}.00,2099-12-01\n",
            10 + i
        ));
    }
    env.drop_file("a.csv", csv);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    env
}

fn status_gets(host: &SandboxHost) -> usize {
    host.api_log()
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.ends_with("/status"))
        .count()
}

/// Makes these invoices' links due for a check, as if their back-off time had come.
fn make_due(env: &TestEnv, refs: &[&str]) {
    for r in refs {
        env.db()
            .execute(
                "UPDATE links SET next_check_at = '2000-01-01T00:00:00Z'
                 WHERE invoice_id = (SELECT id FROM invoices WHERE reference = ?1)",
                [r],
            )
            .unwrap();
    }
}

#[test]
fn new_links_are_not_checked_at_once_and_due_ones_are() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = linked_env(&host, 50, "");
    assert_eq!(status_gets(&host), 0, "a link just made is checked later");
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(status_gets(&host), 0, "nothing is due yet");

    make_due(&env, &["P-001", "P-002", "P-003", "P-004", "P-005"]);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(status_gets(&host), 5, "only the due links are asked");
    // checked once: the next check backs off (30 minutes)
    let next: String = env
        .db()
        .query_row(
            "SELECT next_check_at FROM links l JOIN invoices i ON i.id = l.invoice_id WHERE i.reference = 'P-001'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(next.as_str() > "2026-01-01", "{next}");
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        status_gets(&host),
        5,
        "no new checks until the back-off passes"
    );
}

#[test]
fn a_paid_link_makes_the_invoice_paid_with_paid_at() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = linked_env(&host, 3, "");
    let link = env.invoice("P-001")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    make_due(&env, &["P-001", "P-002"]);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("payments seen 1"), "{}", r.stderr);
    let inv = env.invoice("P-001");
    assert_eq!(inv["state"], "paid");
    assert!(inv["paid_at"].as_str().unwrap().starts_with("20"));
    assert_eq!(inv["link_active"], false);
    assert_eq!(env.invoice("P-002")["state"], "open");
    // a paid invoice is never asked again, even when the export still lists it open
    let before = status_gets(&host);
    env.drop_file(
        "b.csv",
        "invoice_reference,customer_email,amount,due_date\nP-001,c1@example.com,11.00,2099-12-01\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("P-001")["state"], "paid");
    assert_eq!(host.links_for("P-001").len(), 1, "no new link");
    assert_eq!(status_gets(&host), before);
}

#[test]
fn an_expired_link_makes_the_invoice_expired() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = linked_env(&host, 2, "[cm]\nlink_expiry_days_after_due = 14\n");
    env.db()
        .execute(
            "UPDATE links SET expiry_date = '2001-01-01T23:59:59+00:00'
             WHERE invoice_id = (SELECT id FROM invoices WHERE reference = 'P-000')",
            [],
        )
        .unwrap();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inv = env.invoice("P-000");
    assert_eq!(inv["state"], "expired");
    assert_eq!(inv["link_active"], false);
    assert_eq!(env.invoice("P-001")["state"], "open");
    assert_eq!(status_gets(&host), 1, "one last check before expiring");
}

#[test]
fn a_link_paid_before_its_replacement_is_recorded_as_paid() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = linked_env(&host, 1, "");
    let link = env.invoice("P-000")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    // the export changes the amount before the payment was seen
    env.drop_file(
        "b.csv",
        "invoice_reference,customer_email,amount,due_date\nP-000,c0@example.com,99.00,2099-12-01\n",
    );
    env.run_and_see_paid_by_an_earlier_revision("P-000");
    assert_eq!(
        host.links_for("P-000").len(),
        1,
        "no replacement for a paid invoice"
    );
}

#[test]
fn export_paid_lists_payments_with_formulas_neutralised() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = TestEnv::new(&host.cm_toml());
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date,currency\n\
         =1+1,a@example.com,\"1.234,50\",2099-12-01,EUR\n\
         P-2,b@example.com,20,2099-12-01,JPY\n\
         P-3,c@example.com,30,2099-12-01,EUR\n",
    );
    assert_eq!(env.run(&["run"]).code, 0);
    for r in ["=1+1", "P-2"] {
        let link = env.invoice(r)["link_ref"].as_str().unwrap().to_string();
        assert_eq!(host.sb().pay(&link), 200);
    }
    make_due(&env, &["=1+1", "P-2", "P-3"]);
    assert_eq!(env.run(&["run"]).code, 0);

    let r = env.run(&["export-paid"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut rdr = csv::Reader::from_reader(r.stdout.as_bytes());
    assert_eq!(
        rdr.headers().unwrap(),
        vec![
            "invoice_reference",
            "amount",
            "currency",
            "paid_at",
            "link_ref",
            "method"
        ]
    );
    let mut rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    rows.sort();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], "'=1+1");
    assert_eq!(
        (rows[0][1].as_str(), rows[0][2].as_str()),
        ("1234.50", "EUR")
    );
    assert_eq!(
        (
            rows[1][0].as_str(),
            rows[1][1].as_str(),
            rows[1][2].as_str()
        ),
        ("P-2", "20", "JPY")
    );
    assert!(
        rows[1][3].starts_with("20") && rows[1][3].ends_with('Z'),
        "{}",
        rows[1][3]
    );
    assert_eq!(rows[1][4], env.invoice("P-2")["link_ref"].as_str().unwrap());
    assert_eq!(rows[1][5], "link", "the method column");

    let out = env.path("paid.csv");
    let r = env.run(&[
        "export-paid",
        "--since",
        "2999-01-01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "invoice_reference,amount,currency,paid_at,link_ref,method\n"
    );
    assert_eq!(env.run(&["export-paid", "--since", "yesterday"]).code, 2);
}
