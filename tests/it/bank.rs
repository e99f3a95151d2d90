//! Bank transfers (README, *Bank transfers*): the merchant's own statements settle what was
//! paid by transfer, once, and nothing else is applied by itself. Every scenario runs the
//! real binary on a real database, with statements written as the banks write them.

use crate::common;

use common::statements::{ACCOUNT, Tx, camt, camt_message, mt940};
use common::{SandboxHost, TestEnv};
use invoice_sync::domain::CreditorRef;
use invoice_sync::sandbox::SandboxOptions;
use serde_json::Value;

const BANK: &str = "[merchant]\nname = \"Bloemenhandel Het Tulpje B.V.\"\niban = \"NL91 ABNA 0417 1643 00\"\n\n\
[bank]\nenabled = true\ninbox = \"bank\"\narchive_dir = \"bank-archive\"\nrejected_dir = \"bank-rejected\"\naccounts = [\"NL91ABNA0417164300\"]\n";

/// An installation with bank statements on, three invoices with live links and their
/// mails sent: INV-1 (100.00), INV-2 (250.00), INV-3 (60.00, Piet Jansen).
fn setup(host: &SandboxHost) -> TestEnv {
    setup_with(host, "")
}

fn setup_with(host: &SandboxHost, extra: &str) -> TestEnv {
    let env = TestEnv::new(&common::merge_toml(
        &common::merge_toml(&host.cm_toml(), BANK),
        extra,
    ));
    std::fs::create_dir_all(env.path("bank")).unwrap();
    env.drop_file("a.csv", three_invoices());
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    env
}

/// The export of the three invoices every scenario starts with.
fn three_invoices() -> String {
    common::default_csv(&[
        (
            "INV-1",
            "jan@example.com",
            "Jan de Vries",
            "100.00",
            "2099-12-01",
        ),
        (
            "INV-2",
            "ann@example.com",
            "Ann Smit",
            "250.00",
            "2099-12-01",
        ),
        (
            "INV-3",
            "piet@example.com",
            "Piet Jansen",
            "60.00",
            "2099-12-01",
        ),
    ])
}

fn drop_statement(env: &TestEnv, name: &str, text: &str) {
    std::fs::write(env.path("bank").join(name), text).unwrap();
}

fn bank_import(env: &TestEnv) -> common::Run {
    env.run(&["bank", "import"])
}

fn entries(env: &TestEnv, unmatched: bool) -> Vec<Value> {
    let mut args = vec!["bank", "status", "--json"];
    if unmatched {
        args.push("--unmatched");
    }
    let r = env.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).expect("bank status --json is a JSON array")
}

fn cref(reference: &str) -> String {
    CreditorRef::of_invoice(reference).as_str().to_string()
}

#[test]
fn a_transfer_quoting_the_creditor_reference_pays_the_invoice_and_its_link_goes() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["creditor_reference"], cref("INV-1"));
    assert_eq!(inv["paid_by"], Value::Null);
    let link_ref = inv["link_ref"].as_str().unwrap().to_string();
    // A resend is queued: the match must cancel it in the same transaction.
    assert_eq!(env.run(&["resend", "INV-1"]).code, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        1
    );

    drop_statement(
        &env,
        "stmt.xml",
        &camt(
            ACCOUNT,
            &[
                Tx::structured("100.00", &CreditorRef::of_invoice("INV-1").grouped())
                    .bank_ref("B-1"),
            ],
        ),
    );
    let r = bank_import(&env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 matched"), "{}", r.stdout);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["state"], "paid", "{inv}");
    assert_eq!(inv["paid_by"], "transfer");
    assert_eq!(inv["amount_received"], "100.00");
    assert_eq!(inv["overpaid"], Value::Null);
    assert_eq!(inv["flags"], serde_json::json!([]));
    assert!(
        inv["paid_at"].as_str().unwrap().starts_with("2026-12-07"),
        "{inv}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        0,
        "the queued mail was cancelled with the match"
    );
    assert_eq!(
        env.files_in("bank"),
        Vec::<String>::new(),
        "the statement was archived"
    );
    assert_eq!(env.files_in("bank-archive").len(), 1);

    // The next cycle switches the link off; nothing else changes.
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !host.sb().link(&link_ref).unwrap().active,
        "the link is no longer payable"
    );
    let e = &entries(&env, false)[0];
    assert_eq!(e["outcome"], "matched");
    assert_eq!(e["invoice_reference"], "INV-1");
    assert_eq!(e["amount"], "100.00");
    assert_eq!(e["credit_debit"], "CRDT");
    assert_eq!(e["status"], "BOOK");
    assert_eq!(e["account"], ACCOUNT);
    assert_eq!(e["bank_reference"], "B-1");
    assert_eq!(e["booking_date"], "2026-12-07");
    for key in [
        "entry_id",
        "value_date",
        "currency",
        "counterparty_name",
        "counterparty_iban",
        "remittance",
        "structured_reference",
        "suggested_invoice",
        "reason",
    ] {
        assert!(e.get(key).is_some(), "bank status --json has {key}: {e}");
    }
}

#[test]
fn the_invoice_reference_as_a_whole_token_matches_in_any_case_but_not_inside_a_longer_word() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    drop_statement(
        &env,
        "s.xml",
        &camt(
            ACCOUNT,
            &[
                Tx::credit("250.00", "Betaling factuur (inv-2), dank!").bank_ref("T-1"),
                // Someone else's number inside a longer text: never a match.
                Tx::credit("60.00", "order XINV-3 and ref INV-30").bank_ref("T-2"),
                // Two open invoices named: left for the operator.
                Tx::credit("10.00", "INV-1 INV-3").bank_ref("T-3"),
            ],
        ),
    );
    let r = bank_import(&env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-2")["state"], "paid");
    assert_eq!(env.invoice("INV-3")["state"], "open");
    assert_eq!(env.invoice("INV-1")["state"], "open");
    let all = entries(&env, false);
    assert_eq!(all[0]["outcome"], "matched");
    assert_eq!(all[1]["outcome"], "unmatched", "{}", all[1]);
    assert_eq!(all[2]["outcome"], "unmatched");
    assert!(
        all[2]["reason"]
            .as_str()
            .unwrap()
            .contains("2 open invoices"),
        "{}",
        all[2]
    );
}

#[test]
fn a_partial_transfer_makes_a_new_revision_for_the_rest_and_its_mail_says_what_was_received() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let old = env.invoice("INV-2")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    drop_statement(
        &env,
        "s.xml",
        &camt(
            ACCOUNT,
            &[Tx::structured("100.00", &cref("INV-2")).bank_ref("P-1")],
        ),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inv = env.invoice("INV-2");
    assert_eq!(inv["state"], "open");
    assert_eq!(inv["amount"], "150.00", "the new link asks for the rest");
    assert_eq!(inv["amount_received"], "100.00");
    assert!(
        !host.sb().link(&old).unwrap().active,
        "the old link is replaced"
    );
    let new = inv["link_ref"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(host.sb().link(new).unwrap().fields["amount"], "150.00");
    // The replacement mail tells the customer what came in and what remains.
    let mails = env.files_in("outbox");
    let last = mails.iter().filter(|m| m.contains("INV-2")).max().unwrap();
    let text = std::fs::read_to_string(env.path("outbox").join(last)).unwrap();
    let body = common::mail_text(&text);
    assert!(body.contains("100,00") && body.contains("150,00"), "{body}");

    // The export catches up with the same row: nothing changes (the transfer stays
    // subtracted, once).
    env.drop_file("b.csv", three_invoices());
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-2")["amount"], "150.00");
    // One that changes only the due date still owes the transfer: the link asks the
    // export's amount less the transfer.
    env.drop_file(
        "c.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\n\
         INV-2,ann@example.com,Ann Smit,250.00,2099-12-15\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inv = env.invoice("INV-2");
    assert_eq!(inv["due_date"], "2099-12-15");
    assert_eq!(
        inv["amount"], "150.00",
        "the transfer since the last export is still subtracted"
    );
    // That row again (in a file that differs elsewhere) changes nothing.
    env.drop_file(
        "c2.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\n\
         INV-2,ann@example.com,Ann Smit,250.00,2099-12-15\n\
         INV-9,nine@example.com,Nine,9.00,2099-12-15\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        env.invoice("INV-2")["amount"],
        "150.00",
        "the same row read again"
    );
    // A later export that lowers the amount includes the transfer: the link asks that,
    // never the transfer subtracted twice.
    env.drop_file(
        "d.csv",
        "invoice_reference,customer_email,customer_name,amount,outstanding,due_date\n\
         INV-2,ann@example.com,Ann Smit,250.00,150.00,2099-12-15\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        env.invoice("INV-2")["amount"],
        "150.00",
        "never subtracted twice"
    );
    // And it lowers it further when the books say so.
    env.drop_file(
        "e.csv",
        "invoice_reference,customer_email,customer_name,amount,outstanding,due_date\n\
         INV-2,ann@example.com,Ann Smit,250.00,120.00,2099-12-15\n",
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-2")["amount"], "120.00");
}

#[test]
fn an_overpayment_and_a_transfer_plus_a_link_payment_are_flagged_for_a_refund_with_exit_3() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    // INV-1 paid through its link first.
    let link = env.invoice("INV-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    common::make_links_due(&env);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(env.invoice("INV-1")["paid_by"], "link");
    drop_statement(
        &env,
        "s.xml",
        &camt(
            ACCOUNT,
            &[
                Tx::structured("100.00", &cref("INV-1")).bank_ref("O-1"),
                Tx::credit("80.00", "INV-3").bank_ref("O-2"),
            ],
        ),
    );
    let r = bank_import(&env);
    assert_eq!(r.code, 3, "a surplus to refund needs the operator");
    assert!(
        r.stderr.contains("INV-1") && r.stderr.contains("refund"),
        "{}",
        r.stderr
    );
    let one = env.invoice("INV-1");
    assert_eq!(one["overpaid"], "100.00");
    assert_eq!(one["flags"], serde_json::json!(["overpaid"]));
    assert_eq!(one["amount_received"], "200.00");
    let three = env.invoice("INV-3");
    assert_eq!(three["state"], "paid");
    assert_eq!(three["overpaid"], "20.00");
    let r = env.run(&["bank", "status"]);
    assert!(r.stdout.contains("overpaid by EUR 20.00"), "{}", r.stdout);
    // The cycle says it too, and exits 3.
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The metric counts invoices with a surplus.
    let store =
        invoice_sync::store::Store::open_read_only(&env.path("state/invoice-sync.db")).unwrap();
    let metrics = invoice_sync::metrics::render(&store).unwrap();
    assert!(
        metrics.contains("invoice_sync_invoices_overpaid 2"),
        "{metrics}"
    );
}

#[test]
fn a_reversal_undoes_its_match_and_reopens_the_invoice_flagged() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    drop_statement(
        &env,
        "a.xml",
        &camt(
            ACCOUNT,
            &[Tx::credit("250.00", "INV-2").bank_ref("R-1").e2e("E2E-77")],
        ),
    );
    assert_eq!(bank_import(&env).code, 0);
    assert_eq!(env.invoice("INV-2")["state"], "paid");
    let mut back = Tx::credit("250.00", "INV-2").bank_ref("R-2").e2e("E2E-77");
    back.credit = false;
    back.reversal = true;
    back.booked = "2026-12-08";
    drop_statement(&env, "b.xml", &camt(ACCOUNT, &[back]));
    let r = bank_import(&env);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let inv = env.invoice("INV-2");
    assert_eq!(inv["state"], "open", "{inv}");
    assert_eq!(inv["amount"], "250.00");
    assert_eq!(inv["flags"], serde_json::json!(["reversed"]));
    let all = entries(&env, false);
    assert_eq!(all[0]["outcome"], "reversed");
    assert_eq!(all[1]["outcome"], "reversed");
    assert_eq!(all[1]["invoice_reference"], "INV-2");
    // The next cycle makes a new link for it.
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(env.invoice("INV-2")["link_active"], true);
}

#[test]
fn every_entry_is_applied_once_whatever_overlaps_and_identical_transfers_count_twice() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    // Intraday report: the transfer is pending, then booked; then the day's statement.
    let mut pending = Tx::credit("30.00", "INV-2").bank_ref("D-1");
    pending.status = "PDNG";
    drop_statement(
        &env,
        "1.xml",
        &camt_message("camt.052.001.02", ACCOUNT, &[pending]),
    );
    assert_eq!(bank_import(&env).code, 0);
    assert_eq!(
        env.invoice("INV-2")["amount"],
        "250.00",
        "a pending entry is not applied"
    );
    let booked = Tx::credit("30.00", "INV-2").bank_ref("D-1");
    drop_statement(
        &env,
        "2.xml",
        &camt_message("camt.052.001.02", ACCOUNT, std::slice::from_ref(&booked)),
    );
    assert_eq!(bank_import(&env).code, 0);
    assert_eq!(
        env.invoice("INV-2")["amount"],
        "220.00",
        "applied once booked"
    );
    // The end-of-day statement repeats it, and adds two identical transfers without a
    // bank reference.
    let twin = Tx::credit("10.00", "INV-2");
    let day = camt(ACCOUNT, &[booked, twin.clone(), twin.clone()]);
    drop_statement(&env, "3.xml", &day);
    assert_eq!(bank_import(&env).code, 0);
    assert_eq!(
        env.invoice("INV-2")["amount"],
        "200.00",
        "the twins count twice"
    );
    // The same file again, and an overlapping download with one twin: nothing changes.
    drop_statement(&env, "3-again.xml", &day);
    drop_statement(&env, "4.xml", &camt(ACCOUNT, &[twin]));
    let r = bank_import(&env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 duplicate"), "{}", r.stdout);
    assert!(r.stdout.contains("1 file(s) already read"), "{}", r.stdout);
    assert_eq!(env.invoice("INV-2")["amount"], "200.00");
    assert_eq!(env.invoice("INV-2")["amount_received"], "50.00");
    assert_eq!(env.count("SELECT count(*) FROM bank_entries"), 3);
}

#[test]
fn mt940_statements_are_read_as_the_dutch_banks_write_them() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let info = format!(
        "/EREF/NOTPROVIDED//CNTP/NL20INGB0001234567/INGBNL2A/J DE VRIES/AMSTERDAM/REMI/STRD/CUR/{}/",
        cref("INV-1")
    );
    let text = mt940(
        ACCOUNT,
        &[
            ("100,00", "C", "0000000000000001", &info),
            // Latin-1 free text naming INV-3.
            (
                "60,00",
                "C",
                "0000000000000002",
                "Betaling f\u{e9}ctuur INV-3",
            ),
        ],
    );
    let (latin1, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
    std::fs::write(env.path("bank").join("ing.940"), latin1).unwrap();
    let r = bank_import(&env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-1")["state"], "paid");
    assert_eq!(env.invoice("INV-3")["state"], "paid");
    let all = entries(&env, false);
    assert!(
        all[1]["remittance"]
            .as_str()
            .unwrap()
            .contains("f\u{e9}ctuur"),
        "{}",
        all[1]
    );
}

#[test]
fn nothing_else_is_applied_by_itself_and_each_refusal_says_why() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let wrong_digits = {
        let good = cref("INV-1");
        let digits: u32 = good[2..4].parse().unwrap();
        format!("RF{:02}{}", (digits + 1) % 100, &good[4..])
    };
    let mut debit = Tx::credit("100.00", "INV-1 refund");
    debit.credit = false;
    let mut dollars = Tx::credit("250.00", "INV-2");
    dollars.currency = "USD";
    let mut pending = Tx::credit("60.00", "INV-3");
    pending.status = "PDNG";
    drop_statement(
        &env,
        "s.xml",
        &camt(
            ACCOUNT,
            &[
                debit.bank_ref("N-1"),
                dollars.bank_ref("N-2"),
                pending.bank_ref("N-3"),
                Tx::credit("100.00", &format!("betaling {wrong_digits}")).bank_ref("N-4"),
                // Amount and name fit INV-3 (Piet Jansen, 60.00): suggested, not applied.
                Tx {
                    name: "P. Jansen",
                    ..Tx::credit("60.00", "bloemen")
                }
                .bank_ref("N-5"),
            ],
        ),
    );
    let r = bank_import(&env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for inv in ["INV-1", "INV-2", "INV-3"] {
        assert_eq!(env.invoice(inv)["state"], "open", "{inv} untouched");
    }
    let all = entries(&env, false);
    let reason = |i: usize| all[i]["reason"].as_str().unwrap_or("").to_string();
    assert_eq!(all[0]["outcome"], "ignored");
    assert!(reason(0).contains("debit"), "{}", reason(0));
    assert_eq!(all[1]["outcome"], "unmatched");
    assert!(reason(1).contains("USD"), "{}", reason(1));
    assert_eq!(all[2]["outcome"], "ignored");
    assert!(reason(2).contains("pending"), "{}", reason(2));
    // Never applied on a wrong check digit; its amount and payer fit INV-1, so it is
    // suggested, with the reason it was not applied.
    assert_eq!(all[3]["outcome"], "suggested");
    assert_eq!(all[3]["suggested_invoice"], "INV-1");
    assert!(
        reason(3).contains("check digits are wrong"),
        "{}",
        reason(3)
    );
    assert_eq!(all[4]["outcome"], "suggested");
    assert_eq!(all[4]["suggested_invoice"], "INV-3");
    assert_eq!(
        entries(&env, true).len(),
        3,
        "--unmatched lists the credits to look at"
    );

    // The operator applies the suggestion; then takes it back.
    let id = all[4]["entry_id"].as_i64().unwrap().to_string();
    let r = env.run(&["bank", "match", &id, "INV-3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-3")["state"], "paid");
    assert_eq!(env.invoice("INV-3")["paid_by"], "transfer");
    let r = env.run(&["bank", "match", &id, "INV-3"]);
    assert_eq!(r.code, 1, "matched twice is refused");
    assert!(r.stderr.contains("already matched"), "{}", r.stderr);
    let r = env.run(&["bank", "unmatch", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-3")["state"], "open");
    // A debit cannot be matched by hand either.
    let debit_id = all[0]["entry_id"].as_i64().unwrap().to_string();
    let r = env.run(&["bank", "match", &debit_id, "INV-1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not a credit"), "{}", r.stderr);
    let r = env.run(&["bank", "match", "9999", "INV-1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no bank entry 9999"), "{}", r.stderr);
}

#[test]
fn a_statement_that_cannot_be_applied_is_set_aside_whole_with_its_reason() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let good = camt(ACCOUNT, &[Tx::credit("100.00", "INV-1").bank_ref("G-1")]);
    // Another account's statement; a truncated one; amounts with a comma and too many
    // decimals; an unknown currency; a billion laughs.
    drop_statement(
        &env,
        "other.xml",
        &camt("NL02ABNA0123456789", &[Tx::credit("250.00", "INV-2")]),
    );
    drop_statement(&env, "truncated.xml", &good[..good.len() / 2]);
    drop_statement(&env, "comma.xml", &good.replace("100.00", "100,00"));
    drop_statement(&env, "decimals.xml", &good.replace("100.00", "100.001"));
    drop_statement(
        &env,
        "currency.xml",
        &good.replace("Ccy=\"EUR\"", "Ccy=\"EUX\""),
    );
    drop_statement(
        &env,
        "laughs.xml",
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]><Document>&lol2;</Document>",
    );
    drop_statement(&env, "z-good.xml", &good);
    let r = bank_import(&env);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        env.invoice("INV-1")["state"],
        "paid",
        "the good statement proceeds"
    );
    assert_eq!(env.invoice("INV-2")["state"], "open");
    let rejected = env.files_in("bank-rejected");
    for name in [
        "other.xml",
        "truncated.xml",
        "comma.xml",
        "decimals.xml",
        "currency.xml",
        "laughs.xml",
    ] {
        assert!(
            rejected.contains(&name.to_string()),
            "{name} set aside: {rejected:?}"
        );
        let reason =
            std::fs::read_to_string(env.path("bank-rejected").join(format!("{name}.reason.txt")))
                .unwrap();
        assert!(!reason.trim().is_empty());
        if name == "other.xml" {
            assert!(
                reason.contains("NL02ABNA0123456789") && reason.contains("bank.accounts"),
                "{reason}"
            );
        }
    }
    assert_eq!(
        env.count("SELECT count(*) FROM bank_files"),
        1,
        "nothing of a refused file"
    );
    assert_eq!(env.count("SELECT count(*) FROM bank_entries"), 1);
}

#[test]
fn a_kill_at_any_moment_of_a_bank_import_is_repaired_by_the_next_run() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let txs: Vec<Tx> = (0..40)
        .map(|i| {
            let invoice = ["INV-1", "INV-2", "INV-3"][i % 3];
            Tx::credit("1.00", invoice).bank_ref(&format!("K-{i}"))
        })
        .collect();
    let text = camt(ACCOUNT, &txs);
    let expected = {
        let host2 = SandboxHost::start(SandboxOptions::default());
        let clean = setup(&host2);
        drop_statement(&clean, "k.xml", &text);
        assert_eq!(bank_import(&clean).code, 0);
        (
            clean.invoice("INV-1")["amount"].clone(),
            clean.invoice("INV-2")["amount"].clone(),
            clean.invoice("INV-3")["amount"].clone(),
        )
    };
    for point in ["bank-entry", "bank-file-applied"] {
        drop_statement(&env, "k.xml", &text);
        let r = env.run_with(&["bank", "import"], &[("INVOICE_SYNC_FAILPOINT", point)]);
        assert_eq!(r.code, -1, "killed at {point}");
    }
    // Random kills while importing.
    for ms in [5u64, 20, 60] {
        let mut child = env
            .command()
            .args(["bank", "import"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let r = bank_import(&env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        (
            env.invoice("INV-1")["amount"].clone(),
            env.invoice("INV-2")["amount"].clone(),
            env.invoice("INV-3")["amount"].clone(),
        ),
        expected
    );
    assert_eq!(env.count("SELECT count(*) FROM bank_entries"), 40);
    assert_eq!(env.files_in("bank"), Vec::<String>::new());
}

#[test]
fn a_dry_run_shows_what_each_entry_would_match_and_changes_nothing() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    drop_statement(
        &env,
        "s.xml",
        &camt(ACCOUNT, &[Tx::credit("100.00", "INV-1").bank_ref("Y-1")]),
    );
    let r = env.run(&["run", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("bank entry") && r.stdout.contains("invoice INV-1 paid"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("deactivate  INV-1"),
        "the plan follows from the match: {}",
        r.stdout
    );
    assert_eq!(env.invoice("INV-1")["state"], "open");
    assert_eq!(env.files_in("bank"), vec!["s.xml".to_string()]);
    assert_eq!(env.count("SELECT count(*) FROM bank_entries"), 0);
}

#[test]
fn export_paid_names_the_method_and_the_camt_export_never_repeats_a_transfer() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup_with(
        &host,
        "[reconciliation]\naccount_iban = \"NL02ABNA0123456789\"\n",
    );
    let link = env.invoice("INV-2")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.sb().pay(&link), 200);
    common::make_links_due(&env);
    drop_statement(
        &env,
        "s.xml",
        &camt(ACCOUNT, &[Tx::credit("100.00", "INV-1").bank_ref("X-1")]),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    let r = env.run(&["export-paid"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "invoice_reference,amount,currency,paid_at,link_ref,method"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INV-1,100.00,EUR,2026-12-07") && l.ends_with(",X-1,transfer")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INV-2,250.00") && l.ends_with(",link")),
        "{lines:?}"
    );
    let r = env.run(&["export-paid", "--format", "camt053"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("INV-2") && !r.stdout.contains("INV-1"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_names_a_missing_bank_inbox_and_an_iban_the_statements_never_show() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = setup(&host);
    let r = env.run(&["check"]);
    assert!(r.stdout.contains("bank"), "{}", r.stdout);
    std::fs::remove_dir_all(env.path("bank")).unwrap();
    let r = env.run(&["check"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("bank inbox") || r.stderr.contains("bank inbox"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    // The cycle goes on without it, and says so.
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("no bank statement was read"),
        "{}",
        r.stderr
    );
}
