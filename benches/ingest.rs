//! Ingest benchmark: generated 1,000,000-row exports in two shapes, each imported into a
//! fresh database by the release binary, beside a baseline in the same run: the `sqlite3`
//! CLI's `.import` of the same file into one table with a primary key (or plain rusqlite
//! inserts of the raw strings when the CLI is absent). The shapes:
//! - the default layout, 6 columns (~93 MB);
//! - 8 columns, as accounting exports often have: reference, e-mail, name, amount,
//!   currency, due date, status and language (~103 MB).
//!
//! Then the monsters: a file with one 50 MB line and one with a 50 MB row (a quote
//! opened and spanning half a million lines), each between ordinary rows: wall time and
//! peak RSS of their import (the row is cut at 1 MiB and rejected, the others imported).
//!
//! Run: `cargo bench --bench ingest` (ROWS=200000 for a quicker look). Prints wall times,
//! rows/s, peak RSS of the import process, and the ratios against the targets: within
//! 2x of the baseline, peak RSS under 64 MiB, re-import under 10 % of the first import.

#[path = "../tests/it/common/measure.rs"]
mod measure;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    for shape in [Shape::Default, Shape::Eight] {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("export.csv");
        generate(&csv, rows, shape);
        let size = std::fs::metadata(&csv).unwrap().len();
        println!(
            "ingest bench: {rows} rows, {:.1} MB, {}",
            size as f64 / 1e6,
            shape.name()
        );

        // Baseline first, so the page cache is equally warm for both.
        let (base_name, base_time) = baseline(dir.path(), &csv, shape);
        println!(
            "  baseline ({base_name}): {:.2} s, {:.0} rows/s",
            base_time.as_secs_f64(),
            rows as f64 / base_time.as_secs_f64()
        );

        let config = write_config(dir.path());
        let (first, rss_kib) = import(&config, &csv, 0);
        println!(
            "  invoice-sync import: {:.2} s, {:.0} rows/s, peak RSS {:.1} MiB",
            first.as_secs_f64(),
            rows as f64 / first.as_secs_f64(),
            rss_kib as f64 / 1024.0
        );
        let (again, _) = import(&config, &csv, 0);
        println!(
            "  invoice-sync re-import (same content): {:.3} s",
            again.as_secs_f64()
        );

        let ratio = first.as_secs_f64() / base_time.as_secs_f64();
        let reimport = again.as_secs_f64() / first.as_secs_f64();
        println!(
            "  ratio import/baseline: {ratio:.2}x (target <= 2.0x: {})",
            verdict(ratio <= 2.0)
        );
        println!(
            "  peak RSS: {:.1} MiB (target < 64 MiB: {})",
            rss_kib as f64 / 1024.0,
            verdict(rss_kib < 64 * 1024)
        );
        println!(
            "  re-import/import: {:.1} % (target < 10 %: {})",
            reimport * 100.0,
            verdict(reimport < 0.10)
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    // Written piece by piece: the monster never sits in this process's memory (a spawned
    // child would count it in its peak RSS before it execs).
    for (name, piece, times, quoted) in [
        ("one 50 MB line", "x".repeat(1000), 50_000, false),
        (
            "one 50 MB row (a quoted field of 500,000 lines)",
            format!("{}\n", "y".repeat(99)),
            500_000,
            true,
        ),
    ] {
        let csv = dir.path().join("monster.csv");
        let mut w = BufWriter::new(std::fs::File::create(&csv).unwrap());
        let q = if quoted { "\"" } else { "" };
        write!(
            w,
            "invoice_reference,customer_email,customer_name,amount,currency,due_date\n\
             INV-1,a@example.com,Ann,10.00,EUR,2027-01-01\n\
             INV-2,b@example.com,{q}"
        )
        .unwrap();
        for _ in 0..times {
            w.write_all(piece.as_bytes()).unwrap();
        }
        write!(
            w,
            "{q},20.00,EUR,2027-01-01\nINV-3,c@example.com,Cee,30.00,EUR,2027-01-01\n"
        )
        .unwrap();
        w.flush().unwrap();
        drop(w);
        let (time, rss_kib) = import(&config, &csv, 3);
        println!(
            "monster: {name}: {:.2} s, peak RSS {:.1} MiB (target < 64 MiB: {})",
            time.as_secs_f64(),
            rss_kib as f64 / 1024.0,
            verdict(rss_kib < 64 * 1024)
        );
        std::fs::remove_file(&csv).unwrap();
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("invoice-sync.toml");
    std::fs::write(
        &config,
        "[storage]\ndatabase = \"bench.db\"\n[inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\n",
    )
    .unwrap();
    config
}

#[derive(Clone, Copy)]
enum Shape {
    Default,
    Eight,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Default => "default layout (6 columns)",
            Shape::Eight => "8 columns (with status and language)",
        }
    }

    fn columns(self) -> &'static [&'static str] {
        const EIGHT: [&str; 8] = [
            "invoice_reference",
            "customer_email",
            "customer_name",
            "amount",
            "currency",
            "due_date",
            "status",
            "language",
        ];
        match self {
            Shape::Default => &EIGHT[..6],
            Shape::Eight => &EIGHT,
        }
    }
}

/// A deterministic export: unique references, plausible addresses, amounts and dates.
fn generate(path: &Path, rows: usize, shape: Shape) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(w, "{}", shape.columns().join(",")).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cents = 100 + x % 9_999_900;
        let day = 1 + (x >> 20) % 28;
        let month = 1 + (x >> 30) % 12;
        write!(
            w,
            "INV-{i:08},customer{i:08}@example.com,Customer {i:08} B.V.,{}.{:02},EUR,2027-{month:02}-{day:02}",
            cents / 100,
            cents % 100
        )
        .unwrap();
        match shape {
            Shape::Default => writeln!(w).unwrap(),
            Shape::Eight => {
                let language = if x.is_multiple_of(3) { "en" } else { "nl" };
                writeln!(w, ",open,{language}").unwrap()
            }
        }
    }
    w.flush().unwrap();
}

/// `CREATE TABLE t (...)` with the shape's columns, the first the primary key.
fn baseline_table(shape: Shape) -> String {
    let columns: Vec<String> = shape
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                format!("{c} TEXT PRIMARY KEY")
            } else {
                format!("{c} TEXT")
            }
        })
        .collect();
    format!("CREATE TABLE t ({})", columns.join(", "))
}

fn baseline(dir: &Path, csv: &Path, shape: Shape) -> (&'static str, Duration) {
    let db = dir.join("baseline.db");
    let sql = format!(
        "PRAGMA journal_mode=WAL;\n{};\n.import --csv --skip 1 {} t\n",
        baseline_table(shape),
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
            rusqlite_baseline(&db, csv, shape),
        ),
    }
}

fn rusqlite_baseline(db: &Path, csv: &Path, shape: Shape) -> Duration {
    let _ = std::fs::remove_file(db);
    let start = Instant::now();
    let mut c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; {};",
        baseline_table(shape)
    ))
    .unwrap();
    let tx = c.transaction().unwrap();
    {
        let n = shape.columns().len();
        let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        let mut st = tx
            .prepare(&format!("INSERT INTO t VALUES ({})", marks.join(", ")))
            .unwrap();
        let mut rdr = csv::Reader::from_path(csv).unwrap();
        for r in rdr.records() {
            let r = r.unwrap();
            st.execute(rusqlite::params_from_iter(r.iter())).unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}

/// Runs `invoice-sync import FILE`, which must exit with `exit`; returns the wall time and
/// the peak RSS in KiB.
fn import(config: &Path, csv: &Path, exit: i32) -> (Duration, i64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_invoice-sync"));
    cmd.arg("--config")
        .arg(config)
        .args(["-q", "import"])
        .arg(csv);
    let m = measure::run(cmd);
    assert_eq!(m.code, exit, "import exited with {}", m.code);
    (m.wall, m.peak_rss_kib)
}
