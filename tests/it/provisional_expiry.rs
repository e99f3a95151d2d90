//! Links nobody recorded stop being payable by themselves (ARCHITECTURE.md): every link is
//! created with a provisional expiry, and given its real one by `PATCH` once recorded,
//! before any mail announces it. Driven through the binary against the sandbox, whose
//! clock the tests move forward to see which links a customer could still pay.

use crate::common;

use std::time::Duration;

use common::{SandboxHost, TestEnv, default_csv};
use invoice_sync::sandbox::{Faults, Misroute, SandboxOptions};

/// A sandbox, and an installation with `extra` settings and invoice INV-1 in its inbox.
fn one_invoice(extra: &str) -> (SandboxHost, TestEnv) {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = TestEnv::new(&common::merge_toml(&host.cm_toml(), extra));
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "Ann", "10,00", "2099-12-01")]),
    );
    (host, env)
}

/// The sandbox's `PATCH`es answered by `fault` (creates work).
fn patches_fail(host: &SandboxHost, fault: Misroute) {
    host.sb().set_faults(Faults {
        api: Some(fault),
        api_method: Some("PATCH".into()),
        ..Faults::default()
    });
}

/// INV-1's links a customer could pay now.
fn payable(host: &SandboxHost) -> Vec<invoice_sync::sandbox::LinkRecord> {
    host.links_for("INV-1")
        .into_iter()
        .filter(|l| l.payable)
        .collect()
}

fn expiry(l: &invoice_sync::sandbox::LinkRecord) -> String {
    l.fields["expiry_date"].trim_matches('"').to_string()
}

/// The harm seen: CM answering after `cm.timeout_seconds` made every cycle create one
/// more link; after three slow cycles an invoice had four live, payable links.
#[test]
fn links_whose_answer_was_lost_lapse_and_one_payable_link_remains() {
    let (host, env) = one_invoice("[cm]\ntimeout_seconds = 1\n");
    host.sb().set_faults(Faults {
        late_answers: Duration::from_millis(1600),
        ..Faults::default()
    });
    for _ in 0..3 {
        let r = env.run(&["run"]);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(
            r.stderr.contains("INV-1/r1"),
            "names the merchant reference: {}",
            r.stderr
        );
    }
    assert!(env.files_in("outbox").is_empty(), "nothing announced");
    host.sb().set_faults(Faults::default());
    let r = env.run(&["run"]);
    assert_eq!(
        r.code, 0,
        "the orphans were reported when they happened: {}",
        r.stderr
    );
    let inv = env.invoice("INV-1");
    assert_eq!(inv["link_active"], true);
    let err = inv["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("orphan") && err.contains("INV-1/r1"), "{inv}");
    let at_cm = host.links_for("INV-1");
    assert_eq!(at_cm.len(), 4, "three lost answers and the recorded link");
    assert!(at_cm.iter().all(|l| l.payable), "all payable for now");
    let recorded = at_cm
        .iter()
        .find(|l| serde_json::json!(l.reference) == inv["link_ref"])
        .expect("the recorded link is at CM");
    assert_eq!(
        expiry(recorded),
        "2099-12-31T23:59:59+00:00",
        "real expiry: due + 30 days"
    );
    for l in at_cm.iter().filter(|l| l.reference != recorded.reference) {
        let at = chrono::DateTime::parse_from_rfc3339(&expiry(l)).unwrap();
        let ahead = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
        assert!(
            ahead <= chrono::Duration::hours(48) && ahead > chrono::Duration::hours(47),
            "a lost link expires 48 hours after it was asked for: {}",
            expiry(l)
        );
    }
    // The mail announced the recorded link only.
    let mails = env.files_in("outbox");
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = std::fs::read_to_string(env.path("outbox").join(&mails[0])).unwrap();
    assert!(
        mail.contains(&recorded.uri),
        "the mail carries the recorded link"
    );

    // Once the provisional window has passed, exactly one link can be paid: the one the
    // merchant knows of.
    host.sb().advance_clock(Duration::from_secs(49 * 3600));
    let payable = payable(&host);
    assert_eq!(payable.len(), 1);
    assert_eq!(payable[0].reference, recorded.reference);
    for l in host.links_for("INV-1") {
        if l.reference != recorded.reference {
            assert_eq!(
                host.sb().pay(&l.reference),
                409,
                "a lapsed link cannot be paid"
            );
        }
    }
}

#[test]
fn no_mail_announces_a_link_before_its_real_expiry_is_set() {
    let (host, env) = one_invoice("[cm]\nlink_expiry_days_after_due = 14\n");
    // Creates work, the PATCH that sets the real expiry reaches a gateway's page.
    patches_fail(&host, Misroute::NotFoundPage);
    let r = env.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["state"], "open");
    assert_eq!(inv["mail_state"], "queued", "{inv}");
    assert!(
        env.files_in("outbox").is_empty(),
        "no mail for a provisional link"
    );
    let link = &host.links_for("INV-1")[0];
    assert_ne!(expiry(link), "2099-12-15T23:59:59+00:00");

    host.sb().set_faults(Faults::default());
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let link = &host.links_for("INV-1")[0];
    assert_eq!(expiry(link), "2099-12-15T23:59:59+00:00");
    assert_eq!(env.invoice("INV-1")["mail_state"], "sent");
    assert_eq!(env.files_in("outbox").len(), 1);
    assert_eq!(host.links_for("INV-1").len(), 1, "no second link");
}

#[test]
fn a_recorded_link_that_lapsed_unextended_is_replaced_not_expired() {
    let (host, env) = one_invoice("[cm]\nprovisional_expiry_hours = 1\n");
    patches_fail(&host, Misroute::Redirect);
    assert_eq!(env.run(&["run"]).code, 3);
    // Make the recorded provisional expiry pass, as if the PATCH had failed for hours.
    env.db()
        .execute(
            "UPDATE links SET expiry_date = '2000-01-01T00:00:00+00:00', next_check_at = '2000-01-01T00:00:00Z'",
            [],
        )
        .unwrap();
    host.sb().advance_clock(Duration::from_secs(2 * 3600));
    host.sb().set_faults(Faults::default());
    let r = env.run(&["run"]);
    assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    let inv = env.invoice("INV-1");
    assert_eq!(inv["state"], "open", "{inv}");
    assert_eq!(inv["link_active"], true, "{inv}");
    let payable = payable(&host);
    assert_eq!(payable.len(), 1);
    assert_eq!(serde_json::json!(payable[0].reference), inv["link_ref"]);
    assert_eq!(
        payable[0].fields["merchant_reference"], "\"INV-1/r1-2\"",
        "the new link has a merchant reference of its own"
    );
    assert_eq!(
        env.files_in("outbox").len(),
        1,
        "one mail, for the payable link"
    );
}
