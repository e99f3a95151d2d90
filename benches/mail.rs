//! Mail throughput: 2,000 mails to the loopback test SMTP server, with the connection
//! reused (one session kept open, as the cycle sends) versus a new connection per mail,
//! in one run.
//!
//! Then the configured rate: `messages_per_second = 200` against the same server, which
//! delays its ACKs as real relays do; the figure is the rate reached as a fraction of the
//! configured one (target: at least 0.9).
//!
//! `cargo bench --bench mail` (set `MAIL_BENCH_MESSAGES` for another count). The server
//! is the one the tests use (`tests/it/common/smtp.rs`, included by path so there is one
//! copy and no test code in the library), with no quick-ACK tuning. For the comparison
//! the rate limit is set far above what loopback can do, so it never waits. Messages are
//! rendered and built before the clock starts; their cost is reported on its own line.

#[path = "../tests/it/common/smtp.rs"]
mod smtp;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use invoice_sync::mail::{MailContext, MailSender, Mailer, Templates, compose};

fn context(i: usize) -> MailContext {
    MailContext {
        invoice_reference: invoice_sync::domain::InvoiceRef::parse(&format!("INV-2026-{i:05}"))
            .unwrap(),
        customer_name: format!("Customer {i}"),
        customer_email: format!("customer{i}@customer.example"),
        amount_minor: 10_000 + i as i64,
        currency_code: "EUR".into(),
        currency_exponent: 2,
        due_date: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
        language: ["nl", "en", "de", "fr"][i % 4].into(),
        link_uri: format!("https://pay.example/l/{i:08x}"),
        qr: None,
        replaces_earlier_link: false,
        received_minor: None,
        sender_name: "Accounts".into(),
        merchant: Default::default(),
        reminder: None,
    }
}

struct Run {
    elapsed: Duration,
    connections: usize,
}

async fn send_all(
    sender: &MailSender,
    messages: &[lettre::Message],
    server: &smtp::SmtpServer,
) -> Run {
    let before = server.connections();
    let started = Instant::now();
    for msg in messages {
        sender
            .send(msg)
            .await
            .expect("the loopback server accepts every mail");
    }
    Run {
        elapsed: started.elapsed(),
        connections: server.connections() - before,
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Sends `messages` once over a reused session and once with a connection per mail,
/// to `server`, and prints both rates and their ratio.
async fn compare(label: &str, server: &smtp::SmtpServer, messages: &[lettre::Message]) {
    let n = messages.len();
    let cfg = server.email_config();
    let reused = MailSender::from_config(&cfg).unwrap();
    let Mailer::Smtp(smtp) = Mailer::from_config(&cfg).unwrap() else {
        unreachable!("the test config is SMTP")
    };
    let fresh = MailSender::new(
        Mailer::Smtp(smtp.without_connection_reuse()),
        cfg.messages_per_second,
    );

    // Warm up both paths (the reused session is opened here).
    send_all(&reused, &messages[..20.min(n)], server).await;
    send_all(&fresh, &messages[..20.min(n)], server).await;
    server.clear_messages();

    let reused_run = send_all(&reused, messages, server).await;
    let per_message = send_all(&fresh, messages, server).await;
    assert_eq!(server.message_count(), 2 * n, "every mail arrived");
    server.clear_messages();

    println!("  {label}");
    println!(
        "    connection reused:        {:>8.0} mails/s  {:>6.2} s  {} new connection(s)",
        rate(n, reused_run.elapsed),
        reused_run.elapsed.as_secs_f64(),
        reused_run.connections
    );
    println!(
        "    new connection per mail:  {:>8.0} mails/s  {:>6.2} s  {} new connection(s)",
        rate(n, per_message.elapsed),
        per_message.elapsed.as_secs_f64(),
        per_message.connections
    );
    println!(
        "    ratio reused / per mail:  {:>8.2}x",
        rate(n, reused_run.elapsed) / rate(n, per_message.elapsed)
    );
    reused.mailer().shutdown().await;
}

fn main() {
    let n: usize = std::env::var("MAIL_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let builder = smtp::SmtpServer::builder;
        let plain = builder().start();
        let tls = builder().starttls().start();

        let templates = Templates::builtin();
        let cfg = plain.email_config();
        let started = Instant::now();
        let messages: Vec<_> = (0..n)
            .map(|i| compose(&context(i), 1, None, &templates, &cfg).unwrap().0)
            .collect();
        let compose_time = started.elapsed();
        let bytes: usize = messages.iter().map(|m| m.formatted().len()).sum();

        println!(
            "mail bench: {n} mails of {} bytes on average to a loopback SMTP server (mailin-embedded behind a TCP front, delayed ACKs as real relays)",
            bytes / n.max(1),
        );
        println!(
            "  render + build:             {:>8.0} mails/s  ({:.1} µs each)",
            rate(n, compose_time),
            compose_time.as_secs_f64() * 1e6 / n as f64
        );
        compare("plain SMTP (smtp_tls = \"none\")", &plain, &messages).await;
        compare("STARTTLS (smtp_tls = \"starttls\", test CA)", &tls, &messages).await;
        configured_rate(&plain, &messages, 200).await;
    });
}

/// Sends through the `messages_per_second` limiter set to `per_second`, after a warm-up
/// that opens the session and drains the limiter's burst, and prints the rate reached as
/// a fraction of the configured one.
async fn configured_rate(server: &smtp::SmtpServer, messages: &[lettre::Message], per_second: u32) {
    let mut cfg = server.email_config();
    cfg.messages_per_second = std::num::NonZeroU32::new(per_second).expect("a rate");
    let sender = MailSender::from_config(&cfg).unwrap();
    let burst = (per_second as usize).min(messages.len());
    send_all(&sender, &messages[..burst], server).await;
    let n = (3 * per_second as usize).min(messages.len());
    let run = send_all(&sender, &messages[..n], server).await;
    let reached = rate(n, run.elapsed);
    println!(
        "  configured rate: messages_per_second = {per_second}, {n} mails after a warm-up of {burst}"
    );
    println!(
        "    reached:                  {:>8.1} mails/s  {:>6.2} s  {:.3} of the configured rate (target >= 0.9)",
        reached,
        run.elapsed.as_secs_f64(),
        reached / f64::from(per_second)
    );
    server.clear_messages();
    sender.mailer().shutdown().await;
}
