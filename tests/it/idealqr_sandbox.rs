//! The iDEAL QR side of the CM simulator as a client sees it over HTTP: its own token
//! endpoint, the document's validation and codes, expiry, the QR image, pay / status →
//! webhooks without a status, the simulated conditions, and the state file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use invoice_sync::sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::common::cm_support::{Api, QR_TOKEN_PATH, QR_TRANSACTIONS, http, http_get, start};

const API: Api = Api::IdealQr;
const VALID: &str = API.valid_body();

/// `VALID` without `field`, or with `field` set to the JSON `literal` (kept verbatim).
fn with(field: &str, literal: Option<&str>) -> String {
    API.with(field, literal)
}

/// GETs `url` (with a bearer token when given); returns status and JSON answer (`null`
/// when there is none).
async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let (status, text) = http_get(url, token).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_ok(sb: &Sandbox, token: &str, body: &str) -> Value {
    let (status, answer) = API.create_raw(sb, token, body).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_issues_tokens_for_this_api_only() {
    let sb = start(SandboxOptions {
        token_ttl: Duration::from_secs(600),
        ..SandboxOptions::default()
    })
    .await;
    let url = format!("{}{QR_TOKEN_PATH}", sb.base_url());
    let post = |form: Vec<(&'static str, &'static str)>| {
        let url = url.clone();
        async move {
            let resp = http().post(url).form(&form).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "sandbox"),
        ("client_secret", "sandbox"),
    ])
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 600, "the same lifetime as links");
    assert_eq!(body["token_type"], "bearer");
    let missing = post(vec![("grant_type", "client_credentials")]).await;
    assert_eq!(missing.0, 400);
    let wrong = post(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "sandbox"),
        ("client_secret", "nope"),
    ])
    .await;
    assert_eq!(wrong.0, 401);

    // Each API accepts only its own tokens.
    let qr = body["access_token"].as_str().unwrap();
    let link = Api::PaymentLinks.token(&sb).await;
    assert_eq!(API.create_raw(&sb, &link, VALID).await.0, 401);
    let links_url = format!("{}/paymentlink/v1/pml-x", sb.base_url());
    assert_eq!(get(&links_url, Some(qr)).await.0, 401);
    assert_eq!(get(&links_url, Some(&link)).await.0, 404);
    assert_eq!(API.create_raw(&sb, qr, VALID).await.0, 201);
    assert_eq!(sb.counters().tokens_issued, 2);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_answers_the_documents_response() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let body = with("unknownField", Some("\"ignored\""));
    let tx = create_ok(&sb, &t, &body).await;
    let id = tx["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.matches('-').count(), 4, "{id}");
    assert_eq!(tx["status"], "OPEN");
    let qr_url = tx["action"]["qrcode"]["url"].as_str().unwrap();
    assert_eq!(
        qr_url,
        format!("{}/sandbox/idealqr/qr/{id}.png", sb.base_url())
    );
    assert!(tx["action"]["qrcode"]["id"].is_string());
    let created_at = tx["createdAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created_at).is_ok());
    for (field, value) in [
        ("reference", json!("INV-1")),
        ("amount", json!(1200)),
        ("currency", json!("EUR")),
        ("purchaseId", json!("INV-1-r1")),
        ("description", json!("Invoice INV-1")),
        ("expiresAt", json!("2099-01-02T15:04:05Z")),
        ("reusable", json!(false)),
        ("size", json!(200)),
        ("language", json!("nl")),
        ("returnUrl", json!("https://merchant.example/paid")),
    ] {
        assert_eq!(tx[field], value, "{field} echoed");
    }
    assert!(tx.get("unknownField").is_none());

    let stored = sb.qr_transaction(id).unwrap();
    assert_eq!(stored.created_with, body, "the exact body");
    assert_eq!(stored.fields["amount"], "1200");
    assert_eq!(stored.status, "OPEN");
    assert_eq!(sb.qr_transactions().len(), 1);

    let url = format!("{}{QR_TRANSACTIONS}/{id}", sb.base_url());
    let (status, read) = get(&url, Some(&t)).await;
    assert_eq!(status, 200);
    assert_eq!(read, tx, "a get reads what the create answered");
    let (status, _) = get(
        &format!("{}{QR_TRANSACTIONS}/nope", sb.base_url()),
        Some(&t),
    )
    .await;
    assert_eq!(status, 404);

    // returnUrls instead of returnUrl is fine too.
    let urls = r#"{"success": "https://m.example/ok", "failed": "https://m.example/ko"}"#;
    let other = with("returnUrl", None);
    create_ok(&sb, &t, &with_extra(&other, "returnUrls", urls)).await;
    sb.shutdown().await;
}

fn with_extra(body: &str, field: &str, literal: &str) -> String {
    let mut text = body.to_string();
    text.pop();
    text.push_str(&format!(",\"{field}\":{literal}}}"));
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn create_validation_names_the_field() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let long = |n: usize| format!("\"{}\"", "x".repeat(n));
    let hook = |h: &str| with("webhooks", Some(h));
    let cases = [
        (with("reference", None), "reference"),
        (with("reference", Some("\"\"")), "reference"),
        (with("reference", Some(&long(256))), "reference"),
        (with("reference", Some("12")), "reference"),
        (with("amount", None), "amount"),
        (with("amount", Some("12.5")), "amount"),
        (with("amount", Some("\"1200\"")), "amount"),
        (with("amount", Some("1e3")), "amount"),
        (with("amount", Some("0")), "amount"),
        (with("amount", Some("-100")), "amount"),
        (with("amount", Some("100000000")), "amount"),
        (with("description", None), "description"),
        (with("description", Some("\"\"")), "description"),
        (with("description", Some(&long(256))), "description"),
        (with("expiresAt", None), "expiresAt"),
        (with("expiresAt", Some("\"2099-01-02\"")), "expiresAt"),
        (with("expiresAt", Some("\"tomorrow\"")), "expiresAt"),
        (with("size", None), "size"),
        (with("size", Some("99")), "size"),
        (with("size", Some("2001")), "size"),
        (with("size", Some("200.0")), "size"),
        (with("size", Some("\"200\"")), "size"),
        (with("returnUrl", None), "returnUrl"),
        (
            with_extra(
                VALID,
                "returnUrls",
                r#"{"success": "https://m.example/ok"}"#,
            ),
            "returnUrl",
        ),
        (
            with(
                "returnUrl",
                Some(&format!("\"https://m.example/{}\"", "x".repeat(2000))),
            ),
            "returnUrl",
        ),
        (with("purchaseId", Some(&long(36))), "purchaseId"),
        (with("purchaseId", Some("\"\"")), "purchaseId"),
        (with("language", Some("\"dutch\"")), "language"),
        (with("language", Some("\"n1\"")), "language"),
        (with("currency", Some("\"eur\"")), "currency"),
        (with("currency", Some("\"EURO\"")), "currency"),
        (hook("{}"), "webhooks"),
        (hook(r#"[{"url": "https://m.example/cb"}]"#), "webhooks"),
        (
            hook(r#"[{"url": "https://m.example/cb", "events": []}]"#),
            "webhooks",
        ),
        (
            hook(r#"[{"url": "https://m.example/cb", "events": ["PAID"]}]"#),
            "webhooks",
        ),
        (
            hook(r#"[{"url": "not a url", "events": ["FINALSTATUS"]}]"#),
            "webhooks",
        ),
        (hook(r#"["https://m.example/cb"]"#), "webhooks"),
    ];
    for (body, field) in &cases {
        let (status, answer) = API.create_raw(&sb, &t, body).await;
        assert_eq!(status, 400, "{body}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    let (status, answer) = API.create_raw(&sb, &t, "not json").await;
    assert_eq!(status, 400);
    assert!(answer["message"].is_string());
    assert!(sb.qr_transactions().is_empty());

    // The edges and every known event are accepted.
    let edges = [
        with("amount", Some("1")),
        with("amount", Some("99999999")),
        with("size", Some("100")),
        with("size", Some("2000")),
        with("reference", Some(&long(255))),
        with("purchaseId", Some(&long(35))),
        hook(
            r#"[{"url": "https://m.example/cb", "events": ["FINALSTATUS", "STATUS_CHANGE", "QR_PAYMENT_CREATED"]}]"#,
        ),
    ];
    for body in &edges {
        create_ok(&sb, &t, body).await;
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_need_a_valid_token() {
    let sb = start(SandboxOptions::default()).await;
    let resp = http()
        .post(format!("{}{QR_TRANSACTIONS}", sb.base_url()))
        .body(VALID)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no token at all");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(API.create_raw(&sb, "made-up", VALID).await.0, 401);
    let t = API.token(&sb).await;
    let tx = create_ok(&sb, &t, VALID).await;
    let url = format!(
        "{}{QR_TRANSACTIONS}/{}",
        sb.base_url(),
        tx["id"].as_str().unwrap()
    );
    assert_eq!(get(&url, None).await.0, 401);
    sb.revoke_tokens();
    assert_eq!(get(&url, Some(&t)).await.0, 401, "revoked");
    assert!(sb.tokens().is_empty());
    sb.shutdown().await;
}

/// A tiny merchant: records every webhook per path, and signals each arrival.
struct Merchant {
    base: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    arrivals: tokio::sync::mpsc::UnboundedReceiver<()>,
}

async fn merchant() -> Merchant {
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let (tx, arrivals) = tokio::sync::mpsc::unbounded_channel::<()>();
    let hook = |path: &'static str| {
        let (received, tx) = (received.clone(), tx.clone());
        post(move |Json(body): Json<Value>| async move {
            received.lock().unwrap().push((path.to_string(), body));
            let _ = tx.send(());
            "ok"
        })
    };
    let app = axum::Router::new()
        .route("/final", hook("/final"))
        .route("/change", hook("/change"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Merchant {
        base,
        received,
        arrivals,
    }
}

impl Merchant {
    /// Waits for `n` more webhooks (5 s at most), then takes everything received.
    async fn take(&mut self, n: usize) -> Vec<(String, Value)> {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(5), self.arrivals.recv())
                .await
                .expect("webhook within 5 s");
        }
        std::mem::take(&mut *self.received.lock().unwrap())
    }

    fn hooks(&self) -> String {
        format!(
            r#"[{{"url": "{0}/final", "events": ["FINALSTATUS"]}}, {{"url": "{0}/change", "events": ["STATUS_CHANGE"]}}]"#,
            self.base
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paying_fires_the_webhooks_without_a_status() {
    let mut m = merchant().await;
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let tx = create_ok(&sb, &t, &with("webhooks", Some(&m.hooks()))).await;
    let id = tx["id"].as_str().unwrap().to_string();
    let pay = |id: String| {
        let url = format!("{}/sandbox/idealqr/transactions/{id}/pay", sb.base_url());
        async move { http().post(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(pay(id.clone()).await, 200, "no auth on /sandbox/*");
    let mut got = m.take(2).await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "/change".to_string(),
                json!({"id": id, "reference": "INV-1", "event": "STATUS_CHANGE"})
            ),
            (
                "/final".to_string(),
                json!({"id": id, "reference": "INV-1", "event": "FINALSTATUS"})
            ),
        ],
        "no status in the body: the receiver must GET"
    );
    let url = format!("{}{QR_TRANSACTIONS}/{id}", sb.base_url());
    let (_, read) = get(&url, Some(&t)).await;
    assert_eq!(read["status"], "SUCCESS");
    assert!(read.get("action").is_none(), "action only while OPEN");
    assert_eq!(sb.qr_transaction(&id).unwrap().status, "SUCCESS");
    assert_eq!(pay(id.clone()).await, 409, "already paid");
    assert_eq!(pay("nope".into()).await, 404);

    // Without webhooks, paying still works and nothing is sent.
    let quiet = create_ok(&sb, &t, VALID).await;
    assert_eq!(sb.pay_qr(quiet["id"].as_str().unwrap()), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(m.received.lock().unwrap().is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_route_ends_a_transaction_another_way() {
    let mut m = merchant().await;
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let body = with("webhooks", Some(&m.hooks()));
    let end = |id: &str, body: &str| {
        let url = format!("{}/sandbox/idealqr/transactions/{id}/status", sb.base_url());
        let body = body.to_string();
        async move {
            http()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for status in ["CANCELLED", "EXPIRED", "FAILURE"] {
        let tx = create_ok(&sb, &t, &body).await;
        let id = tx["id"].as_str().unwrap();
        assert_eq!(end(id, r#"{"status": "PAID"}"#).await, 400);
        assert_eq!(end(id, "not json").await, 400);
        assert_eq!(end(id, &format!(r#"{{"status": "{status}"}}"#)).await, 200);
        let url = format!("{}{QR_TRANSACTIONS}/{id}", sb.base_url());
        let (_, read) = get(&url, Some(&t)).await;
        assert_eq!(read["status"], status);
        assert!(read.get("action").is_none());
        let got = m.take(2).await;
        assert!(
            got.contains(&(
                "/final".to_string(),
                json!({"id": id, "reference": "INV-1", "event": "FINALSTATUS"})
            )),
            "{got:?}"
        );
        assert_eq!(
            end(id, r#"{"status": "CANCELLED"}"#).await,
            409,
            "already ended"
        );
        assert_eq!(sb.pay_qr(id), 409);
    }
    assert_eq!(end("nope", r#"{"status": "CANCELLED"}"#).await, 404);
    let tx = create_ok(&sb, &t, VALID).await;
    assert_eq!(sb.end_qr(tx["id"].as_str().unwrap(), "SUCCESS"), 400);
    assert_eq!(sb.end_qr(tx["id"].as_str().unwrap(), "FAILURE"), 200);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_transaction_past_its_expiry_reads_expired() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let tx = create_ok(&sb, &t, &with("expiresAt", Some(&format!("\"{soon}\"")))).await;
    assert_eq!(tx["status"], "OPEN");
    let id = tx["id"].as_str().unwrap();
    let url = format!("{}{QR_TRANSACTIONS}/{id}", sb.base_url());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, read) = get(&url, Some(&t)).await;
    assert_eq!(read["status"], "EXPIRED");
    assert!(read.get("action").is_none());
    assert_eq!(sb.qr_transaction(id).unwrap().status, "EXPIRED");
    assert_eq!(sb.pay_qr(id), 409, "an expired QR cannot be paid");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_qr_image_and_the_page_it_encodes() {
    let sb = start(SandboxOptions::default()).await;
    let t = API.token(&sb).await;
    let tx = create_ok(&sb, &t, &with("size", Some("400"))).await;
    let id = tx["id"].as_str().unwrap();
    let resp = http()
        .get(tx["action"]["qrcode"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let png = resp.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (400, 400));

    let pay_url = sb.qr_transaction(id).unwrap().pay_url;
    assert_eq!(
        pay_url,
        format!("{}/sandbox/idealqr/transactions/{id}", sb.base_url())
    );
    let (_, page) = http_get(&pay_url, None).await;
    assert!(page.contains("Reference INV-1"), "{page}");
    assert!(page.contains("EUR 12.00"), "{page}");
    assert!(
        page.contains(&format!("/sandbox/idealqr/transactions/{id}/pay")),
        "{page}"
    );
    assert_eq!(sb.pay_qr(id), 200);
    let (_, page) = http_get(&pay_url, None).await;
    assert!(page.contains("is SUCCESS"), "{page}");

    for missing in ["nope.png", &format!("{id}.gif")] {
        let url = format!("{}/sandbox/idealqr/qr/{missing}", sb.base_url());
        assert_eq!(http().get(url).send().await.unwrap().status(), 404);
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn simulated_conditions_log_and_counters_cover_the_qr_api() {
    // (Failures on the QR token endpoint: `sandbox::failures_and_rate_limits_are_simulated`.)
    let sb = start(SandboxOptions {
        rate_limit: Some(2),
        latency: Duration::from_millis(50),
        ..SandboxOptions::default()
    })
    .await;
    let url = format!("{}{QR_TRANSACTIONS}/x", sb.base_url());
    let started = std::time::Instant::now();
    let all = futures_util::future::join_all((0..4).map(|_| http().get(&url).send())).await;
    let mut statuses: Vec<u16> = all
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [401, 401, 429, 429]);
    assert!(started.elapsed() >= Duration::from_millis(50));
    let c = sb.counters();
    assert_eq!((c.api_requests, c.rate_limited), (4, 2));
    assert!(c.max_concurrent >= 2, "{c:?}");
    let logged = sb
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == "/api/v1/paymentmethods/idealqr/v1/transactions/x"
        })
        .count();
    assert_eq!(logged, 4);
    sb.shutdown().await;
}

/// Both sides of the sandbox, the links and the QR transactions, in one state file.
#[tokio::test(flavor = "multi_thread")]
async fn the_state_file_keeps_links_and_transactions_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox-state.json");
    let opts = SandboxOptions {
        state_file: Some(file.clone()),
        ..SandboxOptions::default()
    };
    let sb = start(opts.clone()).await;
    let t = API.token(&sb).await;
    let paid = create_ok(&sb, &t, VALID).await;
    let open = create_ok(&sb, &t, &with("reference", Some("\"INV-2\""))).await;
    let paid_id = paid["id"].as_str().unwrap().to_string();
    assert_eq!(sb.pay_qr(&paid_id), 200);
    let links = Api::PaymentLinks;
    let links_token = links.token(&sb).await;
    let (status, link) = links
        .create_raw(&sb, &links_token, links.valid_body())
        .await;
    assert_eq!(status, 201, "{link}");
    let reference = link["ref"].as_str().unwrap().to_string();
    assert_eq!(sb.pay(&reference), 200);
    let before = sb.qr_transactions();
    let links_before = sb.links();
    sb.shutdown().await;
    assert!(file.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");

    let sb = start(opts.clone()).await;
    assert_eq!(
        sb.qr_transactions(),
        before,
        "same transactions, bodies, URLs"
    );
    assert_eq!(
        sb.links(),
        links_before,
        "and the links beside them: same bodies, same URIs"
    );
    let t = API.token(&sb).await;
    let (_, read) = get(
        &format!("{}{QR_TRANSACTIONS}/{paid_id}", sb.base_url()),
        Some(&t),
    )
    .await;
    assert_eq!(read["status"], "SUCCESS");
    let open_id = open["id"].as_str().unwrap();
    let (_, read) = get(
        &format!("{}{QR_TRANSACTIONS}/{open_id}", sb.base_url()),
        Some(&t),
    )
    .await;
    assert_eq!(read, open, "an open one still reads as created");
    let links_token = links.token(&sb).await;
    let url = format!("{}/paymentlink/v1/{reference}", sb.base_url());
    let (_, read) = get(&url, Some(&links_token)).await;
    assert_eq!(read["status"], "paid");
    assert_eq!(read["uri"], link["uri"]);
    sb.shutdown().await;

    // A state file from before iDEAL QR (links only) still loads.
    let old = dir.path().join("old.json");
    // (Raw values, so the links' amount literals are kept as written.)
    let mut links_only: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    links_only.remove("qr_transactions");
    std::fs::write(&old, serde_json::to_vec(&links_only).unwrap()).unwrap();
    let sb = start(SandboxOptions {
        state_file: Some(old),
        ..SandboxOptions::default()
    })
    .await;
    assert_eq!(sb.links(), links_before);
    assert!(sb.qr_transactions().is_empty());
    sb.shutdown().await;
}

/// `pay_qr` from a plain test thread (not inside the runtime), as a synchronous test or
/// a benchmark would call it: the webhook still goes out.
#[test]
fn pay_qr_works_from_a_plain_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sb, mut m, id) = rt.block_on(async {
        let m = merchant().await;
        let sb = start(SandboxOptions::default()).await;
        let t = API.token(&sb).await;
        let tx = create_ok(&sb, &t, &with("webhooks", Some(&m.hooks()))).await;
        (sb, m, tx["id"].as_str().unwrap().to_string())
    });
    assert_eq!(sb.pay_qr(&id), 200);
    let got = rt.block_on(m.take(2));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(sb.end_qr(&id, "CANCELLED"), 409);
    rt.block_on(sb.shutdown());
}
