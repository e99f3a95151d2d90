//! A cycle's cost grows with what changed, not with history: the work an idle cycle does
//! in the database is the same with 200 settled invoices as with 20,000.
//!
//! Work is counted in SQLite virtual-machine steps (a progress handler), which, unlike a
//! stopwatch, is the same on a busy machine as on an idle one: a query that scans every
//! invoice, link or mail ever seen costs steps in proportion to history.

use crate::common;

use std::sync::atomic::Ordering;

use common::TestEnv;

/// Steps of the VM between two progress-handler calls.
const STEPS: i32 = 100;

/// An installation with `open` open invoices (linked and mailed by a real cycle against
/// the embedded sandbox) and `settled` settled ones with the history such invoices leave
/// (a link, paid or deactivated, and a sent mail).
fn installation(open: usize, settled: usize) -> TestEnv {
    let env = TestEnv::new(
        "[cm]\nbase_url = \"sandbox\"\nclient_id = \"t\"\nclient_secret = \"t\"\nrequests_per_second = 1000\nburst = 1000\n",
    );
    if settled > 0 {
        let rows: String = (0..settled)
            .map(|i| format!("OLD-{i:06},old{i}@example.com,Old {i},10.00,EUR,2027-01-01\n"))
            .collect();
        let f = env.write_file(
            "history.csv",
            format!(
                "invoice_reference,customer_email,customer_name,amount,currency,due_date\n{rows}"
            ),
        );
        let r = env.run(&["import", f.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        env.db()
            .execute_batch(
                "BEGIN;
                 INSERT INTO links (invoice_id, revision, merchant_reference, state, link_ref, uri,
                                    amount_minor, currency, created_at, deactivation_reason, paid_at)
                 SELECT id, revision, reference || '/r1',
                        CASE WHEN id % 2 = 0 THEN 'paid' ELSE 'inactive' END,
                        'pml-old-' || id, 'https://pay.example/' || id, 1000, 'EUR',
                        '2024-01-01T00:00:00Z',
                        CASE WHEN id % 2 = 1 THEN 'invoice_not_open' END,
                        CASE WHEN id % 2 = 0 THEN '2024-01-02T00:00:00Z' END
                 FROM invoices;
                 INSERT INTO outbox (invoice_id, revision, link_id, kind, state, attempts,
                                     next_attempt_at, created_at, sent_at)
                 SELECT invoice_id, revision, id, 'link', 'sent', 1, created_at, created_at, created_at
                 FROM links;
                 UPDATE invoices SET state = CASE WHEN id % 2 = 0 THEN 'paid' ELSE 'settled_elsewhere' END;
                 COMMIT;",
            )
            .unwrap();
    }
    let rows: String = (0..open)
        .map(|i| {
            format!(
                "INV-{i:04},c{i}@example.com,Customer {i},{}.50,EUR,2027-03-01\n",
                10 + i
            )
        })
        .collect();
    let f = env.write_file(
        "open.csv",
        format!("invoice_reference,customer_email,customer_name,amount,currency,due_date\n{rows}"),
    );
    let r = env.run(&["run", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Whatever the first cycles leave to tidy up is tidied now.
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    env
}

/// The VM steps of one idle cycle, run in this process on the installation's database.
fn idle_cycle_steps(env: &TestEnv) -> u64 {
    let config = invoice_sync::config::Config::load(&env.config).unwrap();
    let store = invoice_sync::store::Store::open(&config.storage.database).unwrap();
    let steps = store.count_steps(STEPS).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(async {
        let services = invoice_sync::services::Services::open(&config)
            .await
            .unwrap();
        let report = invoice_sync::cycle::run(
            &store,
            &config,
            Some(services.cycle()),
            &invoice_sync::cycle::Options::default(),
        )
        .await
        .unwrap();
        services.close().await;
        report
    });
    assert_eq!(report.links_created, 0, "the cycle is idle");
    assert_eq!(report.mails_sent, 0, "the cycle is idle");
    assert!(report.attention().is_none(), "{:?}", report.attention());
    steps.load(Ordering::Relaxed)
}

#[test]
fn an_idle_cycle_does_not_scan_history() {
    let small = installation(20, 200);
    let large = installation(20, 20_000);
    let a = idle_cycle_steps(&small);
    let b = idle_cycle_steps(&large);
    // A scan of 20,000 invoices, links or mails costs several hundred thousand steps; the
    // work itself (20 open invoices, nothing due) a few thousand.
    assert!(
        b <= a * 3 / 2 + 2_000,
        "an idle cycle took {b} VM steps with 20,000 settled invoices, {a} with 200"
    );
}
