//! Payment links (README and ARCHITECTURE.md): the `run` cycle driven through the binary
//! against the CM sandbox over HTTP on loopback.

use crate::common;

use std::time::Duration;

use common::{SandboxHost, TestEnv, default_csv};
use invoice_sync::sandbox::SandboxOptions;

fn env_with(host: &SandboxHost, extra: &str) -> TestEnv {
    TestEnv::new(&common::merge_toml(&host.cm_toml(), extra))
}

fn field(l: &invoice_sync::sandbox::LinkRecord, k: &str) -> Option<String> {
    l.fields.get(k).cloned()
}

#[test]
fn every_field_of_the_create_request() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(
        &host,
        "[cm]\ncallback_url = \"https://merchant.example/invoice-sync/callback\"\n\
         link_expiry_days_after_due = 14\ndefault_language = \"en\"\ndefault_country = \"GB\"\n",
    );
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date,currency,language,country_code\n\
         INV-1,a@example.com,\"1.234,56\",2099-12-01,EUR,nl,be\n\
         INV-2,b@example.com,\"0,10\",2099-12-02,,,\n\
         INV-3,c@example.com,\"99.999.999,99\",2099-12-03,EUR,,\n\
         INV-4,d@example.com,1234,2099-12-04,JPY,,\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l = &host.links_for("INV-1")[0];
    assert_eq!(field(l, "amount").as_deref(), Some("1234.56"));
    assert_eq!(field(l, "currency_code").as_deref(), Some("\"EUR\""));
    assert_eq!(field(l, "invoice_reference").as_deref(), Some("\"INV-1\""));
    assert_eq!(
        field(l, "invoice_due_date").as_deref(),
        Some("\"2099-12-01T00:00:00+00:00\"")
    );
    assert_eq!(
        field(l, "expiry_date").as_deref(),
        Some("\"2099-12-15T23:59:59+00:00\"")
    );
    assert_eq!(
        field(l, "merchant_reference").as_deref(),
        Some("\"INV-1/r1\"")
    );
    assert_eq!(field(l, "language_code").as_deref(), Some("\"NL\""));
    assert_eq!(field(l, "country_code").as_deref(), Some("\"BE\""));
    assert_eq!(
        field(l, "callback_url").as_deref(),
        Some("\"https://merchant.example/invoice-sync/callback\"")
    );
    let l2 = &host.links_for("INV-2")[0];
    assert_eq!(field(l2, "amount").as_deref(), Some("0.10"));
    assert_eq!(
        field(l2, "language_code").as_deref(),
        Some("\"EN\""),
        "default"
    );
    assert_eq!(
        field(l2, "country_code").as_deref(),
        Some("\"GB\""),
        "default"
    );
    assert_eq!(field(l2, "currency_code").as_deref(), Some("\"EUR\""));
    assert_eq!(
        field(&host.links_for("INV-3")[0], "amount").as_deref(),
        Some("99999999.99")
    );
    let l4 = &host.links_for("INV-4")[0];
    assert_eq!(field(l4, "amount").as_deref(), Some("1234"));
    assert_eq!(field(l4, "currency_code").as_deref(), Some("\"JPY\""));

    // status shows each link, active
    let inv = env.invoice("INV-1");
    assert_eq!(inv["link_ref"], serde_json::json!(l.reference));
    assert_eq!(inv["link_uri"], serde_json::json!(l.uri));
    assert_eq!(inv["link_active"], true);
    assert_eq!(host.sb().counters().tokens_issued, 1, "one token reused");
}

#[test]
fn a_second_run_of_the_same_input_is_a_noop() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    let f = env.write_file(
        "a.csv",
        default_csv(&[
            ("INV-1", "a@example.com", "A", "10", "2099-12-01"),
            ("INV-2", "b@example.com", "B", "20", "2099-12-01"),
        ]),
    );
    assert_eq!(env.run(&["run", f.to_str().unwrap()]).code, 0);
    let requests = host.sb().counters().api_requests;
    let status = env.status();
    let r = env.run(&["run", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(host.sb().counters().api_requests, requests, "no API call");
    assert_eq!(env.status(), status);
    assert_eq!(host.sb().links().len(), 2);
}

#[test]
fn a_changed_invoice_gets_its_old_link_deactivated_before_the_new_one_is_created() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "1.csv",
        default_csv(&[
            ("INV-1", "a@example.com", "A", "10", "2099-12-01"),
            ("INV-2", "b@example.com", "B", "20", "2099-12-01"),
        ]),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let old = host.links_for("INV-1")[0].clone();
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date,status\n\
         INV-1,a@example.com,12.50,2099-12-01,open\n\
         INV-2,b@example.com,20,2099-12-01,paid\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("1 replaced"), "{}", r.stderr);

    let links = host.links_for("INV-1");
    assert_eq!(links.len(), 2);
    let new = links.iter().find(|l| l.reference != old.reference).unwrap();
    assert!(!host.sb().link(&old.reference).unwrap().active);
    assert!(new.active);
    assert_eq!(field(new, "amount").as_deref(), Some("12.50"));
    assert_eq!(
        field(new, "merchant_reference").as_deref(),
        Some("\"INV-1/r2\"")
    );
    // order: the PATCH of the old link is answered before the POST of the new one
    let log = host.api_log();
    let patch = log
        .iter()
        .position(|(m, p, _)| m == "PATCH" && p.ends_with(&old.reference))
        .expect("old link deactivated");
    let creates: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (m, p, _))| m == "POST" && p == "/paymentlink/v1.0")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(creates.len(), 3);
    assert!(patch < creates[2], "deactivate before create: {log:?}");

    // settled elsewhere: deactivated, nothing new
    let b = host.links_for("INV-2");
    assert_eq!(b.len(), 1);
    assert!(!b[0].active);
    assert_eq!(env.invoice("INV-2")["state"], "settled_elsewhere");
    assert_eq!(env.invoice("INV-2")["link_active"], false);
    assert_eq!(
        env.invoice("INV-1")["link_ref"],
        serde_json::json!(new.reference)
    );
}

#[test]
fn transient_failures_and_rate_limits_are_retried() {
    let host = SandboxHost::start(SandboxOptions {
        fail_rate: 0.25,
        rate_limit: Some(20),
        ..SandboxOptions::default()
    });
    let env = env_with(&host, "[cm]\nrequests_per_second = 100\nburst = 100\n");
    let rows: Vec<_> = (0..40)
        .map(|i| (format!("INV-{i:03}"), format!("c{i}@example.com")))
        .collect();
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for (r, e) in &rows {
        csv.push_str(&format!("{r},{e},10,2099-12-01\n"));
    }
    env.drop_file("a.csv", csv);
    // Whatever the retries could not save is left for the next cycle; two cycles are
    // enough at these rates.
    let first = env.run(&["run"]);
    assert!(first.code == 0 || first.code == 3, "{}", first.stderr);
    if first.code == 3 {
        let second = env.run(&["run"]);
        assert!(second.code == 0 || second.code == 3, "{}", second.stderr);
    }
    let c = host.sb().counters();
    assert!(
        c.server_errors > 0,
        "the sandbox failed some requests: {c:?}"
    );
    assert!(
        c.rate_limited > 0,
        "the sandbox limited some requests: {c:?}"
    );
    let status = env.status();
    let linked = status.iter().filter(|v| v["link_active"] == true).count();
    assert!(linked >= 38, "{linked} of 40 linked");
    for (r, _) in &rows {
        let active = host.links_for(r).iter().filter(|l| l.active).count();
        assert!(active <= 1, "{r} has {active} active links");
    }
}

#[test]
fn a_permanent_refusal_fails_the_revision_with_the_api_message_until_the_export_changes() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    // KWD has three decimals; the payment link API takes at most two.
    env.drop_file(
        "1.csv",
        "invoice_reference,customer_email,amount,due_date,currency\n\
         K-1,a@example.com,1234.567,2099-12-01,KWD\n\
         E-1,b@example.com,10,2099-12-01,EUR\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
    let k = env.invoice("K-1");
    assert_eq!(k["state"], "failed");
    let err = k["last_error"].as_str().unwrap();
    assert!(err.contains("decimals"), "{err}");
    assert_eq!(env.invoice("E-1")["link_active"], true);

    // unchanged: stays failed, no new request
    let before = host.sb().counters().api_requests;
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date,currency\n\
         K-1,a@example.com,1234.567,2099-12-01,KWD\n",
    );
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(host.sb().counters().api_requests, before);
    assert_eq!(env.invoice("K-1")["state"], "failed");

    // changed: a new revision, a new link
    env.drop_file(
        "3.csv",
        "invoice_reference,customer_email,amount,due_date,currency\n\
         K-1,a@example.com,\"12.34\",2099-12-01,EUR\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let k = env.invoice("K-1");
    assert_eq!(
        (k["state"].as_str(), k["link_active"].as_bool()),
        (Some("open"), Some(true))
    );
    assert!(k["last_error"].is_null());
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "1.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date,status\n\
         INV-1,a@example.com,11,2099-12-01,open\n\
         INV-2,b@example.com,20,2099-12-01,open\n\
         INV-3,bad-address,30,2099-12-01,open\n",
    );
    let requests = host.sb().counters().api_requests;
    let status = env.status();
    let db_bytes = std::fs::read(env.path("state/invoice-sync.db")).unwrap();
    let r = env.run(&["run", "--dry-run"]);
    assert_eq!(r.code, 3, "a row would be rejected: {}", r.stderr);
    assert!(r.stdout.contains("deactivate  INV-1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("replace     INV-1  EUR 11.00"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("create      INV-2  EUR 20.00"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("reject      1 row(s)"), "{}", r.stdout);
    assert_eq!(host.sb().counters().api_requests, requests, "no API call");
    assert_eq!(env.status(), status, "no state change");
    assert_eq!(env.files_in("inbox"), ["2.csv"], "no file moved");
    assert!(env.files_in("rejected").is_empty(), "no report written");
    assert_eq!(env.count("SELECT count(*) FROM imports"), 1);
    // the database file may be checkpointed, but its content is the same
    assert!(!db_bytes.is_empty());
}

#[test]
fn a_second_concurrent_run_exits_75() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(300),
        ..SandboxOptions::default()
    });
    let env = env_with(&host, "[cm]\nmax_in_flight = 1\n");
    let rows: Vec<_> = (0..10)
        .map(|i| (format!("INV-{i}"), "a@example.com", "A", "10", "2099-12-01"))
        .collect();
    let rows: Vec<_> = rows
        .iter()
        .map(|(a, b, c, d, e)| (a.as_str(), *b, *c, *d, *e))
        .collect();
    env.drop_file("a.csv", default_csv(&rows));
    let mut first = env.command().arg("run").spawn().unwrap();
    // wait until the first run is talking to CM
    let t0 = std::time::Instant::now();
    while host.sb().counters().api_requests == 0 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = env.run(&["run"]);
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(second.stderr.contains("run lock"), "{}", second.stderr);
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert_eq!(host.sb().links().len(), 10);
}

#[test]
fn a_crash_after_cm_created_a_link_is_reported_as_a_possible_orphan_and_repaired() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "[cm]\nmax_in_flight = 1\n");
    env.drop_file(
        "a.csv",
        default_csv(&[
            ("INV-1", "a@example.com", "A", "10", "2099-12-01"),
            ("INV-2", "b@example.com", "B", "20", "2099-12-01"),
        ]),
    );
    let out = env
        .command()
        .arg("run")
        .env("INVOICE_SYNC_FAILPOINT", "link-after-create")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    assert_eq!(
        host.sb().links().len(),
        1,
        "CM created one link before the crash"
    );

    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("orphan"), "{}", r.stderr);
    assert!(r.stderr.contains("INV-1/r1"), "{}", r.stderr);
    // every invoice has exactly one active link recorded
    assert_eq!(
        env.count("SELECT count(*) FROM links WHERE state = 'active'"),
        2
    );
    let inv1 = env.invoice("INV-1");
    assert_eq!(inv1["link_active"], true);
    assert!(inv1["last_error"].as_str().unwrap().contains("orphan"));
    // the orphan at CM is the one not recorded
    let at_cm = host.links_for("INV-1");
    assert_eq!(at_cm.len(), 2);
    assert!(
        at_cm
            .iter()
            .any(|l| serde_json::json!(l.reference) == inv1["link_ref"])
    );
    // a third run is a no-op
    assert_eq!(env.run(&["run"]).code, 0);
}

#[test]
fn kill_9_at_random_moments_leaves_one_active_link_per_invoice() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(15),
        ..SandboxOptions::default()
    });
    let env = env_with(
        &host,
        "[cm]\nrequests_per_second = 400\nburst = 20\nmax_in_flight = 8\n",
    );
    let n = 300;
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for i in 0..n {
        csv.push_str(&format!(
            "K-{i:04},c{i}@example.com,{}.00,2099-12-01\n",
            10 + i
        ));
    }
    env.drop_file("big.csv", csv);
    // Deterministic "random" kill moments.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut kills = 0;
    for _ in 0..6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let after = Duration::from_millis(30 + x % 400);
        let mut child = env.command().args(["-q", "run"]).spawn().unwrap();
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(kills > 0, "no run was killed");
    let last = env.run(&["run"]);
    assert!(last.code == 0 || last.code == 3, "{}", last.stderr);
    let fin = env.run(&["run"]);
    assert!(fin.code == 0 || fin.code == 3, "{}", fin.stderr);

    let status = env.status();
    assert_eq!(status.len(), n);
    let orphans: Vec<String> = status
        .iter()
        .filter(|v| {
            v["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("orphan"))
        })
        .map(|v| v["invoice_reference"].as_str().unwrap().to_string())
        .collect();
    for v in &status {
        let reference = v["invoice_reference"].as_str().unwrap();
        assert_eq!(v["link_active"], true, "{reference} has no active link");
        let active_at_cm = host
            .links_for(reference)
            .iter()
            .filter(|l| l.active)
            .count();
        assert!(active_at_cm >= 1, "{reference}");
        if active_at_cm > 1 {
            assert!(
                orphans.iter().any(|o| o == reference),
                "{reference} has {active_at_cm} active links at CM but no orphan was reported"
            );
        }
    }
    // in the database, never more than one live link per invoice
    assert_eq!(
        env.count("SELECT count(*) FROM (SELECT invoice_id FROM links WHERE state = 'active' GROUP BY invoice_id HAVING count(*) > 1)"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM links WHERE state = 'active'"),
        n as i64
    );
    // Once the provisional window has passed, each invoice has exactly one payable link
    // at CM: the one it records.
    host.sb().advance_clock(Duration::from_secs(49 * 3600));
    for v in &status {
        let reference = v["invoice_reference"].as_str().unwrap();
        let payable: Vec<_> = host
            .links_for(reference)
            .into_iter()
            .filter(|l| l.payable)
            .collect();
        assert_eq!(payable.len(), 1, "{reference}: {payable:?}");
        assert_eq!(serde_json::json!(payable[0].reference), v["link_ref"]);
    }
}

#[test]
fn deactivate_command_switches_the_link_off_and_the_cycle_does_not_recreate_it() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let r = env.run(&["deactivate", "INV-1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l = &host.links_for("INV-1")[0];
    assert!(!l.active);
    assert_eq!(env.invoice("INV-1")["link_active"], false);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(host.links_for("INV-1").len(), 1, "not recreated");
    let r = env.run(&["deactivate", "INV-1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no active link"), "{}", r.stderr);
}

#[test]
fn wrong_credentials_stop_the_cycle_without_failing_invoices() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = TestEnv::new(&host.cm_toml().replace("test-secret", "wrong-secret-value"));
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("credentials"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("wrong-secret-value"),
        "secret leaked: {}",
        r.stderr
    );
    assert_eq!(env.invoice("INV-1")["state"], "open");
}

#[test]
fn a_link_cm_records_with_another_amount_is_switched_off_and_never_mailed() {
    let host = SandboxHost::start(SandboxOptions {
        skew_amounts: true,
        ..SandboxOptions::default()
    });
    let env = env_with(&host, "");
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10.00", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["state"], "failed");
    let err = inv["last_error"].as_str().unwrap();
    assert!(err.contains("10.01") && err.contains("10.00"), "{err}");
    let at_cm = host.links_for("INV-1");
    assert_eq!(at_cm.len(), 1);
    assert!(!at_cm[0].active, "switched off in the same cycle");
    assert!(env.files_in("outbox").is_empty(), "never mailed");
    assert_eq!(inv["mail_state"], "none");
}

/// The harm seen on a first try: the dry run said `reject 2 row(s)` without the
/// reasons, logged "imported … links 0 created" against its own plan, and created the
/// database, the lock file and `rejected/`. It explains, and leaves the disk as it was.
#[test]
fn a_first_dry_run_explains_each_rejection_and_leaves_the_disk_as_it_was() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "export.csv",
        "invoice_reference,customer_email,amount,due_date\n\
         INV-1,a@example.com,10.00,2099-12-01\n\
         INV-2,not-an-address,20.00,2099-12-01\n\
         INV-3,c@example.com,twelve,2099-12-01\n",
    );
    let before: Vec<String> = {
        let mut v: Vec<String> = walk(env.dir.path());
        v.sort();
        v
    };
    let r = env.run(&["run", "--dry-run"]);
    assert_eq!(r.code, 3, "rows would be rejected: {}", r.stderr);
    assert!(r.stdout.contains("create      INV-1"), "{}", r.stdout);
    assert!(r.stdout.contains("reject      2 row(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("line 3, column customer_email:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("line 4, column amount:"), "{}", r.stdout);
    // Worded as a plan, never as something done.
    assert!(r.stderr.contains("would import"), "{}", r.stderr);
    assert!(
        r.stderr.contains("1 link(s) would be created"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("0 created"), "{}", r.stderr);
    assert!(!r.stderr.contains(" imported "), "{}", r.stderr);
    let after: Vec<String> = {
        let mut v: Vec<String> = walk(env.dir.path());
        v.sort();
        v
    };
    assert_eq!(after, before, "the disk is as it was");
    assert_eq!(host.sb().counters().api_requests, 0, "no API call");
}

/// Every path under `dir`, relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}
