//! Ingest (README and ARCHITECTURE.md), driven through the binary as an operator runs it:
//! `import` on named files and on the inbox, then `status --json` and the files on disk.

use crate::common;

use common::{TestEnv, default_csv, fingerprint};
use serde_json::json;

const HEADER: &str = "invoice_reference,customer_email,customer_name,amount,due_date";

#[test]
fn status_json_has_the_contract_keys_and_values() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "1,234.56", "2026-12-01")]),
    );
    let r = env.run(&["import", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = env.status();
    assert_eq!(
        s,
        vec![json!({
            "invoice_reference": "INV-1",
            "customer_email": "ann@example.com",
            "customer_name": "Ann",
            "amount": "1234.56",
            "currency": "EUR",
            "due_date": "2026-12-01",
            "state": "open",
            "link_ref": null,
            "link_uri": null,
            "link_active": null,
            "link_state": null,
            "qr_url": null,
            "mail_state": "none",
            "last_error": null,
            "paid_at": null,
            "reminders_sent": 0,
            "next_reminder_on": null,
            "creditor_reference": invoice_sync::domain::CreditorRef::of_invoice("INV-1").as_str(),
            "paid_by": null,
            "amount_received": null,
            "overpaid": null,
            "flags": []
        })]
    );
}

#[test]
fn named_files_are_never_moved_or_changed_and_reimport_is_a_noop() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    let before = fingerprint(&f);
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
    assert_eq!(fingerprint(&f), before, "the named file was changed");
    let r = env.run(&["import", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("already imported"), "{}", r.stderr);
    assert_eq!(fingerprint(&f), before);
    assert_eq!(env.count("SELECT count(*) FROM imports"), 1);
    assert_eq!(env.count("SELECT count(*) FROM revisions"), 1);
}

#[test]
fn inbox_files_are_archived_with_a_timestamped_name_in_name_order() {
    let env = TestEnv::new("");
    env.drop_file(
        "b.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "20.00", "2026-12-01")]),
    );
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(env.files_in("inbox").is_empty());
    let archived = env.files_in("archive");
    assert_eq!(archived.len(), 2, "{archived:?}");
    assert!(
        archived.iter().all(|n| n.ends_with("Z.csv")),
        "{archived:?}"
    );
    // a.csv first (10.00, revision 1), then b.csv changes the amount (revision 2)
    let inv = env.invoice("INV-1");
    assert_eq!(inv["amount"], "20.00");
    assert_eq!(env.count("SELECT revision FROM invoices"), 2);
    assert_eq!(
        env.count("SELECT amount_minor FROM revisions WHERE revision = 1"),
        1000
    );
}

#[test]
fn unsettled_hidden_temporary_and_unmatched_files_stay_in_the_inbox() {
    let env = TestEnv::new("[inbox]\nsettle_seconds = 3600\n");
    let csv = default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]);
    env.drop_file("fresh.csv", &csv);
    env.drop_file(".hidden.csv", &csv);
    env.drop_file("upload.csv.part", &csv);
    env.drop_file("upload.csv.tmp", &csv);
    env.drop_file("notes.txt", &csv);
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.files_in("inbox").len(), 5);
    assert!(env.files_in("archive").is_empty());
    assert_eq!(env.count("SELECT count(*) FROM invoices"), 0);
}

#[test]
fn the_same_content_dropped_again_changes_nothing_and_is_archived() {
    let env = TestEnv::new("");
    let csv = default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]);
    env.drop_file("monday.csv", &csv);
    assert_eq!(env.run(&["import"]).code, 0);
    let status = env.status();
    env.drop_file("tuesday.csv", &csv);
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.status(), status);
    assert_eq!(env.count("SELECT count(*) FROM imports"), 1);
    assert!(env.files_in("inbox").is_empty());
    assert_eq!(env.files_in("archive").len(), 2);
}

#[test]
fn a_crash_between_commit_and_archive_move_changes_nothing_on_the_next_run() {
    let env = TestEnv::new("");
    env.drop_file(
        "drop.csv",
        default_csv(&[
            ("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01"),
            ("INV-2", "bob@example.com", "Bob", "20.00", "2026-12-02"),
        ]),
    );
    // The process is killed (SIGKILL) right after the file's transaction commits and
    // before the file is moved.
    let out = env
        .command()
        .arg("import")
        .env("INVOICE_SYNC_FAILPOINT", "ingest-after-commit")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "the failpoint did not fire"
    );
    assert_eq!(env.files_in("inbox"), ["drop.csv"]);
    assert_eq!(env.count("SELECT count(*) FROM invoices"), 2);
    let status = env.status();

    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.status(), status, "the re-read changed invoices");
    assert_eq!(env.count("SELECT count(*) FROM imports"), 1);
    assert_eq!(env.count("SELECT count(*) FROM revisions"), 2);
    assert!(env.files_in("inbox").is_empty());
    assert_eq!(env.files_in("archive").len(), 1);
}

#[test]
fn rejected_rows_are_reported_with_line_column_reason_and_row_while_others_proceed() {
    let env = TestEnv::new("");
    let csv = format!(
        "{HEADER}\n\
         INV-1,ann@example.com,Ann,10.00,2026-12-01\n\
         INV-2,not-an-address,Bob,20.00,2026-12-01\n\
         INV-3,cat@example.com,Cat,12.345,2026-12-01\n\
         INV-4,dan@example.com,Dan,40.00,someday\n\
         INV-1,ann@example.com,Ann,11.00,2026-12-01\n\
         INV-5,eve@example.com,Eve,50.00,2026-12-05\n"
    );
    env.drop_file("mixed.csv", csv);
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "rows were rejected: {}", r.stderr);
    assert!(r.stderr.contains("4 row(s) were rejected"), "{}", r.stderr);
    let refs: Vec<_> = env
        .status()
        .iter()
        .map(|v| v["invoice_reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refs, ["INV-1", "INV-5"]);
    assert_eq!(
        env.invoice("INV-1")["amount"],
        "10.00",
        "the repeat was applied"
    );

    let report = std::fs::read_to_string(env.path("rejected/mixed.csv.rejected.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(report.as_bytes());
    assert_eq!(
        rdr.headers().unwrap(),
        vec!["line", "column", "reason", "original_row"]
    );
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{report}");
    assert_eq!(rows[0][0], "3");
    assert_eq!(rows[0][1], "customer_email");
    assert_eq!(rows[0][3], "INV-2,not-an-address,Bob,20.00,2026-12-01");
    assert_eq!((rows[1][0].as_str(), rows[1][1].as_str()), ("4", "amount"));
    assert!(rows[1][2].contains("decimals"), "{}", rows[1][2]);
    assert_eq!(
        (rows[2][0].as_str(), rows[2][1].as_str()),
        ("5", "due_date")
    );
    assert_eq!(
        (rows[3][0].as_str(), rows[3][1].as_str()),
        ("6", "invoice_reference")
    );
    assert!(
        rows[3][2].contains("line 2"),
        "names the first line: {}",
        rows[3][2]
    );
    // the file itself is archived: its good rows were applied
    assert_eq!(env.files_in("archive").len(), 1);
}

#[test]
fn a_file_lacking_a_required_column_is_set_aside_whole_and_others_proceed() {
    let env = TestEnv::new("");
    env.drop_file(
        "a-bad.csv",
        "invoice_reference,customer_email,amount\nINV-9,x@example.com,10\n",
    );
    env.drop_file(
        "b-good.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("could not be imported"), "{}", r.stderr);
    assert_eq!(
        env.files_in("rejected"),
        ["a-bad.csv", "a-bad.csv.reason.txt"]
    );
    let reason = std::fs::read_to_string(env.path("rejected/a-bad.csv.reason.txt")).unwrap();
    assert!(reason.contains("`due_date`"), "{reason}");
    assert_eq!(env.status().len(), 1);
    assert_eq!(env.count("SELECT count(*) FROM imports"), 1);
}

/// The harm seen: Windows software wrote `EXPORT.CSV`, the default `*.csv` did not
/// match it, and the run said `files 0`.
#[test]
fn the_pattern_matches_whatever_the_case() {
    let env = TestEnv::new("");
    env.drop_file(
        "EXPORT.CSV",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.status().len(), 1);
    assert!(env.files_in("inbox").is_empty(), "archived");
}

/// The harm seen: a missing `inbox.dir` gave exit 0 and `files 0`, silent even at `-v`.
#[test]
fn a_missing_or_unreadable_inbox_is_an_error() {
    let env =
        TestEnv::new("[cm]\nbase_url = \"sandbox\"\nclient_id = \"t\"\nclient_secret = \"t\"\n");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2027-12-01")]),
    );
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
    std::fs::remove_dir(env.inbox()).unwrap();
    for args in [&["import"][..], &["run"], &["run", "--dry-run"]] {
        let r = env.run(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("inbox folder") && r.stderr.contains("does not exist (inbox.dir)"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.matches("os error").count(), 0, "{}", r.stderr);
    }
    // The rest of the cycle still ran: the invoice already known got its link and mail.
    assert_eq!(env.invoice("INV-1")["link_state"], "active");
    assert_eq!(env.invoice("INV-1")["mail_state"], "sent");
    // A file where the folder should be: unreadable as a folder.
    std::fs::write(env.inbox(), "not a folder").unwrap();
    let r = env.run(&["import"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot be read (inbox.dir)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.matches("os error").count() <= 1, "{}", r.stderr);
}

/// The harm seen: a file younger than `settle_seconds`, a symbolic link and a folder
/// named like an export were passed over without a word. The summary names them.
#[test]
fn files_waiting_to_settle_or_skipped_are_named_in_the_summary() {
    let env = TestEnv::new("[inbox]\nsettle_seconds = 3600\n");
    let csv = default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]);
    std::fs::write(env.inbox().join("today.csv"), &csv).unwrap();
    std::fs::create_dir(env.inbox().join("old.csv")).unwrap();
    let target = env.write_file("elsewhere.csv", &csv);
    std::os::unix::fs::symlink(&target, env.inbox().join("link.csv")).unwrap();
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("1 file(s) waiting to settle, read by a later cycle (today.csv)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("2 skipped (link.csv (a symbolic link, not followed), old.csv (a folder))"),
        "{}",
        r.stderr
    );
    assert!(env.status().is_empty(), "nothing was read yet");
    // The cycle's summary says the same.
    let r = env.run(&["run", "--dry-run"]);
    assert!(r.stderr.contains("waiting to settle"), "{}", r.stderr);
}

/// The harm seen: after fixing the config, the same file was "same content as an earlier
/// import; nothing changes", and its rejected rows could not be brought in.
/// `import --again FILE` reads the rows the last import rejected, and nothing else: a
/// row accepted the first time and changed by a later export is not put back.
#[test]
fn import_again_brings_in_the_rows_rejected_before_and_nothing_else() {
    let env = TestEnv::new("[csv]\ndate_formats = [\"%Y-%m-%d\"]\n");
    let first = env.write_file(
        "export.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\n\
         INV-1,a@example.com,Ann,10.00,2027-01-01\n\
         INV-2,b@example.com,Bob,20.00,01.02.2027\n\
         INV-3,c@example.com,Cee,30.00,01.03.2027\n",
    );
    let r = env.run(&["import", first.to_str().unwrap()]);
    assert_eq!(r.code, 3, "two rows rejected: {}", r.stderr);
    // A later export changes INV-1.
    let later = env.write_file(
        "later.csv",
        default_csv(&[("INV-1", "a@example.com", "Ann", "15.00", "2027-01-01")]),
    );
    assert_eq!(env.run(&["import", later.to_str().unwrap()]).code, 0);

    // The config is fixed; the same file alone changes nothing, and says how to proceed.
    env.write_config("[csv]\ndate_formats = [\"%Y-%m-%d\", \"%d.%m.%Y\"]\n");
    let r = env.run(&["import", first.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--again"), "{}", r.stderr);
    assert_eq!(env.status().len(), 1);

    let r = env.run(&["import", "--again", first.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("2 row(s) accepted"), "{}", r.stderr);
    let inv = |r: &str| env.invoice(r);
    assert_eq!(inv("INV-2")["due_date"], "2027-02-01");
    assert_eq!(inv("INV-3")["amount"], "30.00");
    assert_eq!(inv("INV-1")["amount"], "15.00", "the later export stands");

    // Nothing left to read again: a no-op that says so.
    let r = env.run(&["import", "--again", first.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to read again"), "{}", r.stderr);
    assert_eq!(env.count("SELECT count(*) FROM imports"), 3);
    // `--again` needs files.
    assert_eq!(env.run(&["import", "--again"]).code, 2);
}

/// The harm seen: `amount` twice in the header, and the first was silently used.
#[test]
fn a_file_naming_a_column_twice_is_set_aside_with_that_reason() {
    let env = TestEnv::new("");
    env.drop_file(
        "twice.csv",
        "invoice_reference,customer_email,amount,due_date,Amount\n\
         INV-9,x@example.com,10.00,2026-12-01,100.00\n",
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        env.files_in("rejected"),
        ["twice.csv", "twice.csv.reason.txt"]
    );
    let reason = std::fs::read_to_string(env.path("rejected/twice.csv.reason.txt")).unwrap();
    assert!(
        reason.contains("`amount` 2 times") && reason.contains("columns 3 and 5"),
        "{reason}"
    );
    assert_eq!(env.count("SELECT count(*) FROM invoices"), 0);
}

#[test]
fn unreadable_files_are_set_aside_and_never_panic() {
    let env = TestEnv::new("");
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    env.drop_file("1-image.csv", png);
    env.drop_file("2-empty.csv", b"");
    env.drop_file("3-only-sep.csv", b"sep=;\r\n");
    env.drop_file("4-quotes.csv", b"\"\"\"\n\"a\"b\"\"\n\0\0\0");
    let mut noise = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..20000 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    env.drop_file("5-noise.csv", &noise);
    env.drop_file(
        "6-good.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(env.status().len(), 1);
    let rejected = env.files_in("rejected");
    for n in [
        "1-image.csv",
        "2-empty.csv",
        "3-only-sep.csv",
        "4-quotes.csv",
        "5-noise.csv",
    ] {
        assert!(
            rejected.contains(&n.to_string()) && rejected.contains(&format!("{n}.reason.txt")),
            "{n} not set aside: {rejected:?}"
        );
    }
    assert!(env.files_in("inbox").is_empty());
}

#[test]
fn dutch_spreadsheet_export_windows_1252_sep_line_decimal_comma() {
    let env = TestEnv::new(
        "[csv.columns]\n\
         invoice_reference = \"Factuurnummer\"\n\
         customer_email = \"E-mail\"\n\
         customer_name = \"Klant\"\n\
         amount = \"Bedrag\"\n\
         due_date = \"Vervaldatum\"\n\
         status = \"Status\"\n",
    );
    let mut bytes = b"sep=;\r\nFactuurnummer;Klant;E-mail;Bedrag;Vervaldatum;Status\r\n".to_vec();
    bytes.extend_from_slice(
        b"F2026-001;\"Jansen, Zo\xEB\";zoe@example.nl;\x80 1.234,56;01-12-2026;Open\r\n",
    );
    bytes.extend_from_slice(
        b"F2026-002;Bakker B.V.;info@bakker.example.nl;12,5;15-12-2026;Betaald\r\n",
    );
    bytes.extend_from_slice(b";;;;;\r\n");
    env.drop_file("export.csv", bytes);
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = env.invoice("F2026-001");
    assert_eq!(a["customer_name"], "Jansen, Zoë");
    assert_eq!(a["amount"], "1234.56");
    assert_eq!(a["due_date"], "2026-12-01");
    assert_eq!(a["state"], "open");
    let b = env.invoice("F2026-002");
    assert_eq!(b["state"], "settled_elsewhere");
    assert_eq!(b["amount"], "12.50");
}

#[test]
fn quoted_fields_with_delimiters_and_line_breaks_and_crlf() {
    let env = TestEnv::new("");
    let csv = "invoice_reference,customer_email,customer_name,amount,due_date,notes\r\n\
               INV-1,ann@example.com,\"Ann, Ltd\",\"1,234.50\",2026-12-01,\"first line\r\nsecond, line\"\r\n\
               INV-2,bob@example.com,Bob,5,2026-12-02,\r\n";
    env.drop_file("q.csv", csv);
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-1")["customer_name"], "Ann, Ltd");
    assert_eq!(env.invoice("INV-1")["amount"], "1234.50");
    assert_eq!(env.invoice("INV-2")["amount"], "5.00");
    // INV-2 starts on physical line 4: a bad row there is reported as line 4
    env.drop_file(
        "q2.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date,notes\r\n\
         INV-3,c@example.com,C,1,2026-12-01,\"a\r\nb\"\r\n\
         INV-4,bad,D,1,2026-12-01,\r\n",
    );
    assert_eq!(env.run(&["import"]).code, 3);
    let report = std::fs::read_to_string(env.path("rejected/q2.csv.rejected.csv")).unwrap();
    assert!(report.lines().nth(1).unwrap().starts_with("4,"), "{report}");
}

#[test]
fn semicolon_and_tab_files_are_detected_and_currency_decimals_respected() {
    let env = TestEnv::new("");
    env.drop_file(
        "semi.csv",
        "invoice_reference;customer_email;amount;due_date;currency\n\
         J-1;a@example.com;1.234;2026-12-01;JPY\n\
         K-1;b@example.com;1234,567;2026-12-01;KWD\n\
         A-1;c@example.com;12.345;2026-12-01;EUR\n",
    );
    env.drop_file(
        "tab.csv",
        "invoice_reference\tcustomer_email\tamount\tdue_date\tcurrency\n\
         U-1\tc@example.com\t$1,234.56\t2026-12-01\tusd\n",
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    // `12.345` EUR could be 12345.00 or 12.345: refused, never guessed
    let report = std::fs::read_to_string(env.path("rejected/semi.csv.rejected.csv")).unwrap();
    assert!(report.contains("ambiguous"), "{report}");
    assert!(report.contains("csv.decimal_separator"), "{report}");
    let j = env.invoice("J-1");
    assert_eq!(
        (j["amount"].as_str(), j["currency"].as_str()),
        (Some("1234"), Some("JPY"))
    );
    let k = env.invoice("K-1");
    assert_eq!(
        (k["amount"].as_str(), k["currency"].as_str()),
        (Some("1234.567"), Some("KWD"))
    );
    let u = env.invoice("U-1");
    assert_eq!(
        (u["amount"].as_str(), u["currency"].as_str()),
        (Some("1234.56"), Some("USD"))
    );
}

#[test]
fn codes_and_addresses_are_validated() {
    let env = TestEnv::new("");
    env.drop_file(
        "codes.csv",
        "invoice_reference,customer_email,amount,due_date,currency,language,country_code\n\
         OK-1,a@example.com,1,2026-12-01,EUR,nl,NL\n\
         BAD-1,a@example.com,1,2026-12-01,EURO,nl,NL\n\
         BAD-2,a@example.com,1,2026-12-01,EUR,xx,NL\n\
         BAD-3,a@example.com,1,2026-12-01,EUR,nl,QQ\n\
         BAD-4,a@@example.com,1,2026-12-01,EUR,nl,NL\n",
    );
    assert_eq!(env.run(&["import"]).code, 3);
    assert_eq!(env.status().len(), 1);
    let report = std::fs::read_to_string(env.path("rejected/codes.csv.rejected.csv")).unwrap();
    for col in ["currency", "language", "country_code", "customer_email"] {
        assert!(
            report.contains(&format!(",{col},")),
            "{col} missing in {report}"
        );
    }
}

/// The harm seen: a due date in year -0001 or +10000 passed ingest and failed the invoice
/// at CM (HTTP 400). A due date CM cannot take is rejected with its line and column, and
/// the rest of the file proceeds.
#[test]
fn due_dates_outside_what_cm_takes_are_rejected_and_the_rest_proceeds() {
    let env = TestEnv::new("");
    env.drop_file(
        "dates.csv",
        format!(
            "{HEADER}\n\
             D-1,a@example.com,A,10.00,-0001-01-01\n\
             D-2,a@example.com,A,10.00,+10000-01-01\n\
             D-3,a@example.com,A,10.00,10000-01-01\n\
             D-4,a@example.com,A,10.00,1899-12-31\n\
             D-5,a@example.com,A,10.00,9999-12-02\n\
             D-6,a@example.com,A,10.00,01-05-24\n\
             OK-1,a@example.com,A,10.00,9999-12-01\n\
             OK-2,a@example.com,A,10.00,1900-01-01\n\
             OK-3,a@example.com,A,10.00,2026-12-01\n"
        ),
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("6 row(s) were rejected"), "{}", r.stderr);
    let refs: Vec<_> = env
        .status()
        .iter()
        .map(|v| v["invoice_reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refs, ["OK-1", "OK-2", "OK-3"]);
    assert_eq!(env.invoice("OK-1")["due_date"], "9999-12-01");

    let report = std::fs::read_to_string(env.path("rejected/dates.csv.rejected.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(report.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let lines: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(lines, ["2", "3", "4", "5", "6", "7"], "{report}");
    for row in &rows {
        assert_eq!(row[1], "due_date", "{row:?}");
    }
    for (row, why) in rows.iter().zip([
        "before 1900-01-01",
        "after 9999-12-01",
        "not a date",
        "before 1900-01-01",
        "after 9999-12-01",
        "before 1900-01-01",
    ]) {
        assert!(row[2].contains(why), "{why}: {row:?}");
    }
    assert!(
        rows[4][2].contains("link_expiry_days_after_due"),
        "{:?}",
        rows[4]
    );
    assert_eq!(env.files_in("archive").len(), 1, "the file is archived");

    // The room left depends on how long a link outlives its due date.
    let env = TestEnv::new("[cm]\nlink_expiry_days_after_due = 0\n");
    env.drop_file(
        "late.csv",
        format!("{HEADER}\nL-1,a@example.com,A,10.00,9999-12-31\n"),
    );
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("L-1")["due_date"], "9999-12-31");
}

#[test]
fn credit_notes_and_zero_amounts_are_skipped_and_counted() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "c.csv",
        default_csv(&[
            ("INV-1", "a@example.com", "A", "10", "2026-12-01"),
            ("CN-1", "a@example.com", "A", "-10", "2026-12-01"),
            ("Z-1", "a@example.com", "A", "0,00", "2026-12-01"),
        ]),
    );
    let r = env.run(&["import", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("2 skipped"), "{}", r.stderr);
    assert_eq!(env.status().len(), 1);
    assert_eq!(env.count("SELECT rows_skipped FROM imports"), 2);
}

#[test]
fn changes_make_new_revisions_and_unchanged_rows_nothing() {
    let env = TestEnv::new("");
    let day1 = default_csv(&[
        ("A", "a@example.com", "A", "10", "2026-12-01"),
        ("B", "b@example.com", "B", "20", "2026-12-01"),
        ("C", "c@example.com", "C", "30", "2026-12-01"),
        ("D", "d@example.com", "D", "40", "2026-12-01"),
    ]);
    let day2 = default_csv(&[
        ("A", "a@example.com", "A", "11", "2026-12-01"), // amount
        ("B", "b@example.com", "B", "20", "2026-12-15"), // due date
        ("C", "new-c@example.com", "C", "30", "2026-12-01"), // address
        ("D", "D@EXAMPLE.COM", "Dee renamed", "40", "2026-12-01"), // nothing that matters
    ]);
    env.drop_file("1.csv", day1);
    env.drop_file("2.csv", day2);
    assert_eq!(env.run(&["import"]).code, 0);
    let rev = |r: &str| {
        env.count(&format!(
            "SELECT revision FROM invoices WHERE reference = '{r}'"
        ))
    };
    assert_eq!((rev("A"), rev("B"), rev("C"), rev("D")), (2, 2, 2, 1));
    assert_eq!(env.invoice("A")["amount"], "11.00");
    assert_eq!(env.invoice("B")["due_date"], "2026-12-15");
    assert_eq!(env.invoice("C")["customer_email"], "new-c@example.com");
    // old revisions are kept
    assert_eq!(env.count("SELECT count(*) FROM revisions"), 7);
    assert_eq!(
        env.count("SELECT invoices_changed FROM imports ORDER BY id DESC LIMIT 1"),
        3
    );
}

#[test]
fn paid_status_and_outstanding_balances() {
    let env = TestEnv::new("");
    env.drop_file(
        "1.csv",
        "invoice_reference,customer_email,amount,due_date,status,outstanding\n\
         P-1,a@example.com,100,2026-12-01,open,100\n\
         P-2,a@example.com,100,2026-12-01,open,100\n\
         P-3,a@example.com,100,2026-12-01,open,100\n\
         P-4,a@example.com,100,2026-12-01,open,\n",
    );
    env.drop_file(
        "2.csv",
        "invoice_reference,customer_email,amount,due_date,status,outstanding\n\
         P-1,a@example.com,100,2026-12-01,VOLDAAN,100\n\
         P-2,a@example.com,100,2026-12-01,open,0\n\
         P-3,a@example.com,100,2026-12-01,open,\"40,00\"\n\
         P-4,a@example.com,100,2026-12-01,Paid,\n",
    );
    assert_eq!(env.run(&["import"]).code, 0);
    assert_eq!(env.invoice("P-1")["state"], "settled_elsewhere");
    assert_eq!(env.invoice("P-2")["state"], "settled_elsewhere");
    assert_eq!(env.invoice("P-4")["state"], "settled_elsewhere");
    let p3 = env.invoice("P-3");
    assert_eq!(
        (p3["state"].as_str(), p3["amount"].as_str()),
        (Some("open"), Some("40.00"))
    );
    assert_eq!(
        env.count("SELECT reason = 'partial_payment' FROM revisions r JOIN invoices i ON i.id = r.invoice_id WHERE i.reference = 'P-3' AND r.revision = 2"),
        1
    );
    // a settled invoice listed open again is reopened as a new revision
    env.drop_file(
        "3.csv",
        "invoice_reference,customer_email,amount,due_date,status,outstanding\n\
         P-1,a@example.com,100,2026-12-01,open,100\n",
    );
    assert_eq!(env.run(&["import"]).code, 0);
    assert_eq!(env.invoice("P-1")["state"], "open");
    assert_eq!(
        env.count("SELECT revision FROM invoices WHERE reference = 'P-1'"),
        2
    );
}

#[test]
fn snapshot_settles_missing_invoices_but_not_more_than_half() {
    let env = TestEnv::new("[csv]\nsettlement = \"snapshot\"\n");
    let rows: Vec<(String, &str, &str, &str, &str)> = (1..=10)
        .map(|i| (format!("S-{i}"), "a@example.com", "A", "10", "2026-12-01"))
        .collect();
    let as_ref = |v: &[(String, &str, &str, &str, &str)]| -> String {
        let r: Vec<(&str, &str, &str, &str, &str)> = v
            .iter()
            .map(|(a, b, c, d, e)| (a.as_str(), *b, *c, *d, *e))
            .collect();
        default_csv(&r)
    };
    env.drop_file("1.csv", as_ref(&rows));
    assert_eq!(env.run(&["import"]).code, 0);
    // 3 of 10 missing: settled
    env.drop_file("2.csv", as_ref(&rows[..7]));
    let r = env.run(&["import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let settled = |env: &TestEnv| {
        env.count("SELECT count(*) FROM invoices WHERE state = 'settled_elsewhere'")
    };
    assert_eq!(settled(&env), 3);
    // 4 of the 7 open ones missing (> 50 %): nothing settled, exit 3
    env.drop_file("3.csv", as_ref(&rows[..3]));
    let r = env.run(&["import"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("more than half"), "{}", r.stderr);
    assert_eq!(settled(&env), 3);
    assert_eq!(
        env.count("SELECT snapshot_guard FROM imports ORDER BY id DESC LIMIT 1"),
        1
    );
}

#[test]
fn a_second_import_while_the_lock_is_held_exits_75() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2026-12-01")]),
    );
    let lock = invoice_sync::lock::RunLock::try_acquire(&env.path("state/invoice-sync.db"))
        .unwrap()
        .unwrap();
    let r = env.run(&["import", f.to_str().unwrap()]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("run lock"), "{}", r.stderr);
    drop(lock);
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let env = TestEnv::new("");
    std::fs::write(&env.config, "[csv.columns]\namont = \"Bedrag\"\n").unwrap();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("csv.columns.amont"), "{}", r.stderr);
    assert!(r.stderr.contains("invoice-sync.toml"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one sentence: {}", r.stderr);

    std::fs::write(&env.config, "[inbox]\nsettle_seconds = -1\n").unwrap();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("inbox.settle_seconds"), "{}", r.stderr);
}

#[test]
fn config_comes_from_the_environment_variable_when_no_flag_is_given() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2026-12-01")]),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .args(["import", f.to_str().unwrap()])
        .env("INVOICE_SYNC_CONFIG", &env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(env.status().len(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new("");
    assert_eq!(env.run(&["frobnicate"]).code, 2);
    assert_eq!(env.run(&["status", "--state", "sleeping"]).code, 2);
    let r = env.run(&["--help"]);
    assert_eq!(r.code, 0);
    // only working commands are listed
    for cmd in ["import", "status"] {
        assert!(r.stdout.contains(cmd), "{}", r.stdout);
    }
}

#[test]
fn status_filters_and_table() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date,status\n\
         INV-1,a@example.com,Ann,10,2026-12-01,\n\
         INV-2,b@example.com,Bob,20,2026-12-02,paid\n",
    );
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
    let r = env.run(&["status", "--state", "settled_elsewhere", "--json"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["invoice_reference"], "INV-2");
    let r = env.run(&["status", "INV-1"]);
    assert_eq!(r.code, 0);
    // One invoice: every field on a line of its own.
    assert!(r.stdout.starts_with("invoice     INV-1\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("customer    Ann <a@example.com>\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("amount      EUR 10.00\n"), "{}", r.stdout);
    assert!(r.stdout.contains("state       open\n"), "{}", r.stdout);
    let r = env.run(&["status"]);
    let lines: Vec<_> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("INVOICE"));
    assert!(lines[1].starts_with("INV-1 ") && lines[1].contains("Ann"));
    assert!(lines[1].contains("EUR 10.00") && lines[1].contains("open"));
    assert!(lines[2].starts_with("INV-2 ") && lines[2].contains("settled"));
    let r = env.run(&["status", "NOPE"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("NOPE"));
}

#[test]
fn status_without_a_database_says_so() {
    let env = TestEnv::new("");
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no database"), "{}", r.stderr);
}

#[test]
fn logs_under_journald_have_no_timestamps_json_for_shippers_and_quiet_is_quiet() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2026-12-01")]),
    );
    let out = env
        .command()
        .args(["import", f.to_str().unwrap()])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().count() >= 2, "{err}");
    for line in err.lines() {
        let level = line.strip_prefix("<6>").unwrap_or(line).trim_start();
        assert!(
            level.starts_with("INFO") && !line.contains('\x1b'),
            "a timestamp, colour or missing priority under journald: {line:?}"
        );
    }
    // Warnings carry priority 4, so `journalctl -p warning` shows them, and the final
    // sentence of an exit 3 is a warning too.
    let bad = env.write_file(
        "bad.csv",
        default_csv(&[("INV-9", "not-an-address", "A", "10", "2026-12-01")]),
    );
    let out = env
        .command()
        .args(["import", bad.to_str().unwrap()])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("<4>")).collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("WARN") && l.contains("rejected")),
        "{err}"
    );
    assert!(
        warnings.iter().any(|l| l.starts_with("<4>invoice-sync: ")),
        "{err}"
    );
    assert!(err.lines().all(|l| l.starts_with('<')), "{err}");
    env.write_file(
        "b.csv",
        default_csv(&[("INV-2", "b@example.com", "B", "10", "2026-12-01")]),
    );
    let r = env.run(&[
        "--log-format",
        "json",
        "import",
        env.path("b.csv").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0);
    let lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(lines.iter().any(|v| {
        v["level"] == "INFO"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("import:"))
    }));
    env.write_file(
        "c.csv",
        default_csv(&[("INV-3", "c@example.com", "C", "10", "2026-12-01")]),
    );
    let r = env.run(&["-q", "import", env.path("c.csv").to_str().unwrap()]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "", "-q prints only warnings and errors");
}

#[test]
fn a_progress_bar_shows_for_a_large_file_on_a_terminal_only() {
    let env = TestEnv::new("");
    // about 9 MiB: over the 8 MiB threshold
    let mut csv = String::from(HEADER);
    csv.push('\n');
    let mut i = 0;
    while csv.len() < 9 * 1024 * 1024 {
        csv.push_str(&format!(
            "P-{i:08},customer{i:08}@example.com,Customer {i:08},12.50,2026-12-01\n"
        ));
        i += 1;
    }
    let f = env.write_file("big.csv", &csv);
    // on a terminal (a pseudo-terminal from util-linux `script`)
    let cmd = format!(
        "{} --config {} import {}",
        env!("CARGO_BIN_EXE_invoice-sync"),
        env.config.display(),
        f.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) runs the import on a pseudo-terminal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.contains("big.csv [") && seen.contains("MiB"),
        "no progress bar on a terminal: {}",
        seen.chars().take(600).collect::<String>()
    );
    // the same through pipes (cron, systemd): no bar
    env.write_file("big2.csv", csv.replace("P-", "Q-"));
    let r = env.run(&["import", env.path("big2.csv").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("big2.csv ["), "{}", r.stderr);
    assert_eq!(env.count("SELECT count(*) FROM invoices"), 2 * i);
}

/// The harm seen: `resend` and `deactivate` of a reference no export listed said "has
/// no active link", sending the operator looking for a link.
#[test]
fn overrides_of_an_unknown_reference_say_there_is_no_such_invoice() {
    let env = TestEnv::new("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
    for cmd in ["resend", "deactivate"] {
        let r = env.run(&[cmd, "INV-404"]);
        assert_eq!(r.code, 1, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("no invoice \"INV-404\""),
            "{cmd}: {}",
            r.stderr
        );
    }
    // A known invoice without a link still says what it lacks.
    let r = env.run(&["resend", "INV-1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("has no active link"), "{}", r.stderr);
}

/// Errors in plain words: a missing config file names `--config` and the variable,
/// nothing says "(os error 2)" twice or names a Rust type, and `export-paid --since`
/// reads the dates the exports use.
#[test]
fn errors_are_in_plain_words() {
    let env = TestEnv::new("");
    std::fs::remove_file(&env.config).unwrap();
    let r = env.command().arg("status").output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--config") && err.contains("INVOICE_SYNC_CONFIG"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");

    std::fs::write(&env.config, "[cm]\ntimeout_seconds = -1\n").unwrap();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cm.timeout_seconds"), "{}", r.stderr);
    assert!(r.stderr.contains("a whole number"), "{}", r.stderr);
    assert!(!r.stderr.contains("u64"), "{}", r.stderr);

    env.write_config("");
    let f = env.write_file(
        "a.csv",
        default_csv(&[("INV-1", "ann@example.com", "Ann", "10.00", "2026-12-01")]),
    );
    assert_eq!(env.run(&["import", f.to_str().unwrap()]).code, 0);
    let r = env.run(&["export-paid", "--since", "01-12-2026"]);
    assert_eq!(r.code, 0, "a configured date format: {}", r.stderr);
    let r = env.run(&["export-paid", "--since", "2026-13-45"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a date"), "{}", r.stderr);
}
