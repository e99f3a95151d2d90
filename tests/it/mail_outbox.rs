//! The outbox (README and ARCHITECTURE.md) through `run`, as an operator runs it: links from
//! the CM sandbox, mail to a real SMTP server on loopback over TCP.

use crate::common;
use crate::common::smtp;

use std::time::{Duration, Instant};

use common::{SandboxHost, TestEnv, default_csv};
use invoice_sync::sandbox::SandboxOptions;
use smtp::SmtpServer;

fn smtp_toml(server: &SmtpServer, extra: &str) -> String {
    let tls = if server.ca_file().is_some() {
        format!(
            "smtp_tls = \"starttls\"\nsmtp_ca_file = \"{}\"\n",
            server.ca_file().unwrap().display()
        )
    } else {
        "smtp_tls = \"none\"\n".to_string()
    };
    format!(
        "[email]\ntransport = \"smtp\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\n{tls}\
         from = \"Accounts <billing@merchant.example>\"\nreply_to = \"billing@merchant.example\"\n\
         messages_per_second = 1000\nsmtp_timeout_seconds = 5\n{extra}",
        server.port()
    )
}

fn env_for(host: &SandboxHost, server: &SmtpServer, extra: &str) -> TestEnv {
    TestEnv::new(&common::merge_toml(
        &host.cm_toml(),
        &smtp_toml(server, extra),
    ))
}

fn mail_due_now(env: &TestEnv) {
    env.db()
        .execute(
            "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00Z' WHERE state = 'queued'",
            [],
        )
        .unwrap();
}

fn to_of(m: &smtp::Delivered) -> String {
    m.to.join(",")
}

#[test]
fn every_link_is_mailed_once_over_one_connection() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date,language\n\
         INV-1,ann@example.com,Ann de Vries,\"1.234,56\",2099-12-01,nl\n\
         INV-2,bob@example.com,Bob Smith,10.00,2099-12-02,en\n\
         INV-3,cat@example.com,Cat Müller,20.00,2099-12-03,de\n\
         INV-4,dan@example.com,Dan Dubois,\"1 234,56\",2099-12-04,fr\n\
         INV-5,eve@example.com,Eve,5.00,2099-12-05,es\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("mails 5 sent / 0 queued / 0 failed"),
        "{}",
        r.stderr
    );
    let mails = server.messages();
    assert_eq!(mails.len(), 5);
    assert_eq!(server.connections(), 1, "one connection served every mail");

    let ann = mails
        .iter()
        .find(|m| to_of(m) == "ann@example.com")
        .unwrap();
    let link = env.invoice("INV-1")["link_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let text = ann.text();
    assert!(text.contains(&link), "the link is in the mail");
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(text.contains("text/html") && text.contains("text/plain"));
    assert_eq!(
        ann.header("Message-ID"),
        Some(invoice_sync::mail::message_id(
            "INV-1",
            1,
            "Accounts <billing@merchant.example>"
        ))
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&ann.data)
        .unwrap();
    let body = parsed.body_text(0).unwrap();
    assert!(body.contains("€ 1.234,56"), "nl amount: {body}");
    let bob = mails
        .iter()
        .find(|m| to_of(m) == "bob@example.com")
        .unwrap();
    let parsed = mail_parser::MessageParser::default()
        .parse(&bob.data)
        .unwrap();
    assert!(parsed.body_text(0).unwrap().contains("€10.00"));
    let cat = mails
        .iter()
        .find(|m| to_of(m) == "cat@example.com")
        .unwrap();
    let parsed = mail_parser::MessageParser::default()
        .parse(&cat.data)
        .unwrap();
    assert!(parsed.body_text(0).unwrap().contains("20,00 €"));
    let dan = mails
        .iter()
        .find(|m| to_of(m) == "dan@example.com")
        .unwrap();
    let parsed = mail_parser::MessageParser::default()
        .parse(&dan.data)
        .unwrap();
    assert!(parsed.body_text(0).unwrap().contains("1 234,56 €"));

    for v in env.status() {
        assert_eq!(v["mail_state"], "sent", "{v}");
    }
    // a rerun sends nothing
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 5);
}

#[test]
fn a_550_for_one_recipient_fails_that_mail_only_and_resend_queues_it_again() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    server.reject_permanently("bad@example.com");
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        default_csv(&[
            ("INV-1", "good@example.com", "Good", "10", "2099-12-01"),
            ("INV-2", "bad@example.com", "Bad", "20", "2099-12-01"),
            ("INV-3", "fine@example.com", "Fine", "30", "2099-12-01"),
        ]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("1 mail(s) failed"), "{}", r.stderr);
    assert_eq!(server.message_count(), 2);
    let bad = env.invoice("INV-2");
    assert_eq!(bad["mail_state"], "failed");
    assert!(bad["last_error"].as_str().unwrap().contains("550"), "{bad}");
    assert_eq!(env.invoice("INV-1")["mail_state"], "sent");
    // not retried by itself
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 2);
    // the operator fixes it and resends
    server.accept_again("bad@example.com");
    assert_eq!(env.run(&["resend", "INV-2"]).code, 0);
    assert_eq!(env.invoice("INV-2")["mail_state"], "queued");
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 3);
    assert_eq!(env.invoice("INV-2")["mail_state"], "sent");
    let resent = server.messages().into_iter().last().unwrap();
    assert_ne!(
        resent.header("Message-ID"),
        Some(invoice_sync::mail::message_id(
            "INV-2",
            1,
            "Accounts <billing@merchant.example>"
        )),
        "a resend has a Message-ID of its own"
    );
    assert_eq!(env.run(&["resend", "NOPE"]).code, 1);
}

#[test]
fn a_451_keeps_the_mail_queued_for_a_later_cycle() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    server.reject_temporarily("later@example.com");
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "later@example.com", "Later", "10", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(env.invoice("INV-1")["mail_state"], "queued");
    assert_eq!(server.message_count(), 0);
    // not due yet: the back-off holds it
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(server.message_count(), 0);
    server.accept_again("later@example.com");
    mail_due_now(&env);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 1);
    assert_eq!(env.invoice("INV-1")["mail_state"], "sent");
}

#[test]
fn server_down_then_up_delivers_every_mail_exactly_once() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    let rows: Vec<(String, String)> = (0..8)
        .map(|i| (format!("D-{i}"), format!("d{i}@example.com")))
        .collect();
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for (r, e) in &rows {
        csv.push_str(&format!("{r},{e},10,2099-12-01\n"));
    }
    env.drop_file("a.csv", csv);
    server.stop();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("links 8 created"), "{}", r.stderr);
    assert!(r.stderr.contains("0 sent / 8 queued"), "{}", r.stderr);
    assert!(env.status().iter().all(|v| v["mail_state"] == "queued"));

    server.restart();
    mail_due_now(&env);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mails = server.messages();
    assert_eq!(mails.len(), 8);
    for (_, e) in &rows {
        assert_eq!(mails.iter().filter(|m| &to_of(m) == e).count(), 1, "{e}");
    }
    mail_due_now(&env);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(server.message_count(), 8, "nothing twice");
}

#[test]
fn a_crash_before_the_send_loses_nothing_and_after_it_repeats_at_most_once() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "one@example.com", "One", "10", "2099-12-01")]),
    );
    // killed after the mail was marked `sending`, before the server saw it
    let out = env
        .command()
        .arg("run")
        .env("INVOICE_SYNC_FAILPOINT", "mail-before-send")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    assert_eq!(server.message_count(), 0);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 1, "sent after the crash, once");

    // killed after the server accepted, before the record: the one case of a duplicate,
    // with the same Message-ID so the receiver can tell
    env.drop_file(
        "b.csv",
        default_csv(&[("INV-2", "two@example.com", "Two", "20", "2099-12-01")]),
    );
    let out = env
        .command()
        .arg("run")
        .env("INVOICE_SYNC_FAILPOINT", "mail-after-send")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    assert_eq!(server.message_count(), 2);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let twos: Vec<_> = server
        .messages()
        .into_iter()
        .filter(|m| to_of(m) == "two@example.com")
        .collect();
    assert_eq!(twos.len(), 2);
    assert_eq!(twos[0].header("Message-ID"), twos[1].header("Message-ID"));
    assert_eq!(env.invoice("INV-2")["mail_state"], "sent");
}

#[test]
fn hostile_values_are_escaped_in_html() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\n\
         <b>INV-1</b>,x@example.com,<script>alert(1)</script>,10,2099-12-01\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = &server.messages()[0];
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<b>INV-1</b>"), "{html}");
}

#[test]
fn a_replacement_mail_says_the_earlier_link_no_longer_works_and_settled_gets_none() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    env.drop_file(
        "1.csv",
        "invoice_reference,customer_email,amount,due_date,language\n\
         INV-1,a@example.com,10,2099-12-01,en\n\
         INV-2,b@example.com,20,2099-12-01,en\n",
    );
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(server.message_count(), 2);
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date,language,status\n\
         INV-1,a@example.com,12,2099-12-01,en,open\n\
         INV-2,b@example.com,20,2099-12-01,en,paid\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mails = server.messages();
    assert_eq!(
        mails.len(),
        3,
        "one replacement, nothing for the settled one"
    );
    let last = mails.last().unwrap();
    assert_eq!(to_of(last), "a@example.com");
    let parsed = mail_parser::MessageParser::default()
        .parse(&last.data)
        .unwrap();
    let text = parsed.body_text(0).unwrap().to_lowercase();
    assert!(text.contains("no longer"), "{text}");
    assert!(text.contains("12.00"), "{text}");
}

#[test]
fn a_mail_queued_for_an_invoice_settled_before_it_went_out_is_never_sent() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    env.drop_file(
        "1.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    server.stop();
    assert_eq!(env.run(&["run"]).code, 3);
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date,status\nINV-1,a@example.com,10,2099-12-01,paid\n",
    );
    server.restart();
    mail_due_now(&env);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 0);
    assert_eq!(env.invoice("INV-1")["mail_state"], "none");
}

#[test]
fn auth_and_starttls_with_the_password_from_a_file_or_a_systemd_credential() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::builder()
        .require_auth("mailer", "s3cret-pass")
        .start();
    let pw = std::env::temp_dir().join(format!("pw-{}", std::process::id()));
    std::fs::write(&pw, "s3cret-pass\n").unwrap();
    let env = env_for(
        &host,
        &server,
        &format!(
            "smtp_username = \"mailer\"\nsmtp_password_file = \"{}\"\n",
            pw.display()
        ),
    );
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 1);

    // the same from $CREDENTIALS_DIRECTORY/smtp_password
    let creds = env.path("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("smtp_password"), "s3cret-pass").unwrap();
    let env2 = env_for(&host, &server, "smtp_username = \"mailer\"\n");
    env2.drop_file(
        "a.csv",
        default_csv(&[("INV-9", "z@example.com", "Z", "10", "2099-12-01")]),
    );
    let out = env2
        .command()
        .arg("run")
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.message_count(), 2);

    // a wrong password: kept queued, and the password is never printed
    std::fs::write(&pw, "wrong-pass-value").unwrap();
    env.drop_file(
        "b.csv",
        default_csv(&[("INV-2", "b@example.com", "B", "20", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-pass-value") && !r.stderr.contains("s3cret"));
    assert_eq!(env.invoice("INV-2")["mail_state"], "queued");
    let status = env.run(&["status", "--json"]).stdout;
    assert!(!status.contains("wrong-pass-value") && !status.contains("s3cret"));
    let _ = std::fs::remove_file(&pw);
}

#[test]
fn messages_per_second_is_honoured() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    // overrides the test default of 1000/s
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("messages_per_second = 1000", "messages_per_second = 4");
    std::fs::write(&env.config, text).unwrap();
    let rows: Vec<(String, String)> = (0..9)
        .map(|i| (format!("R-{i}"), format!("r{i}@example.com")))
        .collect();
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for (r, e) in &rows {
        csv.push_str(&format!("{r},{e},10,2099-12-01\n"));
    }
    env.drop_file("a.csv", csv);
    let t0 = Instant::now();
    assert_eq!(env.run(&["run"]).code, 0);
    // 9 mails at 4/s with a burst of 4: at least (9 - 4) / 4 s
    assert!(
        t0.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(server.message_count(), 9);
}

/// The harm seen: after the relay was down for one cycle, some queued mails waited two
/// more minutes (hours after longer outages) while the others went out.
#[test]
fn an_outage_is_one_fault_and_every_queued_mail_goes_out_when_the_relay_answers() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for i in 0..12 {
        csv.push_str(&format!("O-{i:02},o{i}@example.com,10,2099-12-01\n"));
    }
    env.drop_file("a.csv", csv);
    server.stop();
    for _ in 0..3 {
        let r = env.run(&["run"]);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(
            r.stderr.contains("mail server is unavailable"),
            "{}",
            r.stderr
        );
    }
    server.restart();
    // No forcing: the next cycle after the outage sends the whole queue.
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.message_count(), 12);
    assert!(env.status().iter().all(|v| v["mail_state"] == "sent"));
}

#[test]
fn a_4xx_about_one_recipient_backs_off_that_mail_only() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    server.reject_temporarily("full@example.com");
    let env = env_for(&host, &server, "");
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    csv.push_str("B-00,full@example.com,10,2099-12-01\n");
    for i in 1..6 {
        csv.push_str(&format!("B-{i:02},b{i}@example.com,10,2099-12-01\n"));
    }
    env.drop_file("a.csv", csv);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(server.message_count(), 5, "the others went out");
    assert_eq!(env.invoice("B-00")["mail_state"], "queued");
    // Backed off: the next cycle does not try it yet.
    server.accept_again("full@example.com");
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(server.message_count(), 5);
    mail_due_now(&env);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(server.message_count(), 6);
}

/// The mail worker's one step, driven directly: each outcome is recorded as `status`
/// shows it, and the loop around it only decides what to do next.
#[test]
fn send_one_records_each_outcome() {
    use invoice_sync::cycle::{MailOutcome, send_one};
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    server.reject_permanently("gone@example.com");
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        default_csv(&[
            ("W-1", "w1@example.com", "A", "10", "2099-12-01"),
            ("W-2", "gone@example.com", "B", "20", "2099-12-01"),
        ]),
    );
    server.stop();
    assert_eq!(env.run(&["run"]).code, 3, "links made, mails queued");
    let config = invoice_sync::config::Config::load(&env.config).unwrap();
    let store = invoice_sync::store::Store::open(&config.storage.database).unwrap();
    host.rt.block_on(async {
        let services = invoice_sync::services::Services::open(&config)
            .await
            .unwrap();
        let due = |s: &invoice_sync::store::Store| {
            invoice_sync::store::outbox::due(
                s,
                invoice_sync::domain::Timestamp::parse("9999-01-01T00:00:00Z").unwrap(),
                10,
            )
            .unwrap()
        };
        let first = due(&store).into_iter().next().unwrap();
        let outcome = send_one(&store, &config, services.cycle(), &first, false)
            .await
            .unwrap();
        assert!(
            matches!(outcome, MailOutcome::RelayFailed(_)),
            "{outcome:?}"
        );
        server.restart();
        for p in due(&store) {
            let outcome = send_one(&store, &config, services.cycle(), &p, false)
                .await
                .unwrap();
            match p.reference.as_str() {
                "W-1" => assert_eq!(outcome, MailOutcome::Sent),
                _ => assert!(
                    matches!(&outcome, MailOutcome::Failed(r) if r.contains("550")),
                    "{outcome:?}"
                ),
            }
        }
        services.close().await;
    });
    assert_eq!(env.invoice("W-1")["mail_state"], "sent");
    assert_eq!(env.invoice("W-2")["mail_state"], "failed");
    assert_eq!(server.message_count(), 1);
}

/// Links and mail overlap: a link's mail goes out as soon as the link is recorded and
/// given its real expiry, while the cycle is still creating the other links, instead of
/// after the last one (the first customer does not wait for the last link).
#[test]
fn the_first_mail_goes_out_while_links_are_still_being_made() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    // 40 invoices at 20 requests/s (a create and an expiry update each): about 4 s of CM.
    env.write_config(&common::merge_toml(
        &common::merge_toml(
            &host.cm_toml(),
            "[cm]\nrequests_per_second = 20\nburst = 1\nmax_in_flight = 2\n",
        ),
        &smtp_toml(&server, ""),
    ));
    let rows: Vec<(String, String)> = (0..40)
        .map(|i| (format!("INV-{i:02}"), format!("c{i}@example.com")))
        .collect();
    let rows: Vec<(&str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|(r, e)| (r.as_str(), e.as_str(), "Customer", "10.00", "2027-01-01"))
        .collect();
    let f = env.write_file("a.csv", default_csv(&rows));
    let child = env
        .command()
        .args(["run", f.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let links_at_first_mail = loop {
        if server.message_count() > 0 {
            break host.sb().links().len();
        }
        assert!(Instant::now() < deadline, "no mail within a minute");
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.message_count(), 40, "every invoice got its mail");
    assert!(
        links_at_first_mail < 30,
        "the first mail went out only when {links_at_first_mail} of 40 links were made"
    );
}

/// The harm seen: `.eml` files named by a UUID, so an operator could not find a
/// customer's mail; and mails that did not say who the merchant is. Files are named after
/// the invoice and revision, and every mail carries the `[merchant]` identity.
#[test]
fn eml_files_are_named_after_the_invoice_and_mails_show_the_merchant() {
    let env = TestEnv::new(
        "[cm]\nbase_url = \"sandbox\"\nclient_id = \"t\"\nclient_secret = \"t\"\n\
         [merchant]\nname = \"Bloemenhandel Het Tulpje B.V.\"\naddress = \"Dorpsstraat 1, 1234 AB Ergens\"\n\
         kvk = \"12345678\"\niban = \"NL91 ABNA 0417 1643 00\"\n",
    );
    let f = env.write_file(
        "a.csv",
        default_csv(&[
            (
                "F2026/0042",
                "ann@example.com",
                "Ann",
                "10.00",
                "2027-01-01",
            ),
            ("INV-2", "bob@example.com", "Bob", "20.00", "2027-01-01"),
        ]),
    );
    let r = env.run(&["run", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        env.files_in("outbox"),
        ["F2026_0042-r1.eml", "INV-2-r1.eml"]
    );
    // A resend is a mail of its own, beside the first.
    assert_eq!(env.run(&["resend", "INV-2"]).code, 0);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(
        env.files_in("outbox"),
        ["F2026_0042-r1.eml", "INV-2-r1-2.eml", "INV-2-r1.eml"]
    );
    let eml = std::fs::read_to_string(env.path("outbox/INV-2-r1.eml")).unwrap();
    assert!(eml.contains("X-Invoice: INV-2 r1"), "{eml}");
    for shown in [
        "Bloemenhandel Het Tulpje B.V.",
        "Dorpsstraat 1, 1234 AB Ergens",
        "12345678",
        "NL91 ABNA 0417 1643 00",
    ] {
        assert!(eml.contains(shown), "no {shown:?} in {eml}");
    }
    // A bad IBAN or KvK number is a config error naming the key.
    env.write_config("[merchant]\niban = \"NL92ABNA0417164300\"\n");
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("merchant.iban"), "{}", r.stderr);
}

/// With the relay down, a run that queues 300 link mails says so: the summary, the exit-3
/// sentence and `/metrics`' source count the mails really waiting in the outbox, counted
/// after the link stages finished (they queue mails after the mail loop gave up on the
/// relay), not the few queued when the mail loop stopped.
#[test]
fn the_summary_counts_every_mail_waiting_in_the_outbox() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    let rows: Vec<(String, String)> = (0..300)
        .map(|i| (format!("Q-{i:03}"), format!("q{i}@example.com")))
        .collect();
    let rows: Vec<(&str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|(r, e)| (r.as_str(), e.as_str(), "Customer", "10.00", "2099-01-01"))
        .collect();
    env.drop_file("a.csv", default_csv(&rows));
    server.stop();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        300
    );
    assert!(
        r.stderr.contains("mails 0 sent / 300 queued"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("300 mail(s) stay queued"), "{}", r.stderr);
    let queued = env
        .status()
        .into_iter()
        .filter(|v| v["mail_state"] == "queued")
        .count();
    assert_eq!(queued, 300);
}

/// Link mails queued while the relay was down, whose invoices moved on before it came
/// back: one replaced by a new amount, one settled in the accounting, one paid at CM
/// (nobody here knew yet). None of those first mails is ever sent: the replaced invoice
/// gets its replacement mail, the paid one is recorded paid when its link is read just
/// before its mail would have left, and the untouched invoice gets its mail.
#[test]
fn a_queued_link_mail_whose_invoice_was_replaced_settled_or_paid_is_never_sent() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    let rows = [
        ("KEEP-1", "keep@example.com", "K", "10.00", "2099-01-01"),
        ("REPL-1", "repl@example.com", "R", "20.00", "2099-01-01"),
        ("SETL-1", "setl@example.com", "S", "30.00", "2099-01-01"),
        ("PAID-1", "paid@example.com", "P", "40.00", "2099-01-01"),
    ];
    env.drop_file("a.csv", default_csv(&rows));
    server.stop();
    assert_eq!(env.run(&["run"]).code, 3);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        4
    );
    let link = env.invoice("PAID-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    env.drop_file(
        "b.csv",
        "invoice_reference,customer_email,customer_name,amount,outstanding,due_date\n\
         REPL-1,repl@example.com,R,\"25.00\",\"25.00\",2099-01-01\n\
         SETL-1,setl@example.com,S,\"30.00\",\"0.00\",2099-01-01\n",
    );
    server.restart();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let to: Vec<String> = server.messages().iter().map(to_of).collect();
    assert_eq!(to.len(), 2, "{to:?}");
    assert!(to.contains(&"keep@example.com".to_string()), "{to:?}");
    assert!(to.contains(&"repl@example.com".to_string()), "{to:?}");
    let replacement = server
        .messages()
        .into_iter()
        .find(|m| to_of(m) == "repl@example.com")
        .unwrap()
        .text();
    assert!(
        replacement.contains("25.00") || replacement.contains("25,00"),
        "{replacement}"
    );
    assert_eq!(env.invoice("PAID-1")["state"], "paid");
    assert_eq!(env.invoice("SETL-1")["state"], "settled_elsewhere");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'cancelled'"),
        3
    );
    // Nothing is left to go out later.
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(server.message_count(), 2);
}

/// Two mails queued for one invoice while the relay was down (its link mail and a
/// `resend`), and the customer pays meanwhile. When the relay is back, the first mail's
/// send-time read finds the payment; the second is judged on what is true by then (the
/// invoice is paid), not on what was read with the first: one payment, no "paid twice",
/// no mail.
#[test]
fn each_mail_is_judged_on_the_facts_after_the_mail_before_it() {
    let host = SandboxHost::start(SandboxOptions::default());
    let mut server = SmtpServer::start();
    let env = env_for(&host, &server, "");
    env.drop_file(
        "a.csv",
        default_csv(&[("TWO-1", "two@example.com", "T", "10.00", "2099-01-01")]),
    );
    server.stop();
    assert_eq!(env.run(&["run"]).code, 3);
    assert_eq!(env.run(&["resend", "TWO-1"]).code, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        2
    );
    let link = env.invoice("TWO-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    server.restart();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("payments seen 1;"), "{}", r.stderr);
    assert!(!r.stderr.contains("double payment"), "{}", r.stderr);
    assert_eq!(server.message_count(), 0);
    assert_eq!(env.invoice("TWO-1")["state"], "paid");
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'cancelled'"),
        2
    );
}
