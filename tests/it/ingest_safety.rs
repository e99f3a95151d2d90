//! No input may lose, duplicate or misstate a payment (ARCHITECTURE.md): damaged snapshot
//! exports settle nothing, an open quote never eats rows silently, one reference is one
//! invoice however it is spelled invisibly, an address accepted can be mailed, a name on
//! several lines costs nothing, line numbers are physical lines, no mojibake, an archive
//! that cannot take a file stops nothing, and a paid invoice stays paid. Driven through
//! the binary as an operator runs it, against the CM sandbox.

use crate::common;

use common::{SandboxHost, TestEnv, default_csv};
use invoice_sync::sandbox::SandboxOptions;

fn env_with(host: &SandboxHost, extra: &str) -> TestEnv {
    TestEnv::new(&common::merge_toml(&host.cm_toml(), extra))
}

fn report_lines(env: &TestEnv, file: &str) -> Vec<csv::StringRecord> {
    let path = env.path(&format!("rejected/{file}.rejected.csv"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("no rejection report {}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes);
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect()
}

/// INV-1 to INV-`n` at `c<i>@example.com` (`email_of_2` for INV-2 when given), 10,00 each.
fn invoices(n: usize, email_of_2: Option<&str>) -> String {
    let rows: Vec<(String, String)> = (1..=n)
        .map(|i| {
            let email = match (i, email_of_2) {
                (2, Some(e)) => e.to_string(),
                _ => format!("c{i}@example.com"),
            };
            (format!("INV-{i}"), email)
        })
        .collect();
    let rows: Vec<_> = rows
        .iter()
        .map(|(r, e)| (r.as_str(), e.as_str(), "N", "10,00", "2099-12-01"))
        .collect();
    default_csv(&rows)
}

fn six_open(env: &TestEnv) {
    env.drop_file("1.csv", invoices(6, None));
    assert_eq!(env.run(&["run"]).code, 0);
}

/// The harm seen: a mistyped address counted as "missing" and its invoice was settled,
/// its live link switched off, under the 50 % guard, with only "1 row rejected" said.
#[test]
fn a_snapshot_with_a_rejected_row_settles_nothing() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "[csv]\nsettlement = \"snapshot\"\n");
    six_open(&env);
    // INV-2's address is mistyped, INV-6 was paid by bank transfer (missing).
    env.drop_file("2.csv", invoices(5, Some("c2@example")));
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("snapshot"), "says why: {}", r.stderr);
    assert!(r.stderr.contains("rejected"), "{}", r.stderr);
    for inv in env.status() {
        assert_eq!(inv["state"], "open", "{inv}");
        assert_eq!(inv["link_active"], true, "{inv}");
    }
    assert!(host.sb().links().iter().all(|l| l.active));
    // The fixed export settles what is really missing.
    env.drop_file("3.csv", invoices(5, None));
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(env.invoice("INV-6")["state"], "settled_elsewhere");
    assert_eq!(env.invoice("INV-2")["state"], "open");
}

/// The harm seen: one stray quote swallowed four rows; four invoices were settled.
#[test]
fn an_open_quote_never_silently_eats_the_rows_after_it() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "[csv]\nsettlement = \"snapshot\"\n");
    six_open(&env);
    let text = "invoice_reference,customer_email,customer_name,amount,due_date\n\
                INV-1,c1@example.com,N,\"10,00\",2099-12-01\n\
                INV-2,c2@example.com,\"N,10.00,2099-12-01\n\
                INV-3,c3@example.com,N,10.00,2099-12-01\n\
                INV-4,c4@example.com,N,10.00,2099-12-01\n\
                INV-5,c5@example.com,N,10.00,2099-12-01\n\
                INV-6,c6@example.com,N,10.00,2099-12-01\n";
    env.drop_file("2.csv", text);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let report = report_lines(&env, "2.csv");
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(&report[0][0], "3", "starts on line 3");
    assert!(
        report[0][2].contains("lines 3 to 8"),
        "names every line it affected: {:?}",
        report[0]
    );
    for inv in env.status() {
        assert_eq!(inv["state"], "open", "{inv}");
        assert_eq!(inv["link_active"], true, "{inv}");
    }
}

/// The harm seen: `INV-1` followed by a zero-width space became a second invoice with a
/// second payable link and a second mail.
#[test]
fn one_reference_is_one_invoice_whatever_invisible_characters_it_carries() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "1.csv",
        default_csv(&[("INV-1", "a@example.com", "Ann", "10,00", "2099-12-01")]),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    for (i, spelled) in [
        "INV-1\u{200B}",
        "\u{FEFF}INV-1",
        "INV\u{00AD}-1",
        "\u{200E}INV-1",
    ]
    .iter()
    .enumerate()
    {
        env.drop_file(
            &format!("{}.csv", i + 2),
            default_csv(&[(spelled, "a@example.com", "Ann", "10,00", "2099-12-01")]),
        );
        let r = env.run(&["run"]);
        assert_eq!(r.code, 0, "{spelled:?}: {}", r.stderr);
    }
    assert_eq!(env.status().len(), 1);
    assert_eq!(host.sb().links().len(), 1);
    assert_eq!(env.files_in("outbox").len(), 1, "one mail");
    // The operator finds it by its plain reference.
    assert_eq!(env.run(&["status", "INV-1\u{200B}", "--json"]).code, 0);
}

/// The harm seen: an uploader that stalled longer than `settle_seconds` in the middle of
/// a file had its first half imported and the file archived; it went on writing into the
/// archived file, and the rows written after the stall were never imported, with no word.
/// Here the writer keeps the file open, writes 10 of 20 rows, stalls past the settle time
/// while a cycle reads the file (held after its read by a debug-build hook, so the timing
/// is certain), then writes the other 10. The file is not archived, the summary names it,
/// and the next cycle imports the rest: all 20 rows, each once.
#[test]
fn a_file_that_grows_while_it_is_read_is_read_again_and_loses_no_row() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "[inbox]\nsettle_seconds = 1\n");
    let row = |i: usize| format!("INV-{i},c{i}@example.com,N,\"10,00\",2099-12-01\n");
    let path = env.inbox().join("export.csv");
    let mut upload = std::fs::File::create(&path).unwrap();
    upload
        .write_all(b"invoice_reference,customer_email,customer_name,amount,due_date\n")
        .unwrap();
    for i in 1..=10 {
        upload.write_all(row(i).as_bytes()).unwrap();
    }
    upload.sync_all().unwrap();
    // The stall: longer than settle_seconds, so the cycle takes the file as complete.
    std::thread::sleep(Duration::from_millis(1300));

    let hook = tempfile::tempdir().unwrap();
    let mut cycle = env.command();
    cycle
        .arg("run")
        .env("INVOICE_SYNC_INGEST_PAUSE", hook.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let cycle = cycle.spawn().unwrap();
    let paused = hook.path().join("paused");
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = cycle.wait_with_output().unwrap();
        tx.send(()).ok();
        out
    });
    // The writer goes on once the cycle has read the first half (or, without the hook,
    // once the cycle is over).
    while !paused.exists() && rx.try_recv().is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the cycle never read the file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 11..=20 {
        upload.write_all(row(i).as_bytes()).unwrap();
    }
    upload.sync_all().unwrap();
    drop(upload);
    std::fs::write(hook.path().join("resume"), "").unwrap();
    let first = waiter.join().unwrap();
    let first_err = String::from_utf8_lossy(&first.stderr).into_owned();
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("$ invoice-sync run (paused after the read)\n{first_err}");
    }

    std::thread::sleep(Duration::from_millis(1300));
    let second = env.run(&["run"]);
    let refs: std::collections::BTreeSet<String> = env
        .status()
        .iter()
        .map(|v| v["invoice_reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        refs.len(),
        20,
        "every row imported: {refs:?}\nfirst run: {first_err}\nsecond run: {}",
        second.stderr
    );
    assert_eq!(host.sb().links().len(), 20, "one link each");
    assert_eq!(env.files_in("outbox").len(), 20, "one mail each");
    assert_eq!(env.count("SELECT count(*) FROM revisions"), 20);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    assert_eq!(env.files_in("archive").len(), 1);

    // The first cycle applied what it read, kept the file, and said so by name.
    assert_eq!(first.status.code(), Some(0), "{first_err}");
    let summary = first_err
        .lines()
        .find(|l| l.contains("cycle:"))
        .unwrap_or_else(|| panic!("a summary line: {first_err}"));
    assert!(
        summary.contains("1 file(s) changed while read, read again next cycle: export.csv"),
        "{summary}"
    );
    assert!(first_err.contains("rows 10 accepted"), "{first_err}");
    // The second read: the first 10 rows changed nothing, the other 10 are new.
    let (read, new): (i64, i64) = env
        .db()
        .query_row(
            "SELECT rows_read, invoices_new FROM imports ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((read, new), (20, 10));
}

/// The harm seen: a right-to-left override in a customer name reached the mail, where
/// `Jan\u{202E}kcaJ` displays as `JanJack`. Every bidirectional control is removed at
/// ingest, from every field: the database, the mail and `status` hold the values
/// without them.
#[test]
fn bidi_controls_never_reach_a_mail_or_status() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    let controls: Vec<char> = ('\u{202A}'..='\u{202E}')
        .chain('\u{2066}'..='\u{2069}')
        .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        .collect();
    env.drop_file(
        "a.csv",
        default_csv(&[
            (
                "INV-1",
                "jan@example.com",
                "Jan\u{202E}kcaJ\u{202C} \u{2066}de\u{2069} \u{200F}Vries\u{061C}",
                "10,00",
                "2099-12-01",
            ),
            (
                "INV-2",
                "\u{202A}ann@example.com\u{202C}",
                "Ann",
                "10,00",
                "2099-12-01",
            ),
        ]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["customer_name"], "JankcaJ de Vries", "{inv}");
    assert_eq!(inv["mail_state"], "sent", "{inv}");
    let inv = env.invoice("INV-2");
    assert_eq!(inv["customer_email"], "ann@example.com", "{inv}");
    assert_eq!(inv["mail_state"], "sent", "{inv}");
    let stored: String = env
        .db()
        .query_row(
            "SELECT r.customer_name FROM revisions r JOIN invoices i ON i.id = r.invoice_id
             WHERE i.reference = 'INV-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, "JankcaJ de Vries");

    let table = env.run(&["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let wide = env.run(&["status", "--wide", "INV-1"]);
    for out in [&table.stdout, &wide.stdout] {
        assert!(!out.contains(controls.as_slice()), "{out:?}");
    }
    assert!(wide.stdout.contains("JankcaJ de Vries"), "{}", wide.stdout);

    let mails = env.files_in("outbox");
    assert_eq!(mails.len(), 2, "{mails:?}");
    let raws: Vec<Vec<u8>> = mails
        .iter()
        .map(|m| std::fs::read(env.path("outbox").join(m)).unwrap())
        .collect();
    for raw in &raws {
        let raw = String::from_utf8_lossy(raw);
        assert!(!raw.contains(controls.as_slice()), "{raw:?}");
    }
    let parsed: Vec<_> = raws
        .iter()
        .map(|raw| mail_parser::MessageParser::default().parse(raw).unwrap())
        .collect();
    let to = |m: &mail_parser::Message<'_>| {
        let a = m.to().and_then(|a| a.first())?;
        Some((
            a.address().unwrap_or_default().to_string(),
            a.name().unwrap_or_default().to_string(),
        ))
    };
    let ann = parsed
        .iter()
        .find(|m| to(m).is_some_and(|(a, _)| a == "ann@example.com"))
        .expect("a mail to ann@example.com");
    assert_eq!(to(ann).unwrap().1, "Ann");
    let jan = parsed
        .iter()
        .find(|m| to(m).is_some_and(|(a, _)| a == "jan@example.com"))
        .expect("a mail to jan@example.com");
    assert_eq!(to(jan).unwrap().1, "JankcaJ de Vries");
    let text = jan.body_text(0).expect("a text part").into_owned();
    let html = jan.body_html(0).expect("an HTML part").into_owned();
    for part in [&text, &html] {
        assert!(part.contains("JankcaJ de Vries"), "{part}");
        assert!(!part.contains(controls.as_slice()), "{part:?}");
    }
}

/// The harm seen: a quoted local part passed ingest, got a link, and could never be
/// mailed; an internationalised domain failed on a relay without SMTPUTF8.
#[test]
fn an_address_accepted_at_ingest_can_be_mailed() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\n\
         INV-1,\"\"\"john..doe\"\"@example.com\",John,10.00,2099-12-01\n\
         INV-2,jan@bücher.example,Jan,10.00,2099-12-01\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let report = report_lines(&env, "a.csv");
    assert_eq!(report.len(), 1);
    assert_eq!(&report[0][0], "2");
    assert_eq!(&report[0][1], "customer_email");
    assert!(
        report[0][2].contains("quoted local part"),
        "{:?}",
        report[0]
    );
    assert!(
        host.links_for("INV-1").is_empty(),
        "no link for an address never mailable"
    );
    let inv = env.invoice("INV-2");
    assert_eq!(inv["mail_state"], "sent", "{inv}");
    let mails = env.files_in("outbox");
    let mail = std::fs::read_to_string(env.path("outbox").join(&mails[0])).unwrap();
    assert!(
        mail.contains("jan@xn--bcher-kva.example"),
        "punycode: {mail}"
    );
}

/// The harm seen: a name on two lines cost the invoice its link.
#[test]
fn a_name_that_spans_lines_is_folded_and_costs_nothing() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\r\n\
         INV-1,a@example.com,\"Bloemenhandel\r\nHet Tulpje\",10.00,2099-12-01\r\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["customer_name"], "Bloemenhandel Het Tulpje");
    assert_eq!(inv["link_active"], true);
    let mails = env.files_in("outbox");
    let mail = std::fs::read_to_string(env.path("outbox").join(&mails[0])).unwrap();
    let to = mail
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("a To header");
    assert!(to.contains("a@example.com"), "{to}");
}

/// The harm seen: line numbers off by one around multi-line records, both ways.
#[test]
fn rejections_name_the_physical_line_where_the_record_starts() {
    for eol in ["\n", "\r\n"] {
        let env = TestEnv::new("");
        let text = [
            "invoice_reference,customer_email,customer_name,amount,due_date", // 1
            "A-1,a@example.com,\"two",
            "lines\",10.00,2099-12-01",           // 2-3
            "A-2,bad-address,N,10.00,2099-12-01", // 4
            "",                                   // 5
            "A-3,c@example.com,\"three",
            "more",
            "lines\",-x,2099-12-01",                // 6-8
            "A-4,d@example.com,N,10.00,2099-12-01", // 9
            "A-5,e@example.com,N,10.00,not-a-date", // 10
        ]
        .join(eol)
            + eol;
        env.drop_file("l.csv", text);
        let r = env.run(&["import"]);
        assert_eq!(r.code, 3, "{eol:?}: {}", r.stderr);
        let lines: Vec<String> = report_lines(&env, "l.csv")
            .iter()
            .map(|r| r[0].to_string())
            .collect();
        assert_eq!(lines, ["4", "6", "10"], "{eol:?}");
    }
}

/// The harm seen: one invalid byte made a UTF-8 file read as Windows-1252: `Zoë` was
/// mailed as `ZoÃ«` and `rené@example.com` was rejected.
#[test]
fn a_utf8_file_with_one_bad_byte_is_read_as_utf8() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    let mut bytes = "invoice_reference,customer_email,customer_name,amount,due_date\n\
                     INV-1,zoe@example.com,Zoë,10.00,2099-12-01\n\
                     INV-2,rené@example.com,René,10.00,2099-12-01\n"
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(b"INV-3,c@example.com,Caf\xE9,10.00,2099-12-01\n");
    env.drop_file("u.csv", bytes);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(env.invoice("INV-1")["customer_name"], "Zoë");
    assert_eq!(env.invoice("INV-2")["customer_email"], "rené@example.com");
    let report = report_lines(&env, "u.csv");
    assert_eq!(report.len(), 1);
    assert_eq!(&report[0][0], "4");
    assert!(report[0][2].contains("UTF-8"), "{:?}", report[0]);
    let mails = env.files_in("outbox");
    assert_eq!(mails.len(), 2);
    for m in mails {
        let text = std::fs::read_to_string(env.path("outbox").join(m)).unwrap();
        assert!(!text.contains("Ã"), "no mojibake: {text}");
    }
}

/// The harm seen: the rows committed, the move failed, and every cycle aborted with
/// exit 1: no links, mails or payment checks for anyone.
#[test]
fn an_archive_that_cannot_take_the_file_stops_nothing() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    // The archive path is taken by a file: no folder can be made there.
    std::fs::write(env.path("archive"), "not a folder").unwrap();
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "Ann", "10,00", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("archive"), "{}", r.stderr);
    assert_eq!(
        env.invoice("INV-1")["link_active"],
        true,
        "links still made"
    );
    assert_eq!(
        env.invoice("INV-1")["mail_state"],
        "sent",
        "mail still sent"
    );
    assert_eq!(env.files_in("inbox"), ["a.csv"]);
    // Every cycle goes on working, and once the archive is fixed the file goes there.
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    std::fs::remove_file(env.path("archive")).unwrap();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(env.files_in("inbox").is_empty());
    assert_eq!(env.files_in("archive").len(), 1);
    assert_eq!(host.sb().links().len(), 1, "nothing applied twice");
}

/// A full disk under the archive (a 64 KiB tmpfs, so the move is a copy across file
/// systems) leaves the file in the inbox and no truncated copy in the archive.
#[test]
fn a_full_archive_disk_leaves_no_partial_copy() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    let archive = env.path("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&archive)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a small tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(archive.clone());
    let mut csv = String::from("invoice_reference,customer_email,customer_name,amount,due_date\n");
    for i in 0..3000 {
        csv.push_str(&format!(
            "F-{i:05},c{i}@example.com,A customer with a long name {i},10.00,2099-12-01\n"
        ));
    }
    assert!(csv.len() > 128 * 1024);
    env.drop_file("big.csv", &csv);
    let r = env.command().args(["import"]).output().unwrap();
    assert_eq!(
        r.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(env.files_in("inbox"), ["big.csv"]);
    assert!(
        env.files_in("archive").is_empty(),
        "no partial copy: {:?}",
        env.files_in("archive")
    );
    assert_eq!(
        std::fs::read_to_string(env.inbox().join("big.csv")).unwrap(),
        csv,
        "the inbox file is whole"
    );
    assert_eq!(env.count("SELECT count(*) FROM invoices"), 3000);
}

/// The harm seen: a WARN and exit 0 when an export changed an invoice already paid.
#[test]
fn a_paid_invoice_whose_export_changes_stays_paid_and_needs_attention() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host, "");
    env.drop_file(
        "1.csv",
        default_csv(&[("INV-1", "a@example.com", "Ann", "10,00", "2099-12-01")]),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let link = host.links_for("INV-1")[0].reference.clone();
    assert_eq!(host.sb().pay(&link), 200);
    env.db()
        .execute(
            "UPDATE links SET next_check_at = '2000-01-01T00:00:00Z'",
            [],
        )
        .unwrap();
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(env.invoice("INV-1")["state"], "paid");
    env.drop_file(
        "2.csv",
        default_csv(&[("INV-1", "a@example.com", "Ann", "12,50", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("INV-1"), "{}", r.stderr);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["state"], "paid");
    let err = inv["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("10.00 EUR") && err.contains("12.50 EUR"),
        "{inv}"
    );
    assert_eq!(host.sb().links().len(), 1, "no new link");
}
