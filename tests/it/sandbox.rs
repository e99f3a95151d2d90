//! The CM simulator as a client sees it over HTTP: the document's endpoints, codes and
//! validation, expiring tokens, the pay → callback path, and the simulated conditions
//! (its state file, which keeps links and QR transactions alike: `idealqr_sandbox`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use clap::Parser;
use invoice_sync::sandbox::{SandboxArgs, SandboxOptions};
use serde_json::{Value, json};

use crate::common::cm_support::{Api, http, http_get, start};

const API: Api = Api::PaymentLinks;
const VALID: &str = API.valid_body();

/// `VALID` without `field`, or with `field` set to the JSON `literal` (kept verbatim).
fn with(field: &str, literal: Option<&str>) -> String {
    API.with(field, literal)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_checks_the_form_and_the_credentials() {
    let sb = start(SandboxOptions::default()).await;
    let url = format!("{}/auth/v1/token", sb.base_url());
    let post = |form: Vec<(&'static str, &'static str)>| {
        let url = url.clone();
        async move {
            http()
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let good = vec![
        ("grant_type", "client_credentials"),
        ("client_id", "sandbox"),
        ("client_secret", "sandbox"),
    ];
    assert_eq!(post(good.clone()).await, 200);
    let body: Value = http()
        .post(&url)
        .form(&good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86_400);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 32));
    assert_eq!(
        post(vec![
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox")
        ])
        .await,
        400,
        "missing secret"
    );
    assert_eq!(
        post(vec![
            ("grant_type", "password"),
            ("client_id", "sandbox"),
            ("client_secret", "sandbox"),
        ])
        .await,
        400,
        "other grant type"
    );
    assert_eq!(
        post(vec![
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox"),
            ("client_secret", "nope"),
        ])
        .await,
        401
    );
    assert_eq!(sb.counters().tokens_issued, 2);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_echoes_the_request_and_hands_out_a_ref_and_uri() {
    let sb = start(SandboxOptions {
        public_base: Some("https://pay.example".into()),
        ..SandboxOptions::default()
    })
    .await;
    let t = API.token(&sb).await;
    let body = with("unknown_field", Some("\"ignored\""));
    let (status, link) = API.create_raw(&sb, &t, &body).await;
    assert_eq!(status, 201, "{link}");
    let reference = link["ref"].as_str().unwrap();
    assert!(
        reference.starts_with("pml-") && reference.len() == 40,
        "{reference}"
    );
    assert_eq!(link["active"], true);
    assert_eq!(link["status"], "open");
    let uri = link["uri"].as_str().unwrap();
    let code = uri.strip_prefix("https://pay.example/pml/").unwrap();
    assert_eq!(code.len(), 7);
    assert_eq!(link["merchant_reference"], "M-1");
    assert!(link.get("unknown_field").is_none());
    let stored = sb.link(reference).unwrap();
    assert_eq!(stored.created_with, body);
    assert_eq!(stored.fields["amount"], "10.00");

    // The amount literal is echoed as sent, on every read.
    let url = format!("{}/paymentlink/v1/{reference}", sb.base_url());
    let (_, raw) = http_get(&url, Some(&t)).await;
    assert!(raw.contains("\"amount\":10.00"), "{raw}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_link_uri_opens_a_payment_page() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let body = with("invoice_reference", Some("\"<INV & 1>\""));
    let (_, link) = API.create_raw(&sb, &t, &body).await;
    let (_, page) = http_get(link["uri"].as_str().unwrap(), None).await;
    assert!(page.contains("Invoice &lt;INV &amp; 1&gt;"), "{page}");
    assert!(page.contains("EUR 10.00"), "{page}");
    let reference = link["ref"].as_str().unwrap();
    assert!(
        page.contains(&format!("/sandbox/paymentlinks/{reference}/pay")),
        "{page}"
    );
    assert_eq!(sb.pay(reference), 200);
    let (_, page) = http_get(link["uri"].as_str().unwrap(), None).await;
    assert!(page.contains("has been paid"), "{page}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_validation_names_the_field() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let cases = [
        (with("amount", Some("\"10.00\"")), "amount"),
        (with("amount", Some("10.001")), "amount"),
        (with("amount", Some("-5.00")), "amount"),
        (with("amount", Some("0")), "amount"),
        (with("amount", None), "amount"),
        (with("merchant_reference", None), "merchant_reference"),
        (
            with("merchant_reference", Some("\"\"")),
            "merchant_reference",
        ),
        (with("currency_code", Some("\"eur\"")), "currency_code"),
        (with("country_code", Some("\"NLD\"")), "country_code"),
        (with("language_code", Some("\"dutch\"")), "language_code"),
        (
            with("invoice_due_date", Some("\"22-02-2022\"")),
            "invoice_due_date",
        ),
        (with("expiry_date", Some("\"tomorrow\"")), "expiry_date"),
        (with("callback_url", Some("\"not a url\"")), "callback_url"),
        (with("callback_url", Some("null")), "callback_url"),
    ];
    for (body, field) in cases {
        let (status, answer) = API.create_raw(&sb, &t, &body).await;
        assert_eq!(status, 400, "{body}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    let (status, answer) = API.create_raw(&sb, &t, "not json").await;
    assert_eq!(status, 400);
    assert!(answer["message"].is_string());
    assert!(sb.links().is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_calls_need_a_valid_unexpired_token() {
    let sb = start(SandboxOptions {
        token_ttl: Duration::from_secs(1),
        ..SandboxOptions::default()
    })
    .await;
    let (status, _) = API.create_raw(&sb, "made-up", VALID).await;
    assert_eq!(status, 401);
    let resp = http()
        .post(format!("{}/paymentlink/v1.0", sb.base_url()))
        .body(VALID)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no token at all");

    let t = API.token(&sb).await;
    let (status, link) = API.create_raw(&sb, &t, VALID).await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let url = format!(
        "{}/paymentlink/v1/{}",
        sb.base_url(),
        link["ref"].as_str().unwrap()
    );
    assert_eq!(http_get(&url, Some(&t)).await.0, 401, "the token expired");

    let t2 = API.token(&sb).await;
    sb.revoke_tokens();
    let (status, _) = API.create_raw(&sb, &t2, VALID).await;
    assert_eq!(status, 401, "revoked");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_status_and_unknown_refs() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let (_, link) = API.create_raw(&sb, &t, VALID).await;
    let url = format!(
        "{}/paymentlink/v1/{}",
        sb.base_url(),
        link["ref"].as_str().unwrap()
    );
    let patch = |body: Value| {
        let (url, t) = (url.clone(), t.clone());
        async move {
            let r = http()
                .patch(url)
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(patch(json!({"active": "no"})).await.0, 400);
    let (status, answer) = patch(json!({"amount": 12.345})).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("amount"));
    let (status, answer) = patch(json!({"active": false})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["active"], false);
    assert_eq!(answer["amount"], json!(10.0));

    let (_, status) = http_get(&format!("{url}/status"), Some(&t)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&status).unwrap(),
        json!({"status": "open"})
    );

    let unknown = format!("{}/paymentlink/v1/pml-unknown", sb.base_url());
    assert_eq!(http_get(&unknown, Some(&t)).await.0, 404);
    assert_eq!(
        http_get(&format!("{unknown}/status"), Some(&t)).await.0,
        404
    );
    let resp = http()
        .patch(&unknown)
        .bearer_auth(&t)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paying_a_link_fires_its_callback() {
    // A tiny merchant that records callbacks.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = axum::Router::new().route(
        "/callback",
        post({
            let received = received.clone();
            move |Json(body): Json<Value>| async move {
                received.lock().unwrap().push(body);
                let _ = tx.send(());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let merchant = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let (_, link) = API
        .create_raw(
            &sb,
            &t,
            &with("callback_url", Some(&format!("\"{merchant}\""))),
        )
        .await;
    let reference = link["ref"].as_str().unwrap().to_string();

    let pay = |r: String| {
        let url = format!("{}/sandbox/paymentlinks/{r}/pay", sb.base_url());
        async move { http().post(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(pay(reference.clone()).await, 200, "no auth on /sandbox/*");
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("callback within 5 s");
    assert_eq!(
        received.lock().unwrap().as_slice(),
        [json!({"paymentlink_refs": [reference.clone()]})]
    );
    assert_eq!(sb.link(&reference).unwrap().status, "paid");
    assert_eq!(pay(reference.clone()).await, 409, "already paid");
    assert_eq!(pay("pml-unknown".into()).await, 404);

    let (_, other) = API.create_raw(&sb, &t, VALID).await;
    let other = other["ref"].as_str().unwrap().to_string();
    http()
        .patch(format!("{}/paymentlink/v1/{other}", sb.base_url()))
        .bearer_auth(&t)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(pay(other).await, 409, "inactive");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_and_rate_limits_are_simulated() {
    // Failures hit the token endpoints of both APIs too.
    for api in Api::ALL {
        let sb = start(SandboxOptions {
            fail_rate: 1.0,
            ..SandboxOptions::default()
        })
        .await;
        let resp = http()
            .post(format!("{}{}", sb.base_url(), api.token_path()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{api:?}");
        assert_eq!(sb.counters().server_errors, 1, "{api:?}");
        sb.shutdown().await;
    }

    let sb = start(SandboxOptions {
        rate_limit: Some(3),
        ..SandboxOptions::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = http()
            .get(format!("{}/paymentlink/v1/pml-x", sb.base_url()))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            assert_eq!(resp.headers()["retry-after"], "1");
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    assert_eq!(sb.counters().rate_limited, 2);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_is_added_and_concurrency_observed() {
    let sb = start(SandboxOptions {
        latency: Duration::from_millis(100),
        ..SandboxOptions::default()
    })
    .await;
    let url = format!("{}/paymentlink/v1/pml-x/status", sb.base_url());
    let started = std::time::Instant::now();
    let all = futures_util::future::join_all((0..5).map(|_| http().get(&url).send())).await;
    assert!(all.iter().all(|r| r.as_ref().unwrap().status() == 401));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(
        took < Duration::from_millis(450),
        "concurrent, not serial: {took:?}"
    );
    assert_eq!(sb.counters().max_concurrent, 5);
    assert_eq!(sb.counters().api_requests, 5);
    sb.shutdown().await;
}

#[test]
fn command_options_parse_with_their_defaults() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sandbox: SandboxArgs,
    }
    let cli = Cli::parse_from(["sandbox"]);
    assert_eq!(cli.sandbox.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(cli.sandbox.token_ttl, 86_400);
    assert_eq!(cli.sandbox.client_id, "sandbox");
    let cli = Cli::parse_from([
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        "100",
        "--fail-rate",
        "0.1",
        "--rate-limit",
        "100",
        "--token-ttl",
        "60",
        "--state-file",
        "/tmp/x.json",
    ]);
    assert_eq!(cli.sandbox.latency_ms, 100);
    assert_eq!(cli.sandbox.rate_limit, Some(100));
    assert!(Cli::try_parse_from(["sandbox", "--fail-rate", "1.5"]).is_err());
}
