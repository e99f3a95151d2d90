//! Bank statement benchmark (README, *Performance*): a camt.053 of ENTRIES entries (default
//! 1,000,000) read against a database of as many open invoices, by the release binary.
//!
//! Measured in the same run, so the machine's noise hits both sides alike:
//! - `bank import FILE` on a fresh copy of the database: wall time against
//!   `xmllint --stream --noout FILE` (libxml2's streaming reader, which only parses):
//!   target ≤ 3×; peak RSS: target ≤ 64 MiB;
//! - the same statement read again (a no-op, known by its hash): target ≤ 5 % of the
//!   first read;
//! - an idle `run` with `bank.enabled` and an empty bank inbox, against the same idle
//!   `run` with the bank off, on a database of 1,000 linked invoices: target ≤ 1.1×
//!   (it costs one folder listing).
//!
//! Of the entries, 90 % quote their invoice's creditor reference, 9 % name the invoice
//! in the remittance text, 1 % name nothing (each looked at for a suggestion).
//!
//! Run: `cargo bench --bench bank` (ENTRIES=100000 for a quicker look).

#[path = "../tests/it/common/measure.rs"]
mod measure;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use invoice_sync::domain::CreditorRef;

const ACCOUNT: &str = "NL91ABNA0417164300";
const RUNS: usize = 3;
const IDLE_RUNS: usize = 9;

fn main() {
    let n: usize = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let t = Instant::now();
    let base = Setup::new(&dir.join("base"), true);
    let csv = dir.join("invoices.csv");
    invoices(&csv, n);
    base.ok(&["import", csv.to_str().unwrap()]);
    std::fs::remove_file(&csv).unwrap();
    let statement = dir.join("statement.xml");
    let bytes = camt053(&statement, n);
    println!(
        "bank bench: {n} entries ({:.0} MiB camt.053) against {n} open invoices (built in {:.0} s)",
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    let mut first = Vec::new();
    let mut again = Vec::new();
    let mut rss = Vec::new();
    let mut xmllint = Vec::new();
    for run in 0..RUNS {
        let copy = Setup::copy_of(&base, &dir.join(format!("run{run}")));
        let m = measure::run(copy.command(&["bank", "import", statement.to_str().unwrap()]));
        assert_eq!(m.code, 0, "bank import failed");
        first.push(m.wall);
        rss.push(m.peak_rss_kib);
        let m = measure::run(copy.command(&["bank", "import", statement.to_str().unwrap()]));
        assert_eq!(m.code, 0, "bank import (again) failed");
        again.push(m.wall);
        let mut lint = Command::new("xmllint");
        lint.args(["--stream", "--noout"]).arg(&statement);
        let m = measure::run(lint);
        assert_eq!(m.code, 0, "xmllint failed (is libxml2-utils installed?)");
        xmllint.push(m.wall);
        if run == 0 {
            copy.check_applied(n);
        }
        std::fs::remove_dir_all(dir.join(format!("run{run}"))).unwrap();
    }
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let (f, x, a) = (median(&mut first), median(&mut xmllint), median(&mut again));
    let peak = rss.iter().max().copied().unwrap_or(0);
    let ratio = f.as_secs_f64() / x.as_secs_f64();
    println!(
        "  bank import:        {:>8.2} s   xmllint --stream --noout {:>6.2} s   ratio {ratio:.2}x (target <= 3x) {}",
        f.as_secs_f64(),
        x.as_secs_f64(),
        verdict(ratio <= 3.0)
    );
    println!(
        "  peak RSS:           {:>8.1} MiB (target <= 64 MiB) {}",
        peak as f64 / 1024.0,
        verdict(peak <= 64 * 1024)
    );
    let share = a.as_secs_f64() / f.as_secs_f64();
    println!(
        "  read again:         {:>8.3} s   {:.1} % of the first read (target <= 5 %) {}",
        a.as_secs_f64(),
        share * 100.0,
        verdict(share <= 0.05)
    );

    // The idle cycle, bank on (empty inbox) against bank off, on one small database.
    let small = Setup::new(&dir.join("small"), true);
    let csv = dir.join("small.csv");
    invoices(&csv, 1000);
    small.ok(&["run", csv.to_str().unwrap()]);
    small.ok(&["run"]);
    let off = small.with_bank(false);
    let (mut on_t, mut off_t) = (Vec::new(), Vec::new());
    for _ in 0..IDLE_RUNS {
        on_t.push(timed(small.command(&["run"])));
        off_t.push(timed(off.command(&["run"])));
    }
    let (on_m, off_m) = (median(&mut on_t), median(&mut off_t));
    let idle = on_m.as_secs_f64() / off_m.as_secs_f64();
    println!(
        "  idle run, bank on:  {:>8.1} ms   bank off {:>6.1} ms   ratio {idle:.2}x (target <= 1.1x) {}",
        on_m.as_secs_f64() * 1000.0,
        off_m.as_secs_f64() * 1000.0,
        verdict(idle <= 1.1)
    );
}

fn timed(cmd: Command) -> Duration {
    let m = measure::run(cmd);
    assert_eq!(m.code, 0, "invoice-sync run failed");
    m.wall
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(dir: &Path, bank: bool) -> Setup {
        for sub in [
            "inbox",
            "archive",
            "rejected",
            "mail",
            "bank",
            "bank-archive",
            "bank-rejected",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let setup = Setup {
            dir: dir.to_path_buf(),
            config: dir.join("invoice-sync.toml"),
        };
        setup.write_config(&setup.config, bank);
        setup
    }

    fn write_config(&self, path: &Path, bank: bool) {
        std::fs::write(
            path,
            format!(
                "[storage]\ndatabase = \"bench.db\"\n\
                 [inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\n\
                 [cm]\nbase_url = \"sandbox\"\nclient_id = \"bench\"\nclient_secret = \"bench\"\n\
                 requests_per_second = 1000\nburst = 1000\nmax_in_flight = 32\n\
                 [email]\ntransport = \"file\"\nfile_dir = \"mail\"\nfrom = \"Bench <billing@merchant.example>\"\nmessages_per_second = 1000\n\
                 [bank]\nenabled = {bank}\ninbox = \"bank\"\narchive_dir = \"bank-archive\"\nrejected_dir = \"bank-rejected\"\naccounts = [\"{ACCOUNT}\"]\n"
            ),
        )
        .unwrap();
    }

    /// The same folder and database with another config (bank on or off).
    fn with_bank(&self, bank: bool) -> Setup {
        let config = self.dir.join(format!("bank-{bank}.toml"));
        self.write_config(&config, bank);
        Setup {
            dir: self.dir.clone(),
            config,
        }
    }

    fn copy_of(base: &Setup, dir: &Path) -> Setup {
        let copy = Setup::new(dir, true);
        std::fs::copy(base.dir.join("bench.db"), dir.join("bench.db")).unwrap();
        copy
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

    /// The import did what it says: every entry recorded, 99 % matched.
    fn check_applied(&self, n: usize) {
        let c = rusqlite::Connection::open(self.dir.join("bench.db")).unwrap();
        let (entries, matched): (i64, i64) = c
            .query_row(
                "SELECT count(*), sum(outcome = 'matched') FROM bank_entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(entries as usize, n, "every entry recorded");
        assert_eq!(matched as usize, n - n / 100, "99 % matched");
    }
}

fn reference(i: usize) -> String {
    format!("INV-{i:07}")
}

/// An export of `rows` open invoices of 100.00 EUR.
fn invoices(path: &Path, rows: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "invoice_reference,customer_email,customer_name,amount,currency,due_date"
    )
    .unwrap();
    for i in 0..rows {
        writeln!(
            w,
            "{},customer{i:08}@example.com,Customer {i:08} B.V.,100.00,EUR,2027-{:02}-{:02}",
            reference(i),
            1 + i % 12,
            1 + i % 28,
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// A camt.053.001.02 of `n` booked credits of 100.00, one per invoice; returns its size.
fn camt053(path: &Path, n: usize) -> u64 {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    write!(
        w,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\">\n<BkToCstmrStmt>\n<GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-12-07T18:00:00</CreDtTm></GrpHdr>\n<Stmt>\n<Id>BENCH-1</Id><CreDtTm>2026-12-07T18:00:00</CreDtTm>\n<Acct><Id><IBAN>{ACCOUNT}</IBAN></Id><Ccy>EUR</Ccy></Acct>\n"
    )
    .unwrap();
    for i in 0..n {
        let remittance = match i % 100 {
            0 => format!("<Ustrd>Gift {i}</Ustrd>"),
            1..=9 => format!("<Ustrd>Factuur {} dank u</Ustrd>", reference(i)),
            _ => format!(
                "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>{}</Ref></CdtrRefInf></Strd>",
                CreditorRef::of_invoice(&reference(i))
            ),
        };
        writeln!(
            w,
            "<Ntry><Amt Ccy=\"EUR\">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-12-07</Dt></BookgDt><ValDt><Dt>2026-12-07</Dt></ValDt><AcctSvcrRef>BNK{i:010}</AcctSvcrRef>\
<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs><RltdPties><Dbtr><Nm>Customer {i:08} B.V.</Nm></Dbtr><DbtrAcct><Id><IBAN>NL20INGB0001234567</IBAN></Id></DbtrAcct></RltdPties><RmtInf>{remittance}</RmtInf></TxDtls></NtryDtls></Ntry>"
        )
        .unwrap();
    }
    w.write_all(b"</Stmt>\n</BkToCstmrStmt>\n</Document>\n")
        .unwrap();
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}
