//! iDEAL QR through the product (README and ARCHITECTURE.md): `run` and `daemon` against the
//! sandbox's payment link and iDEAL QR endpoints, mail to a real SMTP server.

use crate::common;
use crate::common::smtp;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{SandboxHost, TestEnv};
use invoice_sync::sandbox::SandboxOptions;
use mail_parser::MimeHeaders;
use smtp::SmtpServer;

fn qr_toml(host: &SandboxHost, extra: &str) -> String {
    let base = host.sb().base_url();
    format!(
        "[ideal_qr]\nenabled = true\nbase_url = \"{base}\"\n\
         token_url = \"{base}/api/v1/authorization/oauth2/token\"\n\
         return_url = \"https://merchant.example/paid\"\nsize = 200\n\
         description = \"Factuur {{invoice_reference}}\"\n{extra}"
    )
}

fn env_with(host: &SandboxHost, server: Option<&SmtpServer>, extra: &str) -> TestEnv {
    let mut toml = common::merge_toml(&host.cm_toml(), &qr_toml(host, ""));
    toml = common::merge_toml(&toml, extra);
    if let Some(server) = server {
        toml = common::merge_toml(
            &toml,
            &format!(
                "[email]\ntransport = \"smtp\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\n\
                 from = \"Accounts <billing@merchant.example>\"\nmessages_per_second = 1000\n",
                server.port()
            ),
        );
    }
    TestEnv::new(&toml)
}

fn qr_for(host: &SandboxHost, reference: &str) -> Vec<invoice_sync::sandbox::QrRecord> {
    host.sb()
        .qr_transactions()
        .into_iter()
        .filter(|t| t.fields.get("reference").map(|v| v.trim_matches('"')) == Some(reference))
        .collect()
}

fn make_due(env: &TestEnv) {
    let db = env.db();
    db.execute_batch(
        "UPDATE links SET next_check_at = '2000-01-01T00:00:00Z' WHERE state = 'active';
         UPDATE qr_transactions SET next_check_at = '2000-01-01T00:00:00Z' WHERE state = 'open';",
    )
    .unwrap();
}

#[test]
fn every_eur_invoice_with_a_link_gets_a_qr_transaction_with_every_field() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(
        &host,
        None,
        "[cm]\ncallback_url = \"https://merchant.example/cb\"\nlink_expiry_days_after_due = 10\n",
    );
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date,currency,language\n\
         INV-2026-000000000000000000000000000000000000001,a@example.com,\"1.234,56\",2099-12-01,EUR,nl\n\
         USD-1,b@example.com,10.00,2099-12-01,USD,en\n\
         BIG-1,c@example.com,1000000.00,2099-12-01,EUR,en\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("iDEAL QR 1 created / 2 skipped"),
        "{}",
        r.stderr
    );
    let long_ref = "INV-2026-000000000000000000000000000000000000001";
    let t = &qr_for(&host, long_ref)[0];
    let f = |k: &str| t.fields.get(k).cloned().unwrap_or_default();
    assert_eq!(f("amount"), "123456", "integer cents");
    assert_eq!(f("currency"), "\"EUR\"");
    assert_eq!(f("reference"), format!("\"{long_ref}\""));
    let purchase_id: String = serde_json::from_str(&f("purchaseId")).unwrap();
    assert!(purchase_id.len() <= 35, "{purchase_id}");
    assert_eq!(f("description"), format!("\"Factuur {long_ref}\""));
    assert_eq!(
        f("expiresAt"),
        "\"2099-12-11T23:59:59Z\"",
        "the link's expiry"
    );
    assert_eq!(f("size"), "200");
    assert_eq!(f("returnUrl"), "\"https://merchant.example/paid\"");
    assert_eq!(f("language"), "\"nl\"");
    let hooks: serde_json::Value = serde_json::from_str(&f("webhooks")).unwrap();
    assert_eq!(
        hooks,
        serde_json::json!([{"url": format!("https://merchant.example/cb?idealqr={purchase_id}"), "events": ["FINALSTATUS"]}])
    );
    assert!(qr_for(&host, "USD-1").is_empty() && qr_for(&host, "BIG-1").is_empty());
    assert_eq!(env.invoice(long_ref)["qr_url"], serde_json::json!(t.qr_url));
    assert!(env.invoice("USD-1")["qr_url"].is_null());
    // a rerun changes nothing
    let n = host.sb().qr_transactions().len();
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(host.sb().qr_transactions().len(), n);
}

#[test]
fn the_mail_shows_the_qr_code_inline_in_every_language() {
    let host = SandboxHost::start(SandboxOptions::default());
    let server = SmtpServer::start();
    let env = env_with(&host, Some(&server), "");
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date,language\n\
         Q-NL,nl@example.com,10,2099-12-01,nl\n\
         Q-EN,en@example.com,10,2099-12-01,en\n\
         Q-DE,de@example.com,10,2099-12-01,de\n\
         Q-FR,fr@example.com,10,2099-12-01,fr\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mails = server.messages();
    assert_eq!(mails.len(), 4);
    for m in &mails {
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.data)
            .unwrap();
        let html = parsed.body_html(0).unwrap();
        assert!(html.contains("cid:qr"), "{html}");
        // The block says what to do with the code, and names the scheme a customer knows.
        let text = parsed.body_text(0).unwrap();
        for part in [&html, &text] {
            assert!(part.contains("iDEAL"), "{part}");
            assert!(part.to_lowercase().contains("scan"), "{part}");
        }
        let png = parsed
            .attachments()
            .find(|a| a.content_type().is_some_and(|c| c.subtype() == Some("png")))
            .expect("an inline PNG");
        assert!(png.contents().starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}

#[test]
fn a_qr_payment_pays_the_invoice_and_deactivates_its_link_and_both_is_a_double_payment() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, None, "");
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date\n\
         ONE,a@example.com,10,2099-12-01\nTWO,b@example.com,20,2099-12-01\n",
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let one = qr_for(&host, "ONE")[0].id.clone();
    assert_eq!(host.sb().pay_qr(&one), 200);
    make_due(&env);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("payments seen 1"), "{}", r.stderr);
    assert!(r.stderr.contains("1 deactivated"), "{}", r.stderr);
    let inv = env.invoice("ONE");
    assert_eq!(inv["state"], "paid");
    assert_eq!(inv["link_active"], false);
    let link = &host.links_for("ONE")[0];
    assert!(!link.active, "its payment link was deactivated at CM");

    // TWO is paid through both its link and its QR code
    let two_link = env.invoice("TWO")["link_ref"].as_str().unwrap().to_string();
    let two_qr = qr_for(&host, "TWO")[0].id.clone();
    assert_eq!(host.sb().pay(&two_link), 200);
    assert_eq!(host.sb().pay_qr(&two_qr), 200);
    make_due(&env);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("paid twice"), "{}", r.stderr);
    assert!(r.stderr.contains("TWO"), "{}", r.stderr);
    let inv = env.invoice("TWO");
    assert_eq!(inv["state"], "paid");
    assert!(
        inv["last_error"].as_str().unwrap().contains("refund one"),
        "{inv}"
    );
    // both payments are in the export for the accounting
    let export = env.run(&["export-paid"]).stdout;
    assert_eq!(
        export.lines().filter(|l| l.starts_with("TWO,")).count(),
        2,
        "{export}"
    );
    assert_eq!(
        export.lines().filter(|l| l.starts_with("ONE,")).count(),
        1,
        "{export}"
    );
}

#[test]
fn a_replaced_invoice_withdraws_its_qr_which_is_still_followed() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, None, "");
    env.drop_file(
        "1.csv",
        "invoice_reference,customer_email,amount,due_date\nR-1,a@example.com,10,2099-12-01\n",
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let old = qr_for(&host, "R-1")[0].clone();
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date\nR-1,a@example.com,12,2099-12-01\n",
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let all = qr_for(&host, "R-1");
    assert_eq!(all.len(), 2, "a new QR for the new revision");
    let new = all.iter().find(|t| t.id != old.id).unwrap();
    assert_eq!(new.fields.get("amount").map(String::as_str), Some("1200"));
    assert_eq!(env.invoice("R-1")["qr_url"], serde_json::json!(new.qr_url));
    // the customer scans the old, withdrawn code anyway: the payment is still seen
    assert_eq!(host.sb().pay_qr(&old.id), 200);
    make_due(&env);
    env.run_and_see_paid_by_an_earlier_revision("R-1");
}

#[test]
fn a_webhook_makes_the_daemon_fetch_the_transaction_and_show_it_paid() {
    let host = SandboxHost::start(SandboxOptions::default());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = env_with(
        &host,
        None,
        &format!(
            "[cm]\ncallback_url = \"http://127.0.0.1:{port}/callback\"\n\
             [daemon]\nschedule = \"* * * * * *\"\ncallback_listen = \"127.0.0.1:{port}\"\n"
        ),
    );
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,amount,due_date\nW-1,a@example.com,10,2099-12-01\n",
    );
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let mut child = env
        .command()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while qr_for(&host, "W-1").is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(15), "no QR transaction");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let id = qr_for(&host, "W-1")[0].id.clone();
    let paid_at = Instant::now();
    assert_eq!(host.sb().pay_qr(&id), 200); // fires the FINALSTATUS webhook
    while env.invoice("W-1")["state"] != "paid" {
        if paid_at.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!(
                "not paid after the webhook; daemon log:\n{}",
                std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: plain FFI call sending SIGTERM to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn check_asks_the_ideal_qr_token_endpoint_too() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, None, "");
    std::fs::create_dir_all(env.inbox()).unwrap();
    let r = env.run(&["check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("ok      iDEAL QR token"), "{}", r.stdout);
}
