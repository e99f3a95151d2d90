//! The README's first command: the demo config runs a whole cycle of the sample exports
//! against the embedded sandbox; a second run is a no-op. Run on a copy of `samples/` so
//! the test, like the demo, changes no tracked file.

use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "demo-state" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn demo(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .current_dir(dir)
        .arg("--config")
        .arg("samples/invoice-sync.toml")
        .args(args)
        .env_remove("INVOICE_SYNC_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_runs_a_whole_cycle_and_a_second_run_is_a_noop() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("samples"),
        &tmp.path().join("samples"),
    );
    let exports = [
        "samples/exports/01-default.csv",
        "samples/exports/02-dutch-spreadsheet.csv",
        "samples/exports/03-open-items.csv",
    ];
    let before: Vec<Vec<u8>> = exports
        .iter()
        .map(|e| std::fs::read(tmp.path().join(e)).unwrap())
        .collect();
    let statement = "samples/statements/2026-12-07-camt053.xml";
    let mut args = vec!["run"];
    args.extend(exports);
    args.push(statement);
    let (code, _, err) = demo(tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    // INV-2026-0001 was paid by transfer before any link was made for it.
    assert!(err.contains("links 8 created"), "{err}");
    assert!(err.contains("mails 8 sent"), "{err}");
    assert!(err.contains("iDEAL QR 8 created"), "{err}");
    assert!(
        err.contains("bank: 1 file(s) read, 1 matched, 0 suggested, 1 unmatched"),
        "{err}"
    );
    let mails = std::fs::read_dir(tmp.path().join("samples/demo-state/outbox"))
        .unwrap()
        .count();
    assert_eq!(mails, 8, "one .eml per link");
    // Where the README says a newcomer finds them: named after the invoice, with the
    // merchant's identity at the foot.
    let eml = std::fs::read_to_string(
        tmp.path()
            .join("samples/demo-state/outbox/F2026-1001-r1.eml"),
    )
    .unwrap();
    assert!(eml.contains("Demo Merchant B.V."), "{eml}");

    let (code, out, err) = demo(tmp.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 12);
    let linked = v.iter().filter(|i| i["link_active"] == true).count();
    assert_eq!(linked, 8);
    assert_eq!(v.iter().filter(|i| !i["qr_url"].is_null()).count(), 8);
    let by_transfer = v
        .iter()
        .find(|i| i["invoice_reference"] == "INV-2026-0001")
        .unwrap();
    assert_eq!(by_transfer["state"], "paid");
    assert_eq!(by_transfer["paid_by"], "transfer");
    assert_eq!(by_transfer["amount_received"], "249.95");
    let settled = v
        .iter()
        .filter(|i| i["state"] == "settled_elsewhere")
        .count();
    assert_eq!(settled, 3);
    let dutch = v
        .iter()
        .find(|i| i["invoice_reference"] == "F2026-1002")
        .unwrap();
    assert_eq!(dutch["customer_name"], "Jansen & Zoë, V.O.F.");
    assert_eq!(dutch["amount"], "89.90");
    let partial = v
        .iter()
        .find(|i| i["invoice_reference"] == "OI-5002")
        .unwrap();
    assert_eq!(partial["amount"], "250.00", "the open balance");

    let (code, _, err) = demo(tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("links 0 created"), "{err}");
    assert!(err.contains("0 accepted"), "{err}");
    assert!(err.contains("1 file(s) already read"), "{err}");
    let (_, out2, _) = demo(tmp.path(), &["status", "--json"]);
    assert_eq!(out2, out, "the second run changed something");

    // the sample exports and the statement themselves are untouched
    assert!(
        tmp.path().join(statement).is_file(),
        "the statement was not moved"
    );
    for (e, b) in exports.iter().zip(before) {
        assert_eq!(std::fs::read(tmp.path().join(e)).unwrap(), b, "{e} changed");
    }
}

/// The harm seen: the demo's first `check` failed on its missing inbox. A fresh clone's
/// demo passes `check`, and its inbox is `samples/inbox/`, as the README says.
#[test]
fn a_fresh_demo_passes_check() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("samples"),
        &tmp.path().join("samples"),
    );
    let (code, out, err) = demo(tmp.path(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok      inbox: samples/inbox"), "{out}");
}
