//! Reminder benchmark: does a cycle read only the invoices that have a reminder due, and do
//! reminders go out at the mail rate?
//!
//! Two databases are built in the same run, against one `invoice-sync sandbox` process
//! (links made by the build stay known to it for the measured cycles):
//! - *baseline*: 100 open invoices, each with its link mailed and a reminder due today;
//! - *large*: the same 100 plus 9,900 open invoices whose next reminder is weeks away.
//!
//! Measured, each the median of several runs on a fresh copy of the built database:
//! - the cycle that sends the 100 reminders (each link's status read from CM first) with
//!   mail fast enough not to matter, large against baseline (target ≤ 1.5×: the 9,900
//!   others must cost nothing), and the same cycle outside the send window (everything
//!   but the reminders), so that what the reminders themselves cost can be read off;
//! - the same cycle on the large database at `email.messages_per_second = 20`, against
//!   the time that limit allows for 100 mails (a burst of 20, then 20 a second: 4 s;
//!   target ≤ 1.15×): reminders go out at the mail rate.
//!
//! The release binary reads the real clock, so the due dates are set relative to today,
//! and the ladder is one step, 7 days after the due date, sent at any hour of any day.
//!
//! Run: `cargo bench --bench reminders`.

#[path = "../tests/it/common/measure.rs"]
mod measure;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DUE: usize = 100;
const OTHERS: usize = 9_900;
const RUNS: usize = 5;
const MAIL_RATE: u32 = 20;

fn main() {
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .env_remove("INVOICE_SYNC_SANDBOX_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sandbox");
    let mut first = String::new();
    BufReader::new(sandbox.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("sandbox listening on ")
        .expect("the sandbox prints its URL")
        .to_string();

    let temp = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let baseline = Setup::build(&temp.path().join("baseline"), &base, 0);
    let large = Setup::build(&temp.path().join("large"), &base, OTHERS);
    println!(
        "reminders bench: {DUE} reminders due among {DUE} and among {} open invoices (built in {:.0} s)",
        DUE + OTHERS,
        t.elapsed().as_secs_f64()
    );
    let mut times = (Vec::new(), Vec::new());
    let mut idle = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        times.0.push(baseline.reminder_cycle("measure.toml", DUE));
        times.1.push(large.reminder_cycle("measure.toml", DUE));
        idle.0.push(baseline.reminder_cycle("closed.toml", 0));
        idle.1.push(large.reminder_cycle("closed.toml", 0));
    }
    let mut limited: Vec<Duration> = (0..3)
        .map(|_| large.reminder_cycle("limited.toml", DUE))
        .collect();
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let (a, b) = (median(&mut times.0), median(&mut times.1));
    println!(
        "reminder cycle: {:.3} s among {DUE} open, {:.3} s among {}: {:.2}x (target <= 1.5x: {})",
        a.as_secs_f64(),
        b.as_secs_f64(),
        DUE + OTHERS,
        b.as_secs_f64() / a.as_secs_f64(),
        verdict(b.as_secs_f64() <= 1.5 * a.as_secs_f64())
    );
    let (c, d) = (median(&mut idle.0), median(&mut idle.1));
    println!(
        "the same cycle outside the send window (no reminder work): {:.3} s among {DUE}, {:.3} s among {}; the reminders' own share: {:.3} s vs {:.3} s: {:.2}x",
        c.as_secs_f64(),
        d.as_secs_f64(),
        DUE + OTHERS,
        a.saturating_sub(c).as_secs_f64(),
        b.saturating_sub(d).as_secs_f64(),
        b.saturating_sub(d).as_secs_f64() / a.saturating_sub(c).as_secs_f64().max(1e-6)
    );
    let limit = (DUE as f64 - f64::from(MAIL_RATE)) / f64::from(MAIL_RATE);
    let took = median(&mut limited).as_secs_f64();
    println!(
        "at email.messages_per_second = {MAIL_RATE}: {DUE} reminders in {took:.2} s, the limit allows {limit:.2} s (a burst of {MAIL_RATE}, then {MAIL_RATE}/s): {:.2}x (target <= 1.15x: {})",
        took / limit,
        verdict(took <= 1.15 * limit)
    );
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Setup {
    dir: PathBuf,
}

impl Setup {
    fn build(dir: &Path, base: &str, others: usize) -> Setup {
        for sub in ["inbox", "archive", "rejected", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let setup = Setup {
            dir: dir.to_path_buf(),
        };
        // The build mails the links as fast as it can; the measured cycles at MAIL_RATE.
        // A window that excludes this hour: the cycle does all but the reminders.
        let hour = chrono::Timelike::hour(&chrono::Local::now());
        let closed = if hour < 12 {
            "13:00-14:00"
        } else {
            "01:00-02:00"
        };
        setup.write_config("build.toml", base, "bench.db", 100_000, "00:00-24:00");
        setup.write_config("closed.toml", base, "work.db", 100_000, closed);
        setup.write_config("measure.toml", base, "work.db", 100_000, "00:00-24:00");
        setup.write_config("limited.toml", base, "work.db", MAIL_RATE, "00:00-24:00");
        let today = chrono::Local::now().date_naive();
        let csv = dir.join("open.csv");
        let mut w = BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(w, "invoice_reference,customer_email,amount,due_date").unwrap();
        for i in 0..DUE + others {
            // The first DUE were due a week ago: their one step is today.
            let due = if i < DUE {
                today - chrono::Days::new(7)
            } else {
                today + chrono::Days::new(60)
            };
            writeln!(
                w,
                "INV-{i:05},c{i:05}@example.com,{}.00,{due}",
                10 + i % 500
            )
            .unwrap();
        }
        w.flush().unwrap();
        drop(w);
        // The first run makes and mails the links; their reminder is due from then on.
        setup.ok("build.toml", &["run", csv.to_str().unwrap()]);
        let due: i64 = rusqlite::Connection::open(dir.join("bench.db"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM invoices WHERE next_reminder_on <= date('now', 'localtime')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(due as usize, DUE, "reminders due after the build");
        setup
    }

    fn write_config(&self, name: &str, base: &str, database: &str, mail_rate: u32, window: &str) {
        std::fs::write(
            self.dir.join(name),
            format!(
                "[storage]\ndatabase = \"{database}\"\n\
                 [inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\n\
                 [cm]\nbase_url = \"{base}\"\nclient_id = \"sandbox\"\nclient_secret = \"sandbox\"\n\
                 requests_per_second = 1000\nburst = 1000\nmax_in_flight = 16\n\
                 [email]\ntransport = \"file\"\nfile_dir = \"mail\"\nfrom = \"Bench <billing@merchant.example>\"\nmessages_per_second = {mail_rate}\n\
                 [reminders]\nenabled = true\ndays = [7]\nmin_gap_days = 0\nsend_window = \"{window}\"\nsend_weekends = true\n"
            ),
        )
        .unwrap();
    }

    fn command(&self, config: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_invoice-sync"));
        c.arg("--config")
            .arg(self.dir.join(config))
            .arg("-q")
            .args(args);
        c
    }

    fn ok(&self, config: &str, args: &[&str]) {
        let out = self
            .command(config, args)
            .output()
            .expect("spawn invoice-sync");
        assert!(
            out.status.success(),
            "invoice-sync {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One cycle on a fresh copy of the built database; it must send `expect` reminders.
    fn reminder_cycle(&self, config: &str, expect: usize) -> Duration {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(self.dir.join(format!("work.db{suffix}")));
        }
        std::fs::copy(self.dir.join("bench.db"), self.dir.join("work.db")).unwrap();
        let _ = std::fs::remove_dir_all(self.dir.join("mail"));
        let m = measure::run(self.command(config, &["run"]));
        assert_eq!(m.code, 0, "the reminder cycle failed");
        let sent: i64 = rusqlite::Connection::open(self.dir.join("work.db"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM outbox WHERE kind = 'reminder' AND state = 'sent'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            sent as usize, expect,
            "reminders sent by the measured cycle"
        );
        m.wall
    }
}
