//! A fault on the way to CM is never CM's verdict (ARCHITECTURE.md): a token endpoint or
//! gateway answering 404, 405, a redirect or an HTML page defers the work and says so;
//! it never fails an invoice or retires a link that is still payable. Driven through the
//! binary against the sandbox, with its faults switched on and off.

use crate::common;

use common::{SandboxHost, TestEnv, default_csv};
use invoice_sync::sandbox::{Faults, Misroute, SandboxOptions};

fn env_with(host: &SandboxHost) -> TestEnv {
    TestEnv::new(&host.cm_toml())
}

fn two_invoices() -> String {
    default_csv(&[
        ("INV-1", "a@example.com", "Ann", "10,00", "2099-12-01"),
        ("INV-2", "b@example.com", "Bob", "20,00", "2099-12-01"),
    ])
}

fn set(host: &SandboxHost, token: Option<Misroute>, api: Option<Misroute>) {
    host.sb().set_faults(Faults {
        token,
        api,
        ..Faults::default()
    });
}

/// A token endpoint, or a gateway in front of the API, answering in CM's place: no invoice
/// is failed and none gets a link until it answers again. Each case is the (token, API)
/// pair of faults [`set`] takes.
#[test]
fn a_broken_token_endpoint_or_gateway_fails_no_invoice_and_defers_the_cycle() {
    use Misroute::*;
    let at_token = |m| (Some(m), None);
    let at_api = |m| (None, Some(m));
    for (token, api) in [
        at_token(NotFoundPage),
        at_token(MethodNotAllowed),
        at_token(Redirect),
        at_token(BadGatewayPage),
        at_api(NotFoundPage),
        at_api(MethodNotAllowed),
        at_api(Redirect),
    ] {
        let case = format!("token {token:?}, API {api:?}");
        let host = SandboxHost::start(SandboxOptions::default());
        let env = env_with(&host);
        env.drop_file("a.csv", two_invoices());
        set(&host, token, api);
        let r = env.run(&["run"]);
        assert_eq!(r.code, 3, "{case}: {}", r.stderr);
        if token.is_some() {
            assert!(r.stderr.contains("token endpoint"), "{case}: {}", r.stderr);
        }
        for inv in env.status() {
            assert_eq!(inv["state"], "open", "{case}: {inv}");
            assert!(inv["link_ref"].is_null(), "{case}: {inv}");
        }
        assert!(host.sb().links().is_empty(), "{case}");
        // The endpoint answers again: the same invoices get their links.
        set(&host, None, None);
        let r = env.run(&["run"]);
        assert_eq!(r.code, 0, "{case}: {}", r.stderr);
        for inv in env.status() {
            assert_eq!(inv["state"], "open", "{case}: {inv}");
            assert_eq!(inv["link_active"], true, "{case}: {inv}");
        }
        assert_eq!(host.sb().links().len(), 2, "{case}");
    }
}

/// The harm seen: a settled invoice's link was recorded inactive while still live; the
/// customer paid it and the payment never showed.
#[test]
fn a_link_is_retired_only_when_cm_says_so_and_a_payment_meanwhile_is_seen() {
    for (token, api) in [
        (Some(Misroute::NotFoundPage), None),
        (Some(Misroute::Redirect), None),
        (None, Some(Misroute::NotFoundPage)),
        (None, Some(Misroute::Redirect)),
    ] {
        let host = SandboxHost::start(SandboxOptions::default());
        let env = env_with(&host);
        env.drop_file("a.csv", two_invoices());
        assert_eq!(env.run(&["run"]).code, 0);
        let link = host.links_for("INV-1")[0].reference.clone();
        // The books say INV-1 was paid by bank transfer: its link must go.
        env.drop_file(
            "b.csv",
            "invoice_reference,customer_email,customer_name,amount,due_date,status\n\
             INV-1,a@example.com,Ann,\"10,00\",2099-12-01,paid\n",
        );
        set(&host, token, api);
        let r = env.run(&["run"]);
        assert_eq!(r.code, 3, "{token:?}/{api:?}: {}", r.stderr);
        let inv = env.invoice("INV-1");
        assert_eq!(inv["state"], "settled_elsewhere");
        assert_eq!(
            inv["link_active"], true,
            "{token:?}/{api:?}: still payable at CM, so still live: {inv}"
        );
        assert!(host.sb().link(&link).unwrap().active);
        // The operator's override says so too, and exits non-zero.
        let r = env.run(&["deactivate", "INV-1"]);
        assert_eq!(r.code, 3, "{token:?}/{api:?}: {}", r.stderr);
        assert_eq!(env.invoice("INV-1")["link_active"], true);
        // The customer pays the live link meanwhile; once CM answers, it is seen.
        assert_eq!(host.sb().pay(&link), 200);
        set(&host, None, None);
        let r = env.run(&["run"]);
        let inv = env.invoice("INV-1");
        assert_eq!(
            inv["state"], "paid",
            "{token:?}/{api:?}: {inv} {}",
            r.stderr
        );
        let export = env.run(&["export-paid"]);
        assert!(export.stdout.contains("INV-1"), "{}", export.stdout);
    }
}

#[test]
fn the_operators_deactivate_records_a_link_paid_meanwhile_as_paid() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = env_with(&host);
    env.drop_file("a.csv", two_invoices());
    assert_eq!(env.run(&["run"]).code, 0);
    let link = host.links_for("INV-2")[0].reference.clone();
    assert_eq!(host.sb().pay(&link), 200);
    let r = env.run(&["deactivate", "INV-2"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("already paid"), "{}", r.stderr);
    let inv = env.invoice("INV-2");
    assert_eq!(inv["state"], "paid", "{inv}");
    assert!(!inv["paid_at"].is_null());
    assert!(env.run(&["export-paid"]).stdout.contains("INV-2"));
}
