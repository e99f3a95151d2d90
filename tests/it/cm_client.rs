//! The CM client against the sandbox, over real HTTP on loopback: what CM receives, how
//! the token is used, how failures are survived, and that secrets stay secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use invoice_sync::cm::{CmClient, CmError, CreateLink, LinkStatus, PaymentLink, Throttle};
use invoice_sync::config::Cm;
use invoice_sync::sandbox::{self, Sandbox, SandboxOptions};
use secrecy::SecretString;

use crate::common::cm_support;
use cm_support::{fast_retries, logs};

const SECRET: &str = "s3cr3t-Never-Show-Me-42";

async fn sandbox_with(opts: SandboxOptions) -> Sandbox {
    logs();
    let opts = SandboxOptions {
        client_id: "merchant-1".into(),
        client_secret: SECRET.into(),
        ..opts
    };
    sandbox::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .expect("sandbox starts")
}

fn settings(sb: &Sandbox, rps: u32, burst: u32, max_in_flight: usize) -> Cm {
    Cm {
        base_url: sb.base_url(),
        client_id: "merchant-1".into(),
        requests_per_second: std::num::NonZeroU32::new(rps).unwrap(),
        burst: std::num::NonZeroU32::new(burst).unwrap(),
        max_in_flight,
        timeout_seconds: 5,
        ..Cm::default()
    }
}

fn client(sb: &Sandbox) -> CmClient {
    client_with(settings(sb, 1000, 1000, 16), SECRET)
}

fn client_with(cm: Cm, secret: &str) -> CmClient {
    let throttle = Arc::new(Throttle::from_settings(&cm));
    CmClient::with_parts(&cm, SecretString::from(secret), throttle, fast_retries())
        .expect("client builds")
}

fn link(amount_minor: i64, exponent: u8, currency: &str, merchant_reference: &str) -> CreateLink {
    CreateLink {
        amount_minor,
        exponent,
        currency_code: currency.into(),
        invoice_reference: "INV-2024-001".into(),
        invoice_due_date: "2024-05-01T00:00:00+00:00".into(),
        merchant_reference: merchant_reference.into(),
        language_code: "NL".into(),
        country_code: "NL".into(),
        expiry_date: None,
        callback_url: None,
    }
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
    full.expiry_date = Some("2024-05-15T00:00:00+00:00".into());
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
            cm.link_status(&l.reference).await.unwrap(),
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
        cm.link_status(&l.reference).await.unwrap(),
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
async fn a_revoked_token_is_refreshed_once_and_the_call_succeeds() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let l = cm.create_link(&link(500, 2, "EUR", "R-1")).await.unwrap();
    sb.revoke_tokens();
    let second = cm.create_link(&link(600, 2, "EUR", "R-2")).await.unwrap();
    assert_eq!(sb.counters().tokens_issued, 2);
    let log: Vec<_> = sb
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    let create = |status| ("POST".to_string(), "/paymentlink/v1.0".to_string(), status);
    let token = ("POST".to_string(), "/auth/v1/token".to_string(), 200);
    assert_eq!(
        log,
        [token.clone(), create(201), create(401), token, create(201)],
        "one refusal, one refresh, one retry"
    );
    assert_eq!(
        sb.links().len(),
        2,
        "the refused create did not create a link"
    );
    assert_ne!(l.reference, second.reference);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_requests_wait_for_retry_after_and_succeed() {
    // CM allows 2 requests per second; the client is configured too fast on purpose.
    let sb = sandbox_with(SandboxOptions {
        rate_limit: Some(2),
        ..SandboxOptions::default()
    })
    .await;
    let cm = client(&sb);
    for i in 0..3 {
        cm.create_link(&link(100, 2, "EUR", &format!("R-{i}")))
            .await
            .unwrap();
    }
    assert!(sb.counters().rate_limited >= 1);
    assert_eq!(sb.links().len(), 3, "each create made exactly one link");
    let log = sb.requests();
    let refused = log.iter().position(|r| r.status == 429).unwrap();
    let next = &log[refused + 1];
    let waited = next.started.duration_since(log[refused].finished);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_without_duplicating_links() {
    let sb = sandbox_with(SandboxOptions {
        fail_rate: 0.3,
        ..SandboxOptions::default()
    })
    .await;
    let cm = client(&sb);
    let results = create_many(&cm, 40, 8).await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert!(sb.counters().server_errors > 0, "failures were simulated");
    assert_eq!(sb.links().len(), 40, "one link per create, no duplicates");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_permanent_and_carries_cms_message() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let err = cm
        .create_link(&link(100, 2, "eur", "R-1"))
        .await
        .unwrap_err();
    match &err {
        CmError::Permanent { status, message } => {
            assert_eq!(*status, 400);
            assert!(message.contains("currency_code"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(!err.maybe_applied());
    let creates = sb
        .requests()
        .iter()
        .filter(|r| r.path == "/paymentlink/v1.0")
        .count();
    assert_eq!(creates, 1, "a 400 is not retried");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_a_permanent_auth_error_without_the_secret() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let wrong = "wrong-Secret-Value-77";
    let cm = client_with(settings(&sb, 1000, 1000, 4), wrong);
    let err = cm
        .create_link(&link(100, 2, "EUR", "R-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, CmError::Auth { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(text.contains("merchant-1"), "names the client id: {text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    // Known bad credentials are not tried again and again.
    assert!(cm.check_credentials().await.is_err());
    assert_eq!(
        sb.requests()
            .iter()
            .filter(|r| r.path == "/auth/v1/token")
            .count(),
        1
    );
    assert!(sb.links().is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_reference_is_not_found() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let missing = "pml-00000000-0000-0000-0000-000000000000";
    let e = cm.get_link(missing).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(cm.link_status(missing).await.unwrap_err().is_not_found());
    assert!(
        cm.deactivate_link(missing)
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
            &l.reference,
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
        cm.link_status(&l.reference).await.unwrap(),
        LinkStatus::Paid
    );

    let other = cm.create_link(&link(2000, 2, "EUR", "R-2")).await.unwrap();
    let off = cm.deactivate_link(&other.reference).await.unwrap();
    assert!(!off.active);
    assert!(!sb.link(&other.reference).unwrap().active);
    let read = cm.get_link(&other.reference).await.unwrap();
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
    let cm = client_with(settings(&sb, 1000, 1000, 4), SECRET);
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
    let cm = client_with(settings(&sb, 40, 1, 16), SECRET);
    let l = cm.create_link(&link(100, 2, "EUR", "R-0")).await.unwrap();
    let n = 60;
    let start = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(|_| {
            let (cm, r) = (cm.clone(), l.reference.clone());
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

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_never_reach_errors_or_logs() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let cm = client(&sb);
    let debug = format!("{cm:?}");
    assert!(!debug.contains(SECRET), "{debug}");

    let l = cm.create_link(&link(100, 2, "EUR", "R-1")).await.unwrap();
    let mut errors = vec![
        cm.create_link(&link(100, 2, "EURO", "R-2"))
            .await
            .unwrap_err(),
        cm.get_link("pml-missing").await.unwrap_err(),
    ];
    let mut tokens = sb.tokens();
    sb.revoke_tokens();
    cm.link_status(&l.reference).await.unwrap();
    tokens.extend(sb.tokens());
    assert_eq!(tokens.len(), 2);

    // A server that is gone: transport errors.
    let dead = client_with(settings(&sb, 1000, 1000, 4), SECRET);
    sb.shutdown().await;
    errors.push(dead.get_link("pml-x").await.unwrap_err());
    assert!(errors.last().unwrap().is_transient(), "{:?}", errors.last());

    let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(logs.contains("CM request"), "debug lines are captured");
    for e in &errors {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(SECRET), "{text}");
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "{text}");
        }
    }
    assert!(!logs.contains(SECRET));
    for t in &tokens {
        assert!(!logs.contains(t.as_str()));
    }
    assert!(!logs.to_ascii_lowercase().contains("bearer "));
}
