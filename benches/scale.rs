//! Scale benchmark: does a cycle's cost grow with what changed, not with history?
//!
//! Two databases are built by the release binary in the same run:
//! - *small*: 1,000 open invoices, each with its link recorded, extended and mailed;
//! - *large*: the same 1,000 open invoices plus 1,000,000 settled ones (half paid through
//!   their link, half settled elsewhere with the link deactivated), as years of use leave.
//!
//! The settled history is imported through `invoice-sync import` and then given links and
//! sent mails with plain SQL (a million CM round trips would measure the sandbox, not the
//! database); the 1,000 open invoices go through a real `run` against the embedded sandbox.
//!
//! Measured, each the median of several runs, large against small:
//! - an idle `run` (empty inbox, nothing due): target ≤ 3×;
//! - `status INVOICE`, `resend INVOICE` and `deactivate INVOICE` (the last through the
//!   embedded sandbox): target ≤ 3×;
//! - `status`, `status --json` and `export-paid` on the large database: wall time and peak
//!   RSS, target ≤ 64 MiB.
//!
//! Run: `cargo bench --bench scale` (SETTLED=200000 for a quicker look; SCALE_KEEP=DIR keeps
//! the databases in DIR).

#[path = "../tests/it/common/measure.rs"]
mod measure;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const OPEN: usize = 1000;
const RUNS: usize = 7;

fn main() {
    let settled: usize = std::env::var("SETTLED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // SCALE_KEEP=DIR keeps the two databases there, for a look with EXPLAIN QUERY PLAN.
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var_os("SCALE_KEEP").map_or_else(|| temp.path().to_owned(), PathBuf::from);
    let t = Instant::now();
    let small = Setup::build(&dir.join("small"), 0);
    let large = Setup::build(&dir.join("large"), settled);
    println!(
        "scale bench: {OPEN} open invoices, with and without {settled} settled ones (built in {:.0} s)",
        t.elapsed().as_secs_f64()
    );

    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let mut idle = (Vec::new(), Vec::new());
    let mut lookup = (Vec::new(), Vec::new());
    // Interleaved, so that a noisy moment hits both alike.
    for i in 0..RUNS {
        idle.0.push(small.idle_run());
        idle.1.push(large.idle_run());
        let reference = format!("INV-{:05}", (i * 137) % OPEN);
        lookup.0.push(small.timed(&["status", &reference]).0);
        lookup.1.push(large.timed(&["status", &reference]).0);
        let old = format!("OLD-{:08}", (i * 7919) % settled.max(1));
        if settled > 0 {
            lookup.1.push(large.timed(&["status", &old]).0);
        }
    }
    let (a, b) = (median(&mut idle.0), median(&mut idle.1));
    println!(
        "idle run: {:.3} s with {OPEN} open, {:.3} s with {settled} settled more: {:.2}x (target <= 3x: {})",
        a.as_secs_f64(),
        b.as_secs_f64(),
        b.as_secs_f64() / a.as_secs_f64(),
        verdict(b.as_secs_f64() <= 3.0 * a.as_secs_f64())
    );
    let (a, b) = (median(&mut lookup.0), median(&mut lookup.1));
    println!(
        "status INVOICE: {:.1} ms small, {:.1} ms large: {:.2}x (target <= 3x: {})",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        b.as_secs_f64() / a.as_secs_f64(),
        verdict(b.as_secs_f64() <= 3.0 * a.as_secs_f64())
    );
    // The other look-ups, after the idle runs (they change state).
    let mut resend = (Vec::new(), Vec::new());
    let mut deactivate = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let reference = format!("INV-{:05}", (i * 137 + 11) % OPEN);
        resend.0.push(small.timed(&["resend", &reference]).0);
        resend.1.push(large.timed(&["resend", &reference]).0);
        deactivate
            .0
            .push(small.timed(&["deactivate", &reference]).0);
        deactivate
            .1
            .push(large.timed(&["deactivate", &reference]).0);
    }
    for (name, (mut a, mut b)) in [
        ("resend INVOICE", resend),
        ("deactivate INVOICE", deactivate),
    ] {
        let (a, b) = (median(&mut a), median(&mut b));
        println!(
            "{name}: {:.1} ms small, {:.1} ms large: {:.2}x (target <= 3x: {})",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64(),
            verdict(b.as_secs_f64() <= 3.0 * a.as_secs_f64())
        );
    }
    for args in [&["status"][..], &["status", "--json"], &["export-paid"]] {
        let (wall, rss) = large.timed(args);
        println!(
            "{}: {:.1} s, peak RSS {:.1} MiB (target <= 64 MiB: {})",
            args.join(" "),
            wall.as_secs_f64(),
            rss as f64 / 1024.0,
            verdict(rss <= 64 * 1024)
        );
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Setup {
    config: PathBuf,
}

impl Setup {
    fn build(dir: &Path, settled: usize) -> Setup {
        for sub in ["inbox", "archive", "rejected", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let config = dir.join("invoice-sync.toml");
        std::fs::write(
            &config,
            "[storage]\ndatabase = \"bench.db\"\n\
             [inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\n\
             [cm]\nbase_url = \"sandbox\"\nclient_id = \"bench\"\nclient_secret = \"bench\"\n\
             requests_per_second = 1000\nburst = 1000\nmax_in_flight = 32\n\
             [email]\ntransport = \"file\"\nfile_dir = \"mail\"\nfrom = \"Bench <billing@merchant.example>\"\nmessages_per_second = 1000\n",
        )
        .unwrap();
        let setup = Setup { config };
        if settled > 0 {
            let csv = dir.join("history.csv");
            generate(&csv, "OLD", settled);
            setup.ok(&["import", csv.to_str().unwrap()]);
            std::fs::remove_file(&csv).unwrap();
            settle_history(&dir.join("bench.db"));
        }
        let csv = dir.join("open.csv");
        generate(&csv, "INV", OPEN);
        setup.ok(&["run", csv.to_str().unwrap()]);
        // Whatever the first run left due (nothing, if all went well) goes now.
        setup.ok(&["run"]);
        setup
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_invoice-sync"));
        c.arg("--config").arg(&self.config).arg("-q").args(args);
        c
    }

    fn ok(&self, args: &[&str]) {
        let out = self.command(args).output().expect("spawn invoice-sync");
        assert!(
            out.status.success(),
            "invoice-sync {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn idle_run(&self) -> Duration {
        self.timed(&["run"]).0
    }

    /// Runs the binary with its output to /dev/null; the wall time and peak RSS in KiB.
    fn timed(&self, args: &[&str]) -> (Duration, i64) {
        let m = measure::run(self.command(args));
        assert_eq!(m.code, 0, "invoice-sync {args:?} failed");
        (m.wall, m.peak_rss_kib)
    }
}

/// An export of `rows` open invoices `<prefix>-…`, due in 2027.
fn generate(path: &Path, prefix: &str, rows: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "invoice_reference,customer_email,customer_name,amount,currency,due_date"
    )
    .unwrap();
    let width = if prefix == "INV" { 5 } else { 8 };
    for i in 0..rows {
        let cents = 100 + (i as u64 * 7919) % 9_999_900;
        writeln!(
            w,
            "{prefix}-{i:0width$},customer{i:08}@example.com,Customer {i:08} B.V.,{}.{:02},EUR,2027-{:02}-{:02}",
            cents / 100,
            cents % 100,
            1 + i % 12,
            1 + i % 28,
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// Gives every imported invoice the history a settled invoice has: a link (paid for the
/// even ones, deactivated for the odd ones, whose invoice was settled elsewhere) and its
/// sent mail.
fn settle_history(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "BEGIN;
         INSERT INTO links (invoice_id, revision, merchant_reference, state, link_ref, uri,
                            amount_minor, currency, expiry_date, cm_status, attempts,
                            created_at, activated_at, deactivated_at, deactivation_reason,
                            status_checks, paid_at)
         SELECT i.id, i.revision, i.reference || '/r1',
                CASE WHEN i.id % 2 = 0 THEN 'paid' ELSE 'inactive' END,
                'pml-' || i.id, 'https://pay.example/pml-' || i.id,
                r.due_minor, r.currency, r.due_date || 'T23:59:59Z',
                CASE WHEN i.id % 2 = 0 THEN 'paid' ELSE 'open' END, 1,
                '2024-01-01T00:00:00Z', '2024-01-01T00:00:01Z',
                CASE WHEN i.id % 2 = 0 THEN NULL ELSE '2024-02-01T00:00:00Z' END,
                CASE WHEN i.id % 2 = 0 THEN NULL ELSE 'invoice_not_open' END,
                3,
                CASE WHEN i.id % 2 = 0 THEN '2024-01-20T10:00:00Z' END
         FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision;
         INSERT INTO outbox (invoice_id, revision, link_id, kind, state, message_id, attempts,
                             next_attempt_at, created_at, sent_at)
         SELECT invoice_id, revision, id, 'link', 'sent', '<' || id || '@bench>', 1,
                created_at, created_at, created_at
         FROM links;
         UPDATE invoices SET
             state = CASE WHEN id % 2 = 0 THEN 'paid' ELSE 'settled_elsewhere' END,
             paid_at = CASE WHEN id % 2 = 0 THEN '2024-01-20T10:00:00Z' END,
             settled_at = CASE WHEN id % 2 = 0 THEN NULL ELSE '2024-02-01T00:00:00Z' END,
             updated_at = '2024-02-01T00:00:00Z';
         COMMIT;",
    )
    .unwrap();
}
