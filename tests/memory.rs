//! The tests that bound a child's memory, in a binary of their own. `measure::run` reads
//! the child's peak RSS from `wait4`, and Linux starts that figure at the RSS the parent
//! had when it spawned the child: inside the one big test binary, with other tests running
//! beside it, the figure was the test binary's own, not the import's. Here the parent is
//! this small harness alone.

#[path = "it/common/mod.rs"]
mod common;

use common::{TestEnv, measure};

/// A 50 MB line, and a 50 MB row (a quote opened and closed half a million lines later),
/// each between ordinary rows: the monster is cut at 1 MiB and rejected with its length,
/// memory stays far below the monster's size, the report holds the row once (not once per
/// problem), and the rows after it are imported with their true line numbers.
#[test]
fn a_50_mb_line_or_row_is_rejected_in_bounded_memory() {
    use std::io::Write;
    for (quoted, piece, times, inv3_line) in [
        (false, "x".repeat(1000), 50_000, 4),
        (true, format!("{}\n", "y".repeat(99)), 500_000, 500_004),
    ] {
        let env = TestEnv::new("");
        let path = env.path("monster.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let q = if quoted { "\"" } else { "" };
        write!(
            w,
            "invoice_reference,customer_email,customer_name,amount,currency,due_date\n\
             INV-1,a@example.com,Ann,10.00,EUR,2027-01-01\n\
             INV-2,not-an-address,{q}"
        )
        .unwrap();
        for _ in 0..times {
            w.write_all(piece.as_bytes()).unwrap();
        }
        write!(
            w,
            "{q},abc,XXX,someday\nINV-3,c@example.com,Cee,30.00,EUR,2027-01-01\n"
        )
        .unwrap();
        w.flush().unwrap();
        drop(w);

        let mut cmd = env.command();
        cmd.args(["import", path.to_str().unwrap()]);
        let m = measure::run(cmd);
        let (code, rss_kib) = (m.code, m.peak_rss_kib);
        assert_eq!(code, 3, "a rejected row is worth a look");
        assert!(
            rss_kib < 40 * 1024,
            "peak RSS {} MiB for a 50 MB monster",
            rss_kib / 1024
        );
        let refs: Vec<String> = env
            .status()
            .iter()
            .map(|v| v["invoice_reference"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(refs, ["INV-1", "INV-3"]);
        let line: i64 = env
            .db()
            .query_row(
                "SELECT seen_line FROM invoices WHERE reference = 'INV-3'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(line, inv3_line);

        let reports = env.files_in("rejected");
        assert_eq!(reports.len(), 1, "{reports:?}");
        let report = std::fs::read(env.path("rejected").join(&reports[0])).unwrap();
        assert!(report.len() < 2 << 20, "report of {} bytes", report.len());
        let text = String::from_utf8_lossy(&report[..300.min(report.len())]).into_owned();
        assert!(text.contains("3,(whole row),\"the row is 5000"), "{text}");
    }
}
