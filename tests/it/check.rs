//! `check`: config, database, CM token and mail server, one verdict each.

use crate::common;
use crate::common::smtp;

use common::{SandboxHost, TestEnv};
use invoice_sync::sandbox::SandboxOptions;
use smtp::SmtpServer;

fn env_for(host: &SandboxHost, smtp_port: u16, cm_secret: &str) -> TestEnv {
    let env = TestEnv::new(&common::merge_toml(
        &host.cm_toml().replace("test-secret", cm_secret),
        &format!(
            "[email]\ntransport = \"smtp\"\nsmtp_host = \"localhost\"\nsmtp_port = {smtp_port}\n\
             smtp_timeout_seconds = 3\n"
        ),
    ));
    std::fs::create_dir_all(env.inbox()).unwrap();
    env
}

#[test]
fn everything_ok() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, server.port(), "test-secret");
    let r = env.run(&["check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", r.stdout);
    for (line, what) in lines.iter().zip([
        "config", "database", "inbox", "CM token", "mail", "schedule",
    ]) {
        assert!(line.starts_with(&format!("ok      {what}")), "{line}");
    }
}

#[test]
fn each_failure_is_named_and_no_secret_is_printed() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let port = server.port();
    server.stop();
    let env = env_for(&host, port, "wrong-secret-value");
    std::fs::remove_dir(env.inbox()).unwrap();
    let r = env.run(&["check"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert!(out.contains("ok      config"), "{out}");
    assert!(out.contains("ok      database"), "{out}");
    assert!(out.contains("FAILED  inbox"), "{out}");
    assert!(
        out.contains("FAILED  CM token") && out.contains("credentials"),
        "{out}"
    );
    assert!(out.contains("FAILED  mail"), "{out}");
    assert!(r.stderr.contains("3 check(s) failed"), "{}", r.stderr);
    assert!(!out.contains("wrong-secret-value") && !r.stderr.contains("wrong-secret-value"));
}

#[test]
fn a_bad_config_stops_at_the_first_check() {
    let env = TestEnv::new("");
    std::fs::write(&env.config, "[cm]\nclient_sekret = \"x\"\n").unwrap();
    let r = env.run(&["check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("FAILED  config") && r.stdout.contains("cm.client_sekret"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().count(), 1);
}

#[test]
fn the_next_three_runs_are_printed_as_cron_reads_the_schedule() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = TestEnv::new(&common::merge_toml(
        &host.cm_toml(),
        &format!(
            "[email]\ntransport = \"smtp\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\n\
             [daemon]\nschedule = \"0 9 1,15 * 1\"\n",
            server.port()
        ),
    ));
    std::fs::create_dir_all(env.inbox()).unwrap();
    let r = env.run(&["check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("ok      schedule"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    let times: Vec<chrono::NaiveDateTime> = line
        .split("next runs ")
        .nth(1)
        .unwrap()
        .split(", ")
        .map(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{line}");
    use chrono::{Datelike, Timelike};
    for t in &times {
        assert_eq!((t.hour(), t.minute()), (9, 0), "{line}");
        assert!(
            t.day() == 1 || t.day() == 15 || t.weekday() == chrono::Weekday::Mon,
            "the 1st, the 15th or a Monday: {line}"
        );
    }
    // Over three runs starting any day, at least one is a Monday that is neither the
    // 1st nor the 15th: cron's OR, not AND.
    assert!(
        times
            .iter()
            .any(|t| t.weekday() == chrono::Weekday::Mon && t.day() != 1 && t.day() != 15),
        "{line}"
    );
}

/// The harm seen: `check` reported a corrupted database as ok.
#[test]
fn a_damaged_database_fails_the_check() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, server.port(), "test-secret");
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for i in 0..3000 {
        csv.push_str(&format!("D-{i:05},d{i}@example.com,10.00,2099-12-01\n"));
    }
    let f = env.write_file("a.csv", csv);
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
    let r = env.run(&["check"]);
    assert!(r.stdout.contains("ok      database"), "{}", r.stdout);
    // Overwrite the middle of the file (pages of the tables), keeping its header.
    let db = env.path("state/invoice-sync.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 3..len / 3 + 40_000] {
        *b = 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();
    let r = env.run(&["check"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("FAILED  database"), "{}", r.stdout);
}

/// The harm seen: `check` named the configured token URL, not the one it asked, and
/// said "will retry" about a relay it only checks.
#[test]
fn check_names_what_it_asked_and_does_not_promise_retries() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let port = server.port();
    server.stop();
    let env = env_for(&host, port, "test-secret");
    let r = env.run(&["check"]);
    let token = r
        .stdout
        .lines()
        .find(|l| l.starts_with("ok      CM token"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        token.contains(&format!("{}/auth/v1/token", host.sb().base_url())),
        "{token}"
    );
    let mail = r
        .stdout
        .lines()
        .find(|l| l.starts_with("FAILED  mail"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(!mail.contains("will retry"), "{mail}");
    assert!(mail.contains("does not answer"), "{mail}");
}

/// The harm seen: `check` passed `from = "Acme, Inc. <billing@…>"`, which every mail then
/// failed on. The sender is read as the mail step reads it, when the config is loaded.
#[test]
fn a_sender_the_mail_step_would_refuse_fails_the_config() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, server.port(), "test-secret");
    let base = std::fs::read_to_string(&env.config).unwrap();
    for (from, ok) in [
        ("Acme, Inc. <billing@merchant.example>", false),
        ("Billing <billing@merchant.example", false),
        ("\\\"Acme, Inc.\\\" <billing@merchant.example>", true),
        ("billing@merchant.example", true),
    ] {
        std::fs::write(
            &env.config,
            common::merge_toml(&base, &format!("[email]\nfrom = \"{from}\"\n")),
        )
        .unwrap();
        let r = env.run(&["check"]);
        if ok {
            assert_eq!(r.code, 0, "{from}: {}{}", r.stdout, r.stderr);
        } else {
            assert_eq!(r.code, 1, "{from}: {}{}", r.stdout, r.stderr);
            let all = format!("{}{}", r.stdout, r.stderr);
            assert!(all.contains("email.from"), "{all}");
            assert!(all.contains("is not a sender address"), "{all}");
        }
    }
}
