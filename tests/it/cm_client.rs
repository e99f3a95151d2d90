//! The payment link client against the sandbox, over real HTTP on loopback: what CM
//! receives, how the token is used, and how links are read, changed and throttled. What
//! it must do alike with the iDEAL QR client (token refresh, rate limits, 503s, refusals,
//! wrong credentials, secrets) is tested once for both in `cm_apis`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use invoice_sync::cm::{CmClient, CmError, LinkStatus, PaymentLink};
use invoice_sync::config::Cm;
use invoice_sync::sandbox::{Sandbox, SandboxOptions};

use crate::common::cm_support::{self, Api, link};

const SECRET: &str = Api::PaymentLinks.secret();

async fn sandbox_with(opts: SandboxOptions) -> Sandbox {
    cm_support::sandbox_for(SECRET, opts).await
}

fn settings(sb: &Sandbox, max_in_flight: usize) -> Cm {
    cm_support::cm_settings(&sb.base_url(), max_in_flight)
}

fn client(sb: &Sandbox) -> CmClient {
    cm_support::links_client(&settings(sb, 16), SECRET)
}

/// Creates `n` links (amounts 1.00, 1.01, ...) with up to `concurrency` at once.
async fn create_many(
    cm: &CmClient,
    n: i64,
    concurrency: usize,
) -> Vec<Result<PaymentLink, CmError>> {
    futures_util::stream::iter(0..n)
        .map(|i| {
            let cm = cm.clone();
            async move {
                cm.create_link(&link(100 + i, 2, "EUR", &format!("R-{i}")))
                    .await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn create_sends_every_field_exactly_as_cm_expects() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    for (minor, exp, currency, literal) in [
        (10, 2, "EUR", "0.10"),
        (123_456, 2, "EUR", "1234.56"),
        (9_999_999_999, 2, "EUR", "99999999.99"),
        (1234, 0, "JPY", "1234"),
    ] {
        let mref = format!("INV-2024-001/{literal}");
        let created = cm
            .create_link(&link(minor, exp, currency, &mref))
            .await
            .unwrap();
        let seen = sb
            .link(&created.reference)
            .expect("the sandbox holds the link");
        assert_eq!(seen.fields["amount"], literal, "amount literal on the wire");
        assert_eq!(seen.fields["currency_code"], format!("\"{currency}\""));
        assert_eq!(seen.fields["invoice_reference"], "\"INV-2024-001\"");
        assert_eq!(
            seen.fields["invoice_due_date"],
            "\"2024-05-01T00:00:00+00:00\""
        );
        assert_eq!(seen.fields["merchant_reference"], format!("\"{mref}\""));
        assert_eq!(seen.fields["language_code"], "\"NL\"");
        assert_eq!(seen.fields["country_code"], "\"NL\"");
        assert!(
            !seen.created_with.contains("expiry_date"),
            "{}",
            seen.created_with
        );
        assert!(
            !seen.created_with.contains("callback_url"),
            "{}",
            seen.created_with
        );
        assert!(!seen.created_with.contains("null"), "{}", seen.created_with);
        assert!(
            seen.created_with
                .contains(&format!("\"amount\":{literal},")),
            "{}",
            seen.created_with
        );
        // What CM answered is what it holds.
        assert!(created.reference.starts_with("pml-"));
        assert!(created.active);
        assert_eq!(created.status, LinkStatus::Open);
        assert_eq!(created.uri, seen.uri);
        assert!(created.uri.starts_with(&format!("{}/pml/", sb.base_url())));
        assert_eq!(created.amount.as_deref(), Some(literal));
        assert_eq!(created.amount_minor(exp), Some(minor));
        assert_eq!(created.merchant_reference.as_deref(), Some(mref.as_str()));
    }

    let mut full = link(2500, 2, "EUR", "INV-9/1");
    full.expiry_date =
        Some(chrono::DateTime::parse_from_rfc3339("2024-05-15T00:00:00+00:00").unwrap());
    full.callback_url = Some("https://merchant.example/invoice-sync/callback".into());
    let created = cm.create_link(&full).await.unwrap();
    let seen = sb.link(&created.reference).unwrap();
    assert_eq!(seen.fields["expiry_date"], "\"2024-05-15T00:00:00+00:00\"");
    assert_eq!(
        seen.fields["callback_url"],
        "\"https://merchant.example/invoice-sync/callback\""
    );
    assert_eq!(
        seen.created_with,
        r#"{"amount":25.00,"callback_url":"https://merchant.example/invoice-sync/callback","country_code":"NL","currency_code":"EUR","expiry_date":"2024-05-15T00:00:00+00:00","invoice_due_date":"2024-05-01T00:00:00+00:00","invoice_reference":"INV-2024-001","language_code":"NL","merchant_reference":"INV-9/1"}"#
    );
    let create = sb
        .requests()
        .into_iter()
        .find(|r| r.path == "/paymentlink/v1.0")
        .unwrap();
    assert_eq!((create.method.as_str(), create.status), ("POST", 201));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_token_serves_many_calls() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let results = create_many(&cm, 30, 30).await;
    assert!(results.iter().all(Result::is_ok));
    for l in results.into_iter().flatten().take(5) {
        assert_eq!(
            cm.link_status(&invoice_sync::domain::LinkRef::parse(&l.reference).unwrap())
                .await
                .unwrap(),
            LinkStatus::Open
        );
    }
    assert_eq!(sb.counters().tokens_issued, 1);
    assert_eq!(sb.links().len(), 30);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_token_is_replaced_before_it_lapses() {
    let sb = sandbox_with(SandboxOptions {
        token_ttl: Duration::from_secs(1),
        ..SandboxOptions::default()
    })
    .await;
    let cm = client(&sb);
    let l = cm.create_link(&link(500, 2, "EUR", "R-1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        cm.link_status(&invoice_sync::domain::LinkRef::parse(&l.reference).unwrap())
            .await
            .unwrap(),
        LinkStatus::Open
    );
    assert_eq!(sb.counters().tokens_issued, 2);
    assert!(
        sb.requests().iter().all(|r| r.status != 401),
        "refreshed ahead of expiry, never refused"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_reference_is_not_found() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let missing = "pml-00000000-0000-0000-0000-000000000000";
    let e = cm
        .get_link(&invoice_sync::domain::LinkRef::parse(missing).unwrap())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(
        cm.link_status(&invoice_sync::domain::LinkRef::parse(missing).unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        cm.deactivate_link(&invoice_sync::domain::LinkRef::parse(missing).unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivate_update_get_and_status_follow_the_document() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let l = cm.create_link(&link(1000, 2, "EUR", "R-1")).await.unwrap();

    let updated = cm
        .update_link(
            &invoice_sync::domain::LinkRef::parse(&l.reference).unwrap(),
            &serde_json::json!({ "expiry_date": "2099-06-01T00:00:00+00:00" }),
        )
        .await
        .unwrap();
    assert_eq!(
        updated.expiry_date.as_deref(),
        Some("2099-06-01T00:00:00+00:00")
    );
    assert!(updated.active);

    assert_eq!(sb.pay(&l.reference), 200);
    assert_eq!(
        cm.link_status(&invoice_sync::domain::LinkRef::parse(&l.reference).unwrap())
            .await
            .unwrap(),
        LinkStatus::Paid
    );

    let other = cm.create_link(&link(2000, 2, "EUR", "R-2")).await.unwrap();
    let off = cm
        .deactivate_link(&invoice_sync::domain::LinkRef::parse(&other.reference).unwrap())
        .await
        .unwrap();
    assert!(!off.active);
    assert!(!sb.link(&other.reference).unwrap().active);
    let read = cm
        .get_link(&invoice_sync::domain::LinkRef::parse(&other.reference).unwrap())
        .await
        .unwrap();
    assert!(!read.active);
    assert_eq!(read.amount_minor(2), Some(2000));
    let patch = sb
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path == format!("/paymentlink/v1/{}", other.reference))
        .unwrap();
    let create = sb
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/paymentlink/v1.0")
        .nth(1)
        .unwrap();
    assert!(create.finished <= patch.started, "the log keeps the order");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn never_more_than_max_in_flight_requests_at_cm() {
    let sb = sandbox_with(SandboxOptions {
        latency: Duration::from_millis(40),
        ..SandboxOptions::default()
    })
    .await;
    let cm = cm_support::links_client(&settings(&sb, 4), SECRET);
    let results = create_many(&cm, 32, 32).await;
    assert!(results.iter().all(Result::is_ok));
    let c = sb.counters();
    assert!(c.max_concurrent <= 4, "{c:?}");
    assert_eq!(c.max_concurrent, 4, "and the bound is used: {c:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limiter_holds_the_configured_rate() {
    let sb = sandbox_with(SandboxOptions {
        latency: Duration::from_millis(20),
        ..SandboxOptions::default()
    })
    .await;
    let cm = cm_support::links_client(
        &Cm {
            requests_per_second: std::num::NonZeroU32::new(40).unwrap(),
            burst: std::num::NonZeroU32::new(1).unwrap(),
            ..settings(&sb, 16)
        },
        SECRET,
    );
    let l = cm.create_link(&link(100, 2, "EUR", "R-0")).await.unwrap();
    let n = 60;
    let start = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(|_| {
            let (cm, r) = (
                cm.clone(),
                invoice_sync::domain::LinkRef::parse(&l.reference).unwrap(),
            );
            async move { cm.link_status(&r).await }
        })
        .buffer_unordered(16)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    let took = start.elapsed();
    assert_eq!(ok, n);
    // Starts are spaced 25 ms apart: 60 requests take at least ~1.5 s however many run at
    // once. Only the limit is asserted: a loaded machine can make them slower, never
    // faster (how close the rate comes to the limit is measured by benches/links.rs).
    let rate = n as f64 / took.as_secs_f64();
    assert!(rate <= 44.0, "achieved {rate:.1}/s in {took:?}");
    sb.shutdown().await;
}
