//! Reminders (README, *Reminders*): the ladder walked day by day with the clock set per
//! run (`INVOICE_SYNC_NOW`, debug builds), against the CM sandbox over HTTP and the
//! `.eml` mail transport, as an operator's cron would run it.
//!
//! The dates are in 2030-31 so that the sandbox (on the real clock) never judges a link
//! expired that the set clock still sees open. Weekdays: 2030-12-02 Mon, 12-09 Mon,
//! 12-12 Thu, 12-14 Sat, 12-19 Thu, 12-21 Sat, 12-23 Mon, 2031-01-02 Thu, 01-04 Sat,
//! 01-06 Mon.

use crate::common;
use crate::common::smtp;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Run, SandboxHost, TestEnv};
use invoice_sync::sandbox::{Faults, Misroute, SandboxOptions};
use smtp::SmtpServer;

const LADDER: &str = "[reminders]\nenabled = true\ndays = [-3, 7, 21]\nmin_gap_days = 3\nsend_window = \"09:00-17:00\"\nsend_weekends = false\n";

/// The ladder `[7, 21]` with the final notice, and the merchant identity it needs.
fn final_notice_ladder() -> String {
    format!(
        "{}final_notice = true\n\n[merchant]\nname = \"Tulpje B.V.\"\naddress = \"Dorpsstraat 1, 1234 AB Ergens\"\n",
        LADDER.replace("[-3, 7, 21]", "[7, 21]")
    )
}

fn env_with(host: &SandboxHost, extra: &str) -> TestEnv {
    TestEnv::new(&common::merge_toml(&host.cm_toml(), extra))
}

/// `invoice-sync ARGS` with the clock set to `at` (RFC 3339) in UTC.
fn run_at(env: &TestEnv, at: &str, args: &[&str]) -> Run {
    env.run_with(args, &[("INVOICE_SYNC_NOW", at), ("TZ", "UTC0")])
}

fn days_from(first: &str, count: i64) -> Vec<String> {
    let start = chrono::NaiveDate::parse_from_str(first, "%Y-%m-%d").unwrap();
    (0..count)
        .map(|i| (start + chrono::Duration::days(i)).to_string())
        .collect()
}

/// Reminder mails recorded: `(invoice, step) -> (kind, day sent)`.
fn reminders_sent(env: &TestEnv) -> BTreeMap<(String, i64), (String, String)> {
    let db = env.db();
    let mut stmt = db
        .prepare(
            "SELECT i.reference, rm.step, rm.kind, substr(o.sent_at, 1, 10)
             FROM reminders rm JOIN invoices i ON i.id = rm.invoice_id
             JOIN outbox o ON o.id = rm.outbox_id
             WHERE rm.outcome = 'sent' AND o.state = 'sent'",
        )
        .unwrap();
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every `.eml` in the outbox folder: (X-Invoice, Message-ID, Subject).
fn emls(env: &TestEnv) -> Vec<(String, String, String)> {
    env.files_in("outbox")
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(env.path("outbox").join(f)).unwrap();
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_string()
            };
            (header("X-Invoice"), header("Message-ID"), header("Subject"))
        })
        .collect()
}

fn csv(rows: &[(&str, &str, &str)]) -> String {
    let mut s =
        String::from("invoice_reference,customer_email,customer_name,amount,due_date,language\n");
    for (r, amount, due) in rows {
        s.push_str(&format!(
            "{r},{r}@example.com,Klant {r},{amount},{due},en\n"
        ));
    }
    s
}

/// The harm seen elsewhere: reminders sent every few minutes by cron, or "past due" the
/// morning after the first mail. Here the whole ladder of two invoices is walked across
/// five weeks, with runs before, inside (twice, as cron every minute would) and after the
/// send window every day: each step goes out once, on its day (a weekend day moves to
/// Monday), inside the window, and each invoice's link outlives each reminder by 14 days.
#[test]
fn a_whole_ladder_across_five_weeks_sends_each_step_once_on_its_day() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    // A is due on a Thursday, B on a Saturday.
    env.drop_file(
        "a.csv",
        csv(&[
            ("A-1", "100.00", "2030-12-12"),
            ("B-1", "250.00", "2030-12-14"),
        ]),
    );
    let first = run_at(&env, "2030-12-02T10:00:00Z", &["run"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("reminders 0 sent / 0 skipped"),
        "the summary counts reminders: {}",
        first.stderr
    );
    assert_eq!(env.files_in("outbox").len(), 2, "the two link mails");
    assert_eq!(env.invoice("A-1")["next_reminder_on"], "2030-12-09");
    assert_eq!(env.invoice("B-1")["next_reminder_on"], "2030-12-11");
    assert_eq!(env.invoice("A-1")["reminders_sent"], 0);

    for day in days_from("2030-12-02", 38) {
        for time in ["07:30:00", "10:00:00", "10:00:40", "19:00:00"] {
            let r = run_at(&env, &format!("{day}T{time}Z"), &["run"]);
            assert_eq!(r.code, 0, "{day} {time}: {}", r.stderr);
        }
        if day == "2030-12-11" {
            // B's +7 step falls on Saturday the 21st: shown, and sent, on Monday.
            assert_eq!(env.invoice("B-1")["next_reminder_on"], "2030-12-23");
        }
        if day == "2030-12-09" {
            let a = env.invoice("A-1");
            assert_eq!(a["reminders_sent"], 1, "{a}");
            assert_eq!(a["next_reminder_on"], "2030-12-19", "{a}");
        }
    }

    let sent = reminders_sent(&env);
    let expect = |r: &str, step: i64, kind: &str, day: &str| {
        assert_eq!(
            sent.get(&(r.to_string(), step)),
            Some(&(kind.to_string(), day.to_string())),
            "{r} step {step}: {sent:?}"
        );
    };
    expect("A-1", -3, "before_due", "2030-12-09");
    expect("A-1", 7, "overdue", "2030-12-19");
    expect("A-1", 21, "overdue", "2031-01-02");
    expect("B-1", -3, "before_due", "2030-12-11");
    expect("B-1", 7, "overdue", "2030-12-23"); // Saturday 12-21 → Monday
    expect("B-1", 21, "overdue", "2031-01-06"); // Saturday 01-04 → Monday
    assert_eq!(sent.len(), 6, "{sent:?}");
    // Every reminder was queued inside the window.
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND substr(created_at, 12, 5) <> '10:00'"),
        0
    );

    // Eight mails in all, each with its own Message-ID.
    let mails = emls(&env);
    assert_eq!(mails.len(), 8, "{mails:?}");
    let ids: std::collections::BTreeSet<_> = mails.iter().map(|m| m.1.clone()).collect();
    assert_eq!(ids.len(), 8, "{mails:?}");
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.2.starts_with("Payment reminder: invoice A-1 is overdue"))
            .count(),
        2,
        "{mails:?}"
    );

    // The ladder is done: nothing planned, three sent each.
    for r in ["A-1", "B-1"] {
        let v = env.invoice(r);
        assert_eq!(v["reminders_sent"], 3, "{v}");
        assert_eq!(v["next_reminder_on"], serde_json::Value::Null, "{v}");
        assert_eq!(v["state"], "open", "{v}");
    }
    // The last reminder's link stays payable 14 full days after it: its expiry was
    // extended at CM (and the sandbox honours it).
    let a_link = host.links_for("A-1").remove(0);
    assert_eq!(
        a_link.fields.get("expiry_date").map(String::as_str),
        Some("\"2031-01-17T23:59:59+00:00\"")
    );
    let sandbox_at = |at: &str| {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap()
    };
    host.sb().advance_clock(sandbox_at("2031-01-16T23:00:00Z"));
    assert!(host.links_for("A-1")[0].payable);
    assert!(host.links_for("B-1")[0].payable);
    host.sb().advance_clock(Duration::from_secs(6 * 24 * 3600));
    assert!(
        !host.links_for("A-1")[0].payable,
        "past its extended expiry"
    );
}

/// An invoice imported long after its due date (or a daemon that was down) has every step
/// due at once: only the latest goes out, the others are recorded as skipped, and not
/// before `min_gap_days` after the link mail.
#[test]
fn steps_due_at_once_send_only_the_latest_and_never_within_the_gap() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    env.drop_file("a.csv", csv(&[("LATE-1", "80.00", "2030-11-01")]));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["run"]).code, 0);
    assert_eq!(env.invoice("LATE-1")["next_reminder_on"], "2030-12-05");
    for day in ["2030-12-03", "2030-12-04"] {
        let r = run_at(&env, &format!("{day}T11:00:00Z"), &["run"]);
        assert!(
            r.stderr.contains("reminders 0 sent / 0 skipped"),
            "{}",
            r.stderr
        );
    }
    let r = run_at(&env, "2030-12-05T11:00:00Z", &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reminders 1 sent / 2 skipped"),
        "{}",
        r.stderr
    );
    let rows: Vec<(i64, String)> = {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT step, outcome FROM reminders ORDER BY step")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        rows,
        vec![
            (-3, "skipped".to_string()),
            (7, "skipped".to_string()),
            (21, "sent".to_string())
        ]
    );
    assert_eq!(
        env.files_in("outbox").len(),
        2,
        "link mail and one reminder"
    );
    // Nothing more: the ladder is done.
    let r = run_at(&env, "2030-12-20T11:00:00Z", &["run"]);
    assert!(
        r.stderr.contains("reminders 0 sent / 0 skipped"),
        "{}",
        r.stderr
    );
    assert_eq!(env.files_in("outbox").len(), 2);
}

/// Odoo warns to reconcile first "to avoid sending a reminder to a customer that has
/// already paid". Here the link was paid after its last status check (the back-off had
/// put the next one a day ahead): the reminder step reads the link from CM just before
/// queueing, records the payment, and sends nothing. `export-paid` lists the payment as
/// before.
#[test]
fn a_link_paid_since_its_last_check_gets_no_reminder_and_the_payment_is_recorded() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    env.drop_file("a.csv", csv(&[("PAID-1", "42.00", "2030-12-12")]));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["run"]).code, 0);
    let link = env.invoice("PAID-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    // The status back-off would not look at it today.
    env.db()
        .execute(
            "UPDATE links SET next_check_at = '2031-06-01T00:00:00Z'",
            [],
        )
        .unwrap();
    assert_eq!(host.sb().pay(&link), 200);
    let before = host.api_log().len();
    let r = run_at(&env, "2030-12-09T10:00:00Z", &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("payments seen 1"), "{}", r.stderr);
    assert!(r.stderr.contains("reminders 0 sent"), "{}", r.stderr);
    let log = host.api_log();
    assert!(
        log[before..]
            .iter()
            .any(|(m, p, _)| m == "GET" && p.contains(&link) && p.ends_with("/status")),
        "the link's status was read before the reminder: {:?}",
        &log[before..]
    );
    let v = env.invoice("PAID-1");
    assert_eq!(v["state"], "paid", "{v}");
    assert_eq!(v["reminders_sent"], 0);
    assert_eq!(v["next_reminder_on"], serde_json::Value::Null);
    assert_eq!(env.count("SELECT count(*) FROM reminders"), 0);
    assert_eq!(env.files_in("outbox").len(), 1, "only the link mail");
    // Paid invoices get nothing more, however long the ladder runs.
    for day in ["2030-12-19", "2031-01-02"] {
        run_at(&env, &format!("{day}T10:00:00Z"), &["run"]);
    }
    assert_eq!(env.files_in("outbox").len(), 1);
    // export-paid is what it was: the same columns, the payment listed.
    let export = run_at(&env, "2031-01-03T10:00:00Z", &["export-paid"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let mut lines = export.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("invoice_reference,amount,currency,paid_at,link_ref,method")
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("PAID-1,42.00,EUR,"), "{row}");
    assert!(row.ends_with(&format!("{link},link")), "{row}");
}

/// A reminder never carries a link that dies before the customer can use it: the link
/// (here made to expire one day after its due date) is extended by PATCH first; when the
/// PATCH fails (a gateway's 404 page), the reminder waits and says so, and goes out in a
/// later cycle once CM answers.
#[test]
fn a_reminders_link_is_extended_first_or_the_reminder_waits() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(
        &host,
        &format!("{LADDER}\n[cm]\nlink_expiry_days_after_due = 1\n").replace("[-3, 7, 21]", "[0]"),
    );
    env.drop_file("a.csv", csv(&[("EXT-1", "15.00", "2030-12-12")]));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["run"]).code, 0);
    let link = env.invoice("EXT-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        host.links_for("EXT-1")[0]
            .fields
            .get("expiry_date")
            .map(String::as_str),
        Some("\"2030-12-13T23:59:59+00:00\"")
    );
    host.sb().set_faults(Faults {
        api: Some(Misroute::NotFoundPage),
        api_method: Some("PATCH".into()),
        ..Faults::default()
    });
    let r = run_at(&env, "2030-12-12T10:00:00Z", &["run"]);
    assert_eq!(r.code, 3, "a deferred request needs a look: {}", r.stderr);
    assert!(
        r.stderr
            .contains("reminders 0 sent / 0 skipped / 1 left for the next cycle"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("could not be extended"), "{}", r.stderr);
    assert_eq!(env.count("SELECT count(*) FROM reminders"), 0);
    assert_eq!(env.files_in("outbox").len(), 1);
    assert_eq!(
        env.invoice("EXT-1")["state"],
        "open",
        "a fault is no verdict"
    );

    host.sb().set_faults(Faults::default());
    let r = run_at(&env, "2030-12-12T11:00:00Z", &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("reminders 1 sent"), "{}", r.stderr);
    assert_eq!(
        host.links_for("EXT-1")[0]
            .fields
            .get("expiry_date")
            .map(String::as_str),
        Some("\"2030-12-27T23:59:59+00:00\""),
        "14 full days after the reminder's day"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM links WHERE link_ref = '{link}' AND expiry_date = '2030-12-27T23:59:59Z'"
        )),
        1
    );
}

/// The final notice: for a consumer (`customer_type` b2c) the last step states the
/// fourteen-day term and the statutory collection costs; a business customer gets an
/// ordinary reminder at the same step.
#[test]
fn a_consumers_last_step_is_the_statutory_final_notice() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, &final_notice_ladder());
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date,language,customer_type\n\
         C-1,c@example.com,\"1.000,00\",2030-12-12,nl,b2c\n\
         B-1,b@example.com,\"1.000,00\",2030-12-12,nl,B2B\n\
         X-1,x@example.com,\"1.000,00\",2030-12-12,nl,consumer\n",
    );
    let r = run_at(&env, "2030-12-02T10:00:00Z", &["run"]);
    assert_eq!(r.code, 3, "one row is rejected: {}", r.stderr);
    let report = std::fs::read_dir(env.path("rejected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".csv"))
        .expect("a rejection report");
    let report = std::fs::read_to_string(report).unwrap();
    assert!(
        report.contains("customer_type,\"\"\"consumer\"\" is not a customer type (b2b or b2c)\""),
        "{report}"
    );
    for day in ["2030-12-19", "2031-01-02"] {
        assert_eq!(run_at(&env, &format!("{day}T10:00:00Z"), &["run"]).code, 0);
    }
    let sent = reminders_sent(&env);
    assert_eq!(sent[&("C-1".to_string(), 7)].0, "overdue");
    assert_eq!(sent[&("C-1".to_string(), 21)].0, "final_notice");
    assert_eq!(sent[&("B-1".to_string(), 21)].0, "overdue");
    let notice = env
        .files_in("outbox")
        .into_iter()
        .map(|f| std::fs::read_to_string(env.path("outbox").join(f)).unwrap())
        .find(|t| t.contains("X-Invoice: C-1") && t.contains("Laatste aanmaning"))
        .expect("the final notice");
    let text = quoted_printable_text(&notice);
    assert!(
        text.contains("binnen veertien dagen, te rekenen vanaf de dag na ontvangst"),
        "{text}"
    );
    // 15 % of € 1.000,00 = € 150,00.
    assert!(
        text.contains(
            "incassokosten verschuldigd volgens het wettelijke tarief (artikel 6:96 BW): € 150,00"
        ),
        "{text}"
    );
    assert!(text.contains("in totaal € 1.150,00"), "{text}");
    assert!(text.contains("uiterlijk op 16 januari 2031"), "{text}");
    assert!(text.contains("Dorpsstraat 1, 1234 AB Ergens"), "{text}");
}

/// The plain-text part of an `.eml`, quoted-printable soft breaks and escapes undone.
fn quoted_printable_text(eml: &str) -> String {
    let joined = eml.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// The final notice names the creditor: without `[merchant]` name and address the
/// config is refused, naming the key.
#[test]
fn the_final_notice_needs_the_merchants_name_and_address() {
    let env = TestEnv::new(&format!(
        "{LADDER}final_notice = true\n\n[merchant]\nname = \"Tulpje B.V.\"\n"
    ));
    let r = env.run(&["check"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("key `merchant.address`: is required when reminders.final_notice = true"),
        "{}",
        r.stdout
    );
    // A cycle refuses to start on it too.
    let r = env.run(&["run"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("merchant.address"), "{}", r.stderr);
}

/// `run --dry-run` lists the reminders it would send (and the steps it would skip) and
/// changes nothing; outside the send window it says they wait.
#[test]
fn a_dry_run_lists_the_reminders_it_would_send() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    env.drop_file("a.csv", csv(&[("DRY-1", "12.50", "2030-12-12")]));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["run"]).code, 0);
    let r = run_at(&env, "2030-12-20T10:00:00Z", &["run", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("remind      DRY-1  step +7 days  overdue  EUR 12.50  due 2030-12-12  mail to DRY-1@example.com  (skips step(s) -3)"),
        "{}",
        r.stdout
    );
    let r = run_at(&env, "2030-12-20T20:00:00Z", &["run", "--dry-run"]);
    assert!(
        r.stdout
            .contains("1 reminder(s) due wait for the send window"),
        "{}",
        r.stdout
    );
    assert_eq!(env.count("SELECT count(*) FROM reminders"), 0);
    assert_eq!(env.invoice("DRY-1")["next_reminder_on"], "2030-12-09");
    assert_eq!(env.files_in("outbox").len(), 1);
}

/// `kill -9` at random moments while reminders are decided and mailed: afterwards every
/// (invoice, step) has exactly one reminder row and one outbox mail, and every `.eml`
/// of one step carries the same Message-ID (a mail the relay took just before the kill
/// may be sent again, recognisably).
#[test]
fn kill_9_at_random_moments_never_sends_a_step_twice() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(5),
        ..SandboxOptions::default()
    });
    let env = env_with(
        &host,
        &format!("{LADDER}\n[cm]\nrequests_per_second = 400\nburst = 20\n"),
    );
    let n = 60;
    let rows: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            (
                format!("K-{i:03}"),
                format!("{}.00", 10 + i),
                "2030-12-12".to_string(),
            )
        })
        .collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    env.drop_file("a.csv", csv(&rows));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["-q", "run"]).code, 0);
    // A crash right before a decision is recorded (after CM was asked).
    let out = env
        .command()
        .args(["-q", "run"])
        .env("INVOICE_SYNC_NOW", "2030-12-09T10:00:00Z")
        .env("TZ", "UTC0")
        .env("INVOICE_SYNC_FAILPOINT", "reminder-before-record")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    for day in ["2030-12-09", "2030-12-19", "2031-01-02"] {
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut child = env
                .command()
                .args(["-q", "run"])
                .env("INVOICE_SYNC_NOW", format!("{day}T10:00:00Z"))
                .env("TZ", "UTC0")
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(20 + x % 250));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            let _ = child.wait();
        }
        let r = run_at(&env, &format!("{day}T16:00:00Z"), &["-q", "run"]);
        assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    }
    assert!(kills > 0, "no run was killed");
    // What a kill in the middle of writing a mail leaves: its partial file (the mail is
    // still queued and is written again whole). The next run clears it away.
    std::fs::write(env.path("outbox/.partial-killed.tmp"), "Subject: half a ma").unwrap();
    let r = run_at(&env, "2031-01-02T16:30:00Z", &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        env.files_in("outbox").iter().all(|f| f.ends_with(".eml")),
        "{:?}",
        env.files_in("outbox")
    );

    assert_eq!(
        env.count("SELECT count(*) FROM reminders WHERE outcome = 'sent'"),
        3 * n
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder'"),
        3 * n,
        "one mail per step"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state <> 'sent'"),
        0
    );
    // One Message-ID per mail decided, whatever the number of files: a step sent again
    // after a kill carries the id of its first sending.
    let decided: std::collections::BTreeSet<String> = {
        let db = env.db();
        let mut stmt = db.prepare("SELECT message_id FROM outbox").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        decided.len() as i64,
        4 * n,
        "link mail + three reminders each"
    );
    let in_files: std::collections::BTreeSet<String> =
        emls(&env).into_iter().map(|m| m.1).collect();
    assert_eq!(in_files, decided);
}

/// Two processes started together (cron and a timer, or cron every minute overlapping a
/// slow run), again and again on every reminder day: one cycle runs, the other exits 75,
/// and each step is mailed once.
#[test]
fn two_processes_racing_send_each_step_once() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(20),
        ..SandboxOptions::default()
    });
    let env = env_with(&host, LADDER);
    let rows: Vec<String> = (0..20).map(|i| format!("R-{i:02}")).collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.as_str(), "20.00", "2030-12-12"))
        .collect();
    env.drop_file("a.csv", csv(&rows));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["-q", "run"]).code, 0);
    for day in ["2030-12-09", "2030-12-19", "2031-01-02"] {
        for round in 0..3 {
            let at = format!("{day}T10:0{round}:00Z");
            let spawn = || {
                env.command()
                    .args(["-q", "run"])
                    .env("INVOICE_SYNC_NOW", &at)
                    .env("TZ", "UTC0")
                    .spawn()
                    .unwrap()
            };
            let (mut a, mut b) = (spawn(), spawn());
            let codes = [a.wait().unwrap().code(), b.wait().unwrap().code()];
            for c in codes {
                assert!(matches!(c, Some(0) | Some(75)), "{codes:?}");
            }
        }
    }
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state = 'sent'"),
        60
    );
    assert_eq!(emls(&env).len(), 80, "20 link mails and 60 reminders");
}

/// The decision and its mail are one transaction under the `(invoice, step)` key: a
/// second decision for the same step (another process that read the same due date) writes
/// nothing at all — no second row, no second mail.
#[test]
fn a_second_decision_for_the_same_step_writes_nothing() {
    use invoice_sync::store::reminders::{Decision, ReminderKind, record};
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    env.drop_file("a.csv", csv(&[("U-1", "20.00", "2030-12-12")]));
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["-q", "run"]).code, 0);
    let (invoice_id, link_id): (i64, i64) = env
        .db()
        .query_row("SELECT invoice_id, id FROM links", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let decision = Decision {
        invoice_id,
        revision: 1,
        link_id,
        step: 7,
        kind: ReminderKind::Overdue,
        skipped: &[-3],
        next_on: chrono::NaiveDate::from_ymd_opt(2031, 1, 2),
        now: invoice_sync::domain::Timestamp::parse("2030-12-19T10:00:00Z").unwrap(),
    };
    // Two connections, as two processes would have.
    let open = || invoice_sync::store::Store::open(&env.path("state/invoice-sync.db")).unwrap();
    let (one, two) = (open(), open());
    assert!(record(&one, &decision).unwrap().is_some());
    assert_eq!(record(&two, &decision).unwrap(), None);
    let again = Decision {
        skipped: &[],
        ..decision.clone()
    };
    assert_eq!(record(&two, &again).unwrap(), None);
    assert_eq!(env.count("SELECT count(*) FROM reminders"), 2);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder'"),
        1
    );
}

/// With reminders off (the default) nothing about them runs or shows in the summary.
#[test]
fn reminders_off_plans_nothing() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file("a.csv", csv(&[("OFF-1", "20.00", "2030-12-12")]));
    let r = run_at(&env, "2030-12-02T10:00:00Z", &["run"]);
    assert!(!r.stderr.contains("reminders"), "{}", r.stderr);
    for day in ["2030-12-09", "2030-12-19"] {
        run_at(&env, &format!("{day}T10:00:00Z"), &["run"]);
    }
    assert_eq!(
        env.invoice("OFF-1")["next_reminder_on"],
        serde_json::Value::Null
    );
    assert_eq!(env.files_in("outbox").len(), 1);
    // Switched on later: the dates are computed for the open invoices, once.
    env.write_config(&common::merge_toml(&host.cm_toml(), LADDER));
    let dry = run_at(&env, "2030-12-19T10:00:00Z", &["run", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("remind      OFF-1  step +7 days"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        env.invoice("OFF-1")["next_reminder_on"],
        serde_json::Value::Null
    );
    let r = run_at(&env, "2030-12-19T10:00:00Z", &["run"]);
    assert!(
        r.stderr.contains("reminders 1 sent / 1 skipped"),
        "{}",
        r.stderr
    );
}

/// A changed invoice (a new revision) gets its replacement mail, then the ladder goes on
/// from the steps already sent, counting the gap from the replacement; an invoice the
/// export settles elsewhere gets nothing more.
#[test]
fn a_new_revision_continues_the_ladder_and_a_settled_invoice_leaves_it() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    env.drop_file(
        "a.csv",
        csv(&[
            ("REV-1", "100.00", "2030-12-12"),
            ("SET-1", "50.00", "2030-12-12"),
        ]),
    );
    assert_eq!(run_at(&env, "2030-12-02T10:00:00Z", &["run"]).code, 0);
    let r = run_at(&env, "2030-12-09T10:00:00Z", &["run"]);
    assert!(r.stderr.contains("reminders 2 sent"), "{}", r.stderr);
    // The next export: REV-1 now asks less (a partial payment), SET-1 is paid elsewhere.
    env.drop_file(
        "b.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date,language,status\n\
         REV-1,REV-1@example.com,Klant REV-1,80.00,2030-12-12,en,\n\
         SET-1,SET-1@example.com,Klant SET-1,50.00,2030-12-12,en,paid\n",
    );
    let r = run_at(&env, "2030-12-18T10:00:00Z", &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("1 replaced"), "{}", r.stderr);
    assert!(
        r.stderr.contains("reminders 0 sent"),
        "the replacement mail, not a reminder: {}",
        r.stderr
    );
    let v = env.invoice("REV-1");
    // Step 7 is on the 19th, but the replacement went out on the 18th: the 21st, a
    // Saturday, so Monday the 23rd.
    assert_eq!(v["next_reminder_on"], "2030-12-23", "{v}");
    assert_eq!(env.invoice("SET-1")["state"], "settled_elsewhere");
    assert_eq!(
        env.invoice("SET-1")["next_reminder_on"],
        serde_json::Value::Null
    );
    for day in days_from("2030-12-19", 20) {
        assert_eq!(run_at(&env, &format!("{day}T10:00:00Z"), &["run"]).code, 0);
    }
    let sent = reminders_sent(&env);
    assert_eq!(sent[&("REV-1".to_string(), -3)].1, "2030-12-09");
    assert_eq!(sent[&("REV-1".to_string(), 7)].1, "2030-12-23");
    assert_eq!(sent[&("REV-1".to_string(), 21)].1, "2031-01-02");
    assert_eq!(
        sent.keys().filter(|k| k.0 == "SET-1").count(),
        1,
        "only the -3 step: {sent:?}"
    );
    // The reminders after the change carry the new link and the new amount.
    let revisions: Vec<i64> = {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT revision FROM outbox WHERE kind = 'reminder' AND invoice_id = (SELECT id FROM invoices WHERE reference = 'REV-1') ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(revisions, vec![1, 2, 2]);
}

/// `send_window` is local time: with the process in Central European Time (a POSIX TZ
/// string, so no time zone database is needed), 07:30 UTC is 08:30 local (outside
/// 09:00-17:00) and 08:30 UTC is 09:30 (inside); 16:30 UTC is 17:30 (outside again).
#[test]
fn the_send_window_is_local_time() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, LADDER);
    env.drop_file("a.csv", csv(&[("TZ-1", "30.00", "2030-12-12")]));
    let cet =
        |at: &str, args: &[&str]| env.run_with(args, &[("INVOICE_SYNC_NOW", at), ("TZ", "CET-1")]);
    assert_eq!(cet("2030-12-02T10:00:00Z", &["run"]).code, 0);
    for at in ["2030-12-09T07:30:00Z", "2030-12-09T16:30:00Z"] {
        let r = cet(at, &["run"]);
        assert!(
            r.stderr
                .contains("reminders 0 sent / 0 skipped / 1 waiting for the send window"),
            "{at}: {}",
            r.stderr
        );
    }
    let r = cet("2030-12-09T08:30:00Z", &["run"]);
    assert!(r.stderr.contains("reminders 1 sent"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// True when it leaves (README, *Reminders*): a mail that waited in the outbox, because the
// real loopback relay was down, is checked again on the day it finally leaves.

/// `[email]` for the loopback relay.
fn relay_toml(server: &SmtpServer) -> String {
    format!(
        "[email]\ntransport = \"smtp\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\nsmtp_tls = \"none\"\n\
         from = \"{}\"\nmessages_per_second = 1000\nsmtp_timeout_seconds = 5\n",
        server.port(),
        smtp::TEST_FROM
    )
}

fn relay_env(host: &SandboxHost, server: &SmtpServer, extra: &str) -> TestEnv {
    TestEnv::new(&common::merge_toml(
        &common::merge_toml(&host.cm_toml(), &relay_toml(server)),
        extra,
    ))
}

/// The mails the relay accepted for one address, as text.
fn delivered_to(server: &SmtpServer, address: &str) -> Vec<String> {
    server
        .messages()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
        .map(|m| m.text())
        .collect()
}

/// The reminder rows of an invoice: `step -> (outcome, outbox state)`.
fn steps_of(env: &TestEnv, reference: &str) -> BTreeMap<i64, (String, String)> {
    let db = env.db();
    let mut stmt = db
        .prepare(
            "SELECT rm.step, rm.outcome, coalesce(o.state, '-')
             FROM reminders rm JOIN invoices i ON i.id = rm.invoice_id
             LEFT JOIN outbox o ON o.id = rm.outbox_id WHERE i.reference = ?1",
        )
        .unwrap();
    stmt.query_map([reference], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The expiry CM holds for an invoice's newest link, as sent.
fn cm_expiry(host: &SandboxHost, reference: &str) -> String {
    let link = host.links_for(reference).pop().expect("a link at CM");
    link.fields["expiry_date"].trim_matches('"').to_string()
}

/// The burst seen in probing: the link mail on 1 March, the relay down from 2 March to 5
/// April while runs went on every day. The ladder decided -3, +7 and +21 meanwhile; when
/// the relay answers again the customer gets exactly one mail, the latest step, whose link
/// works 14 full days after the day it actually left; the earlier steps are recorded
/// skipped, and nothing follows.
#[test]
fn after_a_five_week_relay_outage_one_mail_leaves_the_latest_step_with_a_link_for_14_days() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let ladder = LADDER.replace("send_weekends = false", "send_weekends = true");
    let env = relay_env(&host, &server, &ladder);
    env.drop_file("a.csv", csv(&[("OUT-1", "100.00", "2031-03-10")]));
    let first = run_at(&env, "2031-03-01T10:00:00Z", &["run"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(delivered_to(&server, "OUT-1@example.com").len(), 1);

    server.stop();
    for day in days_from("2031-03-02", 34) {
        let r = run_at(&env, &format!("{day}T10:00:00Z"), &["run"]);
        assert!(r.code == 0 || r.code == 3, "{day}: {}", r.stderr);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM reminders"),
        3,
        "the ladder went on deciding while the relay was down"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state = 'queued'"),
        1,
        "an earlier step still queued is skipped once a later one is decided"
    );

    // The dry run asks the same send-time question: the one queued reminder would go.
    let dry = run_at(&env, "2031-04-05T10:00:00Z", &["run", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("1 queued mail(s) that are due would be sent"),
        "{}",
        dry.stdout
    );
    server.restart();
    let back = run_at(&env, "2031-04-05T10:00:00Z", &["run"]);
    assert_eq!(back.code, 0, "{}", back.stderr);
    let mails = delivered_to(&server, "OUT-1@example.com");
    assert_eq!(mails.len(), 2, "the link mail and exactly one reminder");
    assert!(
        mails[1].contains("Subject: Payment reminder: invoice OUT-1 is overdue"),
        "{}",
        mails[1]
    );
    assert!(
        back.stderr.contains("mails 1 sent / 0 queued"),
        "{}",
        back.stderr
    );
    let steps = steps_of(&env, "OUT-1");
    assert_eq!(
        steps[&-3],
        ("skipped".into(), "cancelled".into()),
        "{steps:?}"
    );
    assert_eq!(
        steps[&7],
        ("skipped".into(), "cancelled".into()),
        "{steps:?}"
    );
    assert_eq!(steps[&21], ("sent".into(), "sent".into()), "{steps:?}");
    // Sent on 5 April: payable through 19 April at least (extended on the send day).
    let expiry = chrono::DateTime::parse_from_rfc3339(&cm_expiry(&host, "OUT-1")).unwrap();
    assert!(
        expiry >= chrono::DateTime::parse_from_rfc3339("2031-04-19T23:59:59Z").unwrap(),
        "{expiry}"
    );
    // Nothing more follows: the ladder is done.
    for day in days_from("2031-04-06", 10) {
        assert_eq!(run_at(&env, &format!("{day}T10:00:00Z"), &["run"]).code, 0);
    }
    assert_eq!(delivered_to(&server, "OUT-1@example.com").len(), 2);
}

/// A consumer's final notice decided on Friday 17 October 2031 with the relay down leaves
/// on Monday the 20th. Worded on the send day it gives the customer until 3 November, after
/// the clocks went back (26 October): the link must work through the end of that day in
/// Amsterdam, `2031-11-03T23:59:59+01:00`, not a day the decision computed, and not the end
/// of the day in UTC or in summer time.
#[test]
fn a_final_notice_that_waited_has_its_link_cover_its_deadline_day_in_local_time() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = relay_env(&host, &server, &final_notice_ladder());
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date,language,customer_type\n\
         NOT-1,not@example.com,\"1.000,00\",2031-09-26,nl,b2c\n",
    );
    let amsterdam = |at: &str, args: &[&str]| {
        env.run_with(
            args,
            &[("INVOICE_SYNC_NOW", at), ("TZ", "Europe/Amsterdam")],
        )
    };
    assert_eq!(amsterdam("2031-09-19T10:00:00+02:00", &["run"]).code, 0);
    assert_eq!(amsterdam("2031-10-03T10:00:00+02:00", &["run"]).code, 0);
    assert_eq!(delivered_to(&server, "not@example.com").len(), 2);

    server.stop();
    let decided = amsterdam("2031-10-17T10:00:00+02:00", &["run"]);
    assert_eq!(decided.code, 3, "{}", decided.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state = 'queued'"),
        1
    );
    server.restart();
    let sent = amsterdam("2031-10-20T10:00:00+02:00", &["run"]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let mails = delivered_to(&server, "not@example.com");
    assert_eq!(mails.len(), 3);
    let notice = quoted_printable_text(&mails[2]);
    assert!(notice.contains("Laatste aanmaning"), "{notice}");
    assert!(notice.contains("3 november 2031"), "{notice}");
    assert_eq!(
        cm_expiry(&host, "NOT-1"),
        "2031-11-04T23:59:59+01:00",
        "through the deadline day and one more, in Amsterdam's winter time"
    );
    // The sandbox (on the real clock) finds it payable at 23:30 on the deadline day.
    let until = chrono::DateTime::parse_from_rfc3339("2031-11-03T22:30:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    host.sb()
        .advance_clock((until - chrono::Utc::now()).to_std().unwrap());
    assert!(host.links_for("NOT-1")[0].payable);
}

/// The customer pays while a reminder waits for the relay; when the relay is back, CM
/// answers 503 to the status read. The reminder is not sent on a guess: it waits, the
/// run says so (exit 3), the next cycle sees the payment, and no reminder ever goes out.
#[test]
fn a_reminder_waits_when_cm_cannot_say_the_link_is_unpaid_and_a_payer_never_gets_it() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = relay_env(&host, &server, LADDER);
    env.drop_file("a.csv", csv(&[("PAY-1", "42.00", "2031-03-12")]));
    assert_eq!(run_at(&env, "2031-03-03T10:00:00Z", &["run"]).code, 0);
    server.stop();
    let queued = run_at(&env, "2031-03-10T10:00:00Z", &["run"]);
    assert_eq!(queued.code, 3, "{}", queued.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state = 'queued'"),
        1
    );
    let link = env.invoice("PAY-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    host.sb().set_faults(Faults {
        api: Some(Misroute::Unavailable),
        api_method: Some("GET".into()),
        ..Faults::default()
    });
    server.restart();
    let guarded = run_at(&env, "2031-03-10T11:00:00Z", &["run"]);
    assert_eq!(guarded.code, 3, "{}", guarded.stderr);
    assert!(
        guarded
            .stderr
            .contains("waiting for CM to confirm the link"),
        "{}",
        guarded.stderr
    );
    assert!(
        guarded.stderr.contains("never sent on a guess"),
        "{}",
        guarded.stderr
    );
    assert_eq!(delivered_to(&server, "PAY-1@example.com").len(), 1);

    host.sb().set_faults(Faults::default());
    for at in [
        "2031-03-10T12:00:00Z",
        "2031-03-11T10:00:00Z",
        "2031-03-20T10:00:00Z",
    ] {
        let r = run_at(&env, at, &["run"]);
        assert_eq!(r.code, 0, "{at}: {}", r.stderr);
    }
    assert_eq!(env.invoice("PAY-1")["state"], "paid");
    assert_eq!(
        delivered_to(&server, "PAY-1@example.com").len(),
        1,
        "only the link mail, ever"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state = 'cancelled'"),
        1
    );
}
