//! Links and mail overlap: a cycle with many new invoices takes about as long as the
//! slower of its links and its mail, not their sum.
//!
//! Three `run`s of the release binary, each on a fresh installation with the same new
//! invoices (the embedded CM sandbox; mail over SMTP to the loopback test server the tests
//! use, `tests/it/common/smtp.rs`, which delays its ACKs as real relays do):
//! - links alone: CM at `cm.requests_per_second`, mail unthrottled;
//! - mail alone: CM unthrottled, mail at `email.messages_per_second`;
//! - both throttled, as in production.
//!
//! The figure is both / max(links alone, mail alone); target ≤ 1.15 (their sum would be
//! about 2 when the two are equal, as they are set here: each invoice costs two CM
//! requests, a create and the update that sets its real expiry).
//!
//! `cargo bench --bench overlap` (OVERLAP_INVOICES=N for another count; default 500).

#[path = "../tests/it/common/smtp.rs"]
mod smtp;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CM_RATE: u32 = 100;
const MAIL_RATE: u32 = 50;
const FAST: u32 = 100_000;

fn main() {
    let n: usize = std::env::var("OVERLAP_INVOICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let server = smtp::SmtpServer::start();
    println!(
        "overlap bench: {n} new invoices, CM at {CM_RATE} requests/s (2 per invoice), mail at {MAIL_RATE}/s"
    );
    let links = cycle(&server, n, CM_RATE, FAST);
    let mail = cycle(&server, n, FAST, MAIL_RATE);
    let both = cycle(&server, n, CM_RATE, MAIL_RATE);
    let slower = links.max(mail);
    println!("links alone: {:.2} s", links.as_secs_f64());
    println!("mail alone:  {:.2} s", mail.as_secs_f64());
    println!(
        "both:        {:.2} s (their sum would be {:.2} s)",
        both.as_secs_f64(),
        (links + mail).as_secs_f64()
    );
    let ratio = both.as_secs_f64() / slower.as_secs_f64();
    println!(
        "ratio both / slower: {ratio:.2}x (target <= 1.15x: {})",
        if ratio <= 1.15 { "ok" } else { "MISSED" }
    );
}

/// One `run` with `n` new invoices on a fresh installation; its wall time.
fn cycle(server: &smtp::SmtpServer, n: usize, cm_rate: u32, mail_rate: u32) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["inbox", "archive", "rejected"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let config = dir.path().join("invoice-sync.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndatabase = \"bench.db\"\n\
             [inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\n\
             [cm]\nbase_url = \"sandbox\"\nclient_id = \"bench\"\nclient_secret = \"bench\"\n\
             requests_per_second = {cm_rate}\nburst = 1\nmax_in_flight = 8\n\
             [email]\ntransport = \"smtp\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\nsmtp_tls = \"none\"\n\
             from = \"Bench <billing@merchant.example>\"\nmessages_per_second = {mail_rate}\n",
            server.port()
        ),
    )
    .unwrap();
    let csv = dir.path().join("new.csv");
    write_invoices(&csv, n);
    let before = server.message_count();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .arg("--config")
        .arg(&config)
        .args(["-q", "run"])
        .arg(&csv)
        .output()
        .expect("spawn invoice-sync");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.message_count() - before,
        n,
        "every invoice got its mail"
    );
    server.clear_messages();
    elapsed
}

fn write_invoices(path: &Path, n: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "invoice_reference,customer_email,customer_name,amount,currency,due_date"
    )
    .unwrap();
    for i in 0..n {
        writeln!(
            w,
            "INV-{i:05},customer{i}@example.com,Customer {i},{}.{:02},EUR,2027-02-01",
            10 + i,
            i % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}
