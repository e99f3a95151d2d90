//! Ingest benchmark: a generated 1,000,000-row export in the default layout (~93 MB)
//! imported into a fresh database by the release binary, beside a baseline in the same
//! run: the `sqlite3` CLI's `.import` of the same file into one table with a primary key
//! (or plain rusqlite inserts of the raw strings when the CLI is absent).
//!
//! Run: `cargo bench --bench ingest` (ROWS=200000 for a quicker look). Prints wall times,
//! rows/s, peak RSS of the import process, and the ratios against the targets: within
//! 2x of the baseline, peak RSS under 64 MiB, re-import under 10 % of the first import.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("export.csv");
    generate(&csv, rows);
    let size = std::fs::metadata(&csv).unwrap().len();
    println!(
        "ingest bench: {rows} rows, {:.1} MB, default layout",
        size as f64 / 1e6
    );

    // Baseline first, so the page cache is equally warm for both.
    let (base_name, base_time) = baseline(dir.path(), &csv);
    println!(
        "baseline ({base_name}): {:.2} s, {:.0} rows/s",
        base_time.as_secs_f64(),
        rows as f64 / base_time.as_secs_f64()
    );

    let config = dir.path().join("invoice-sync.toml");
    std::fs::write(
        &config,
        "[storage]\ndatabase = \"bench.db\"\n[inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\n",
    )
    .unwrap();
    let (first, rss_kib) = import(&config, &csv);
    println!(
        "invoice-sync import: {:.2} s, {:.0} rows/s, peak RSS {:.1} MiB",
        first.as_secs_f64(),
        rows as f64 / first.as_secs_f64(),
        rss_kib as f64 / 1024.0
    );
    let (again, _) = import(&config, &csv);
    println!(
        "invoice-sync re-import (same content): {:.3} s",
        again.as_secs_f64()
    );

    let ratio = first.as_secs_f64() / base_time.as_secs_f64();
    let reimport = again.as_secs_f64() / first.as_secs_f64();
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "ratio import/baseline: {ratio:.2}x (target <= 2.0x: {})",
        verdict(ratio <= 2.0)
    );
    println!(
        "peak RSS: {:.1} MiB (target < 64 MiB: {})",
        rss_kib as f64 / 1024.0,
        verdict(rss_kib < 64 * 1024)
    );
    println!(
        "re-import/import: {:.1} % (target < 10 %: {})",
        reimport * 100.0,
        verdict(reimport < 0.10)
    );
}

/// A deterministic export: unique references, plausible addresses, amounts and dates.
fn generate(path: &Path, rows: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "invoice_reference,customer_email,customer_name,amount,currency,due_date"
    )
    .unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cents = 100 + x % 9_999_900;
        let day = 1 + (x >> 20) % 28;
        let month = 1 + (x >> 30) % 12;
        writeln!(
            w,
            "INV-{i:08},customer{i:08}@example.com,Customer {i:08} B.V.,{}.{:02},EUR,2027-{month:02}-{day:02}",
            cents / 100,
            cents % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}

fn baseline(dir: &Path, csv: &Path) -> (&'static str, Duration) {
    let db = dir.join("baseline.db");
    let sql = format!(
        "PRAGMA journal_mode=WAL;\n\
         CREATE TABLE t (invoice_reference TEXT PRIMARY KEY, customer_email TEXT, customer_name TEXT, amount TEXT, currency TEXT, due_date TEXT);\n\
         .import --csv --skip 1 {} t\n",
        csv.display()
    );
    let start = Instant::now();
    let out = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(sql.as_bytes())?;
            c.wait()
        });
    match out {
        Ok(s) if s.success() => (
            "sqlite3 .import into a table with a primary key",
            start.elapsed(),
        ),
        _ => (
            "rusqlite inserts of the raw strings",
            rusqlite_baseline(&db, csv),
        ),
    }
}

fn rusqlite_baseline(db: &Path, csv: &Path) -> Duration {
    let _ = std::fs::remove_file(db);
    let start = Instant::now();
    let mut c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t (invoice_reference TEXT PRIMARY KEY, customer_email TEXT, customer_name TEXT, amount TEXT, currency TEXT, due_date TEXT);",
    )
    .unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut st = tx
            .prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        let mut rdr = csv::Reader::from_path(csv).unwrap();
        for r in rdr.records() {
            let r = r.unwrap();
            st.execute(rusqlite::params![&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}

/// Runs `invoice-sync import FILE`; returns the wall time and the peak RSS in KiB.
// The child is reaped by `wait4` (which also reports its peak RSS), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn import(config: &Path, csv: &Path) -> (Duration, i64) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .arg("--config")
        .arg(config)
        .arg("-q")
        .arg("import")
        .arg(csv)
        .spawn()
        .expect("spawn invoice-sync");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers; reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "import failed with status {status}"
    );
    (elapsed, usage.ru_maxrss)
}
