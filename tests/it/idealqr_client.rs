//! The iDEAL QR client against the sandbox (and, for what the sandbox never does, a stub
//! CM), over real HTTP on loopback: what CM receives, where the token comes from, how
//! failures are survived, the QR image, and that secrets stay secret.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use futures_util::StreamExt;
use invoice_sync::cm::idealqr::{MAX_AMOUNT_CENTS, amount_in_range, purchase_id};
use invoice_sync::cm::{
    CmClient, CmError, CreateLink, CreateTransaction, IdealQrClient, QrStatus, Throttle,
};
use invoice_sync::config::{Cm, IdealQr};
use invoice_sync::sandbox::{self, Sandbox, SandboxOptions};
use proptest::prelude::*;
use secrecy::SecretString;

use crate::common::cm_support;
use cm_support::{fast_retries, logs};

const SECRET: &str = "qr-S3cret-Never-Show-Me-99";
const TOKEN_PATH: &str = "/api/v1/authorization/oauth2/token";
const TRANSACTIONS: &str = "/api/v1/paymentmethods/idealqr/v1/transactions";

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

fn cm_settings(base: &str, max_in_flight: usize) -> Cm {
    Cm {
        base_url: base.into(),
        client_id: "merchant-1".into(),
        requests_per_second: std::num::NonZeroU32::new(1000).unwrap(),
        burst: std::num::NonZeroU32::new(1000).unwrap(),
        max_in_flight,
        timeout_seconds: 5,
        ..Cm::default()
    }
}

fn qr_settings(base: &str) -> IdealQr {
    IdealQr {
        enabled: true,
        base_url: base.into(),
        token_url: format!("{base}{TOKEN_PATH}"),
        client_id: None,
        size: 300,
        return_url: Some("https://merchant.example/paid".into()),
        ..IdealQr::default()
    }
}

fn client_for(qr: &IdealQr, cm: &Cm, secret: &str) -> IdealQrClient {
    let throttle = Arc::new(Throttle::from_settings(cm));
    IdealQrClient::new(qr, cm, SecretString::from(secret), throttle, fast_retries())
        .expect("client builds")
}

fn client(sb: &Sandbox) -> IdealQrClient {
    let base = sb.base_url();
    client_for(&qr_settings(&base), &cm_settings(&base, 16), SECRET)
}

fn request(reference: &str, amount_cents: i64) -> CreateTransaction {
    CreateTransaction {
        reference: reference.into(),
        amount_cents,
        currency: "EUR".into(),
        purchase_id: purchase_id(reference, 1),
        description: format!("Invoice {reference}"),
        expires_at: "2099-05-15T00:00:00+00:00".into(),
        size: 300,
        return_url: "https://merchant.example/paid".into(),
        language: "NL".into(),
        webhook_url: None,
    }
}

/// The requests the sandbox saw, as (method, path, status).
fn log(sb: &Sandbox) -> Vec<(String, String, u16)> {
    sb.requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect()
}

fn count(sb: &Sandbox, path: &str) -> usize {
    sb.requests().iter().filter(|r| r.path == path).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_sends_every_field_as_the_document_says() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    let reference = "2024/Factuur #0001 — a reference far longer than thirty-five";
    let mut req = request(reference, 123_456);
    req.webhook_url = Some("https://merchant.example/invoice-sync/callback?qr=1".into());
    let created = qr.create_transaction(&req).await.unwrap();

    let seen = sb
        .qr_transaction(&created.id)
        .expect("the sandbox holds it");
    let f = &seen.fields;
    assert_eq!(f["amount"], "123456", "integer cents on the wire");
    assert_eq!(f["currency"], "\"EUR\"");
    assert_eq!(f["reference"], serde_json::to_string(reference).unwrap());
    let pid = purchase_id(reference, 1);
    assert!(pid.len() <= 35, "{pid}");
    assert_eq!(pid, purchase_id(reference, 1), "stable");
    assert_eq!(f["purchaseId"], format!("\"{pid}\""));
    assert_eq!(
        f["description"],
        serde_json::to_string(&format!("Invoice {reference}")).unwrap()
    );
    assert_eq!(f["expiresAt"], "\"2099-05-15T00:00:00+00:00\"");
    assert_eq!(f["size"], "300");
    assert_eq!(f["returnUrl"], "\"https://merchant.example/paid\"");
    assert_eq!(f["language"], "\"nl\"", "ISO 639-1 in lowercase");
    assert_eq!(f["reusable"], "false");
    assert_eq!(
        f["webhooks"],
        r#"[{"url":"https://merchant.example/invoice-sync/callback?qr=1","events":["FINALSTATUS"]}]"#
    );
    assert!(!f.contains_key("returnUrls"));
    assert!(
        seen.created_with.contains("\"amount\":123456,"),
        "{}",
        seen.created_with
    );

    // What CM answered is what it holds.
    assert_eq!(created.id.len(), 36, "{}", created.id);
    assert_eq!(created.status, QrStatus::Open);
    assert_eq!(created.qr_url.as_deref(), Some(seen.qr_url.as_str()));
    assert!(seen.qr_url.starts_with(&sb.base_url()));
    assert_eq!(created.amount_cents, Some(123_456));
    assert_eq!(created.reference.as_deref(), Some(reference));
    assert_eq!(created.purchase_id.as_deref(), Some(pid.as_str()));
    assert_eq!(
        created.expires_at.as_deref(),
        Some("2099-05-15T00:00:00+00:00")
    );

    // Without a webhook URL, no webhooks at all (not an empty list, not null).
    let plain = qr.create_transaction(&request("INV-2", 1)).await.unwrap();
    let seen = sb.qr_transaction(&plain.id).unwrap();
    assert_eq!(seen.fields["purchaseId"], "\"INV-2-r1\"");
    assert_eq!(seen.fields["amount"], "1");
    for absent in ["webhooks", "null"] {
        assert!(!seen.created_with.contains(absent), "{}", seen.created_with);
    }
    let creates: Vec<_> = log(&sb)
        .into_iter()
        .filter(|(_, p, _)| p == TRANSACTIONS)
        .collect();
    assert_eq!(
        creates,
        [
            ("POST".to_string(), TRANSACTIONS.to_string(), 201),
            ("POST".to_string(), TRANSACTIONS.to_string(), 201)
        ]
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_comes_from_the_qr_token_url_and_is_reused() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    let results = futures_util::stream::iter(0..12)
        .map(|i| {
            let qr = qr.clone();
            async move {
                qr.create_transaction(&request(&format!("INV-{i}"), 100 + i))
                    .await
            }
        })
        .buffer_unordered(12)
        .collect::<Vec<_>>()
        .await;
    for r in &results {
        let t = r.as_ref().unwrap();
        assert_eq!(qr.get_transaction(&t.id).await.unwrap().id, t.id);
    }
    assert_eq!(count(&sb, TOKEN_PATH), 1, "one token for 24 calls");
    assert_eq!(count(&sb, "/auth/v1/token"), 0, "not the payment link one");
    assert_eq!(sb.counters().tokens_issued, 1);

    // A client pointed at the payment link token endpoint gets a token the QR API
    // refuses: after one refresh, that is a credentials problem, not a retry loop.
    let base = sb.base_url();
    let mut wrong = qr_settings(&base);
    wrong.token_url = format!("{base}/auth/v1/token");
    let misdirected = client_for(&wrong, &cm_settings(&base, 4), SECRET);
    let err = misdirected
        .create_transaction(&request("INV-X", 100))
        .await
        .unwrap_err();
    assert!(matches!(err, CmError::Auth { .. }), "{err:?}");
    assert_eq!(sb.qr_transactions().len(), 12);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_default_to_cm_and_can_be_their_own() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let base = sb.base_url();
    let mut own = qr_settings(&base);
    own.client_id = Some("qr-merchant".into());
    // The sandbox knows only merchant-1: a separate id is sent, and refused.
    let qr = client_for(&own, &cm_settings(&base, 4), SECRET);
    let err = qr.check_credentials().await.unwrap_err();
    match &err {
        CmError::Auth { client_id, message } => {
            assert_eq!(client_id, "qr-merchant");
            assert!(message.contains("ideal_qr.client_id"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Wrong secret: named client id, no secret anywhere, asked once.
    let wrong = "wrong-Secret-Value-77";
    let qr = client_for(&qr_settings(&base), &cm_settings(&base, 4), wrong);
    let err = qr
        .create_transaction(&request("INV-1", 100))
        .await
        .unwrap_err();
    assert!(matches!(err, CmError::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("merchant-1"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");
    assert!(qr.check_credentials().await.is_err());
    assert_eq!(count(&sb, TOKEN_PATH), 2, "one refusal each, not retried");
    // The [cm] id by default works.
    client(&sb).check_credentials().await.unwrap();
    assert!(sb.qr_transactions().is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refreshed_once_and_the_call_succeeds() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    qr.create_transaction(&request("INV-1", 500)).await.unwrap();
    sb.revoke_tokens();
    qr.create_transaction(&request("INV-2", 600)).await.unwrap();
    let token = ("POST".to_string(), TOKEN_PATH.to_string(), 200);
    let create = |status| ("POST".to_string(), TRANSACTIONS.to_string(), status);
    assert_eq!(
        log(&sb),
        [token.clone(), create(201), create(401), token, create(201)],
        "one refusal, one refresh, one retry"
    );
    assert_eq!(
        sb.qr_transactions().len(),
        2,
        "the refused create made none"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_unavailability_are_survived_without_duplicates() {
    let sb = sandbox_with(SandboxOptions {
        rate_limit: Some(2),
        ..SandboxOptions::default()
    })
    .await;
    let qr = client(&sb);
    for i in 0..3 {
        qr.create_transaction(&request(&format!("INV-{i}"), 100))
            .await
            .unwrap();
    }
    assert!(sb.counters().rate_limited >= 1);
    assert_eq!(sb.qr_transactions().len(), 3, "one transaction per create");
    let log = sb.requests();
    let refused = log.iter().position(|r| r.status == 429).unwrap();
    let waited = log[refused + 1]
        .started
        .duration_since(log[refused].finished);
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    sb.shutdown().await;

    let sb = sandbox_with(SandboxOptions {
        fail_rate: 0.3,
        ..SandboxOptions::default()
    })
    .await;
    let qr = client(&sb);
    let results = futures_util::stream::iter(0..24)
        .map(|i| {
            let qr = qr.clone();
            async move {
                let t = qr
                    .create_transaction(&request(&format!("INV-{i}"), 100 + i))
                    .await?;
                qr.get_transaction(&t.id).await
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert!(sb.counters().server_errors > 0, "503s were simulated");
    assert_eq!(sb.qr_transactions().len(), 24, "no duplicates");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_permanent_and_carries_cms_message() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    let mut req = request("INV-1", 100);
    req.language = "dutch".into(); // left for CM to judge
    let err = qr.create_transaction(&req).await.unwrap_err();
    match &err {
        CmError::Permanent {
            status: 400,
            message,
        } => {
            assert!(message.contains("language"), "{message}")
        }
        other => panic!("expected a permanent 400, got {other:?}"),
    }
    assert!(!err.is_transient() && !err.maybe_applied());
    assert_eq!(count(&sb, TRANSACTIONS), 1, "a 400 is not retried");

    let missing = qr
        .get_transaction("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_document_forbids_is_refused_before_sending() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    type Change = fn(&mut CreateTransaction);
    let cases: [(&str, Change); 12] = [
        ("amount", |t| t.amount_cents = 0),
        ("amount", |t| t.amount_cents = -100),
        ("amount", |t| t.amount_cents = MAX_AMOUNT_CENTS + 1),
        ("description", |t| t.description = String::new()),
        ("description", |t| t.description = "d".repeat(256)),
        ("reference", |t| t.reference = String::new()),
        ("reference", |t| t.reference = "r".repeat(256)),
        ("purchaseId", |t| t.purchase_id = "p".repeat(36)),
        ("size", |t| t.size = 99),
        ("size", |t| t.size = 2001),
        ("expiresAt", |t| t.expires_at = "15-05-2099".into()),
        ("EUR", |t| t.currency = "USD".into()),
    ];
    for (field, change) in cases {
        let mut req = request("INV-1", 100);
        change(&mut req);
        match qr.create_transaction(&req).await {
            Err(CmError::Invalid(m)) => assert!(m.contains(field), "{field}: {m}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        qr.get_transaction(" ").await,
        Err(CmError::Invalid(_))
    ));
    assert!(
        sb.requests().is_empty(),
        "nothing was sent, not even a token"
    );
    // The edges are allowed.
    let mut edge = request("r", MAX_AMOUNT_CENTS);
    edge.description = "é".repeat(255);
    edge.size = 2000;
    edge.purchase_id = "p".repeat(35);
    qr.create_transaction(&edge).await.unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_follows_the_status_and_drops_the_qr_when_not_open() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    let t = qr
        .create_transaction(&request("INV-1", 2500))
        .await
        .unwrap();
    let open = qr.get_transaction(&t.id).await.unwrap();
    assert_eq!(open, t, "a get reads what the create answered");
    assert_eq!(sb.pay_qr(&t.id), 200);
    let paid = qr.get_transaction(&t.id).await.unwrap();
    assert_eq!(paid.status, QrStatus::Success);
    assert!(paid.status.is_final());
    assert_eq!(paid.qr_url, None, "action only while OPEN");
    assert_eq!(paid.amount_cents, Some(2500));

    let c = qr.create_transaction(&request("INV-2", 100)).await.unwrap();
    assert_eq!(sb.end_qr(&c.id, "CANCELLED"), 200);
    assert_eq!(
        qr.get_transaction(&c.id).await.unwrap().status,
        QrStatus::Cancelled
    );
    let mut old = request("INV-3", 100);
    old.expires_at = "2020-01-01T00:00:00Z".into();
    let e = qr.create_transaction(&old).await.unwrap();
    assert_eq!(
        qr.get_transaction(&e.id).await.unwrap().status,
        QrStatus::Expired
    );
    sb.shutdown().await;
}

/// PNG width and height from the IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR", "IHDR first");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The text of the QR code in a PNG.
fn decode_qr(png: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().unwrap().1
}

#[tokio::test(flavor = "multi_thread")]
async fn the_qr_image_is_a_png_of_about_the_asked_size_that_scans() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    for size in [100, 300, 1000] {
        let mut req = request(&format!("INV-{size}"), 100);
        req.size = size;
        let t = qr.create_transaction(&req).await.unwrap();
        let png = qr.fetch_qr_png(t.qr_url.as_deref().unwrap()).await.unwrap();
        let (w, h) = png_size(&png);
        assert_eq!(w, h, "square");
        assert!(
            (size * 9 / 10..=size * 11 / 10).contains(&w),
            "{w} px for size {size}"
        );
        let pay_url = sb.qr_transaction(&t.id).unwrap().pay_url;
        assert_eq!(
            decode_qr(&png),
            pay_url,
            "a real QR code of the payment page"
        );
    }
    let png_gets = sb
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/sandbox/idealqr/qr/"))
        .count();
    assert_eq!(png_gets, 3);
    assert!(matches!(
        qr.fetch_qr_png("file:///etc/passwd").await,
        Err(CmError::Invalid(_))
    ));
    let missing = qr
        .fetch_qr_png(&format!("{}/sandbox/idealqr/qr/nope.png", sb.base_url()))
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing:?}");
    sb.shutdown().await;
}

/// A stand-in for CM that does what the sandbox never does: answers 500 / 502, serves
/// images that are too big or not PNGs, and records the Authorization header of image
/// requests.
struct Stub {
    base: String,
    creates: Arc<AtomicU32>,
    gets: Arc<AtomicU32>,
    image_auth: Arc<Mutex<Vec<Option<String>>>>,
}

async fn stub() -> Stub {
    logs();
    let creates = Arc::new(AtomicU32::new(0));
    let gets = Arc::new(AtomicU32::new(0));
    let image_auth: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let png = include_png();
    let app = axum::Router::new()
        .route(
            "/token",
            post(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "stub-token-value-123",
                    "token_type": "Bearer",
                    "expires_in": 3600
                }))
            }),
        )
        .route(
            TRANSACTIONS,
            post({
                let creates = creates.clone();
                move || async move {
                    creates.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, "{\"message\":\"boom\"}")
                }
            }),
        )
        .route(
            &format!("{TRANSACTIONS}/{{id}}"),
            get({
                let gets = gets.clone();
                move || async move {
                    gets.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::BAD_GATEWAY, "bad gateway")
                }
            }),
        )
        .route(
            "/img/ok.png",
            get({
                let image_auth = image_auth.clone();
                move |headers: HeaderMap| async move {
                    image_auth.lock().unwrap().push(
                        headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string()),
                    );
                    png
                }
            }),
        )
        .route(
            "/img/big.png",
            get(|| async {
                let mut body = b"\x89PNG\r\n\x1a\n".to_vec();
                body.resize(2 << 20, 0);
                body
            }),
        )
        .route(
            "/img/page.png",
            get(|| async { "<html>not an image</html>" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Stub {
        base,
        creates,
        gets,
        image_auth,
    }
}

/// A small valid PNG (1x1, grey).
fn include_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 1, 1);
    enc.set_color(png::ColorType::Grayscale);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[0x80]).unwrap();
    w.finish().unwrap();
    out
}

fn stub_client(stub: &Stub) -> IdealQrClient {
    let mut qr = qr_settings(&stub.base);
    qr.token_url = format!("{}/token", stub.base);
    client_for(&qr, &cm_settings(&stub.base, 4), SECRET)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_that_may_have_been_applied_is_not_sent_again() {
    let stub = stub().await;
    let qr = stub_client(&stub);
    let err = qr
        .create_transaction(&request("INV-1", 100))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.maybe_applied(), "a 500 may hide a created transaction");
    assert_eq!(stub.creates.load(Ordering::SeqCst), 1, "sent once");
    // A read is safe to repeat.
    let err = qr.get_transaction("abc").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        stub.gets.load(Ordering::SeqCst),
        8,
        "every attempt of the policy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_qr_image_gets_no_token_and_must_be_a_small_png() {
    let stub = stub().await;
    let qr = stub_client(&stub);
    qr.check_credentials().await.unwrap(); // a token exists that could leak
    let png = qr
        .fetch_qr_png(&format!("{}/img/ok.png", stub.base))
        .await
        .unwrap();
    assert_eq!(png_size(&png), (1, 1));
    assert_eq!(
        stub.image_auth.lock().unwrap().as_slice(),
        [None],
        "no bearer token to the image host"
    );
    let big = qr
        .fetch_qr_png(&format!("{}/img/big.png", stub.base))
        .await
        .unwrap_err();
    assert!(matches!(big, CmError::Protocol { .. }), "{big:?}");
    assert!(big.to_string().contains("longer than"), "{big}");
    let page = qr
        .fetch_qr_png(&format!("{}/img/page.png", stub.base))
        .await
        .unwrap_err();
    assert!(page.to_string().contains("not a PNG"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_clients_share_one_throttle() {
    let sb = sandbox_with(SandboxOptions {
        latency: Duration::from_millis(40),
        ..SandboxOptions::default()
    })
    .await;
    let base = sb.base_url();
    let cm = cm_settings(&base, 3);
    let throttle = Arc::new(Throttle::from_settings(&cm));
    let links = CmClient::with_parts(
        &cm,
        SecretString::from(SECRET),
        throttle.clone(),
        fast_retries(),
    )
    .unwrap();
    let qr = IdealQrClient::new(
        &qr_settings(&base),
        &cm,
        SecretString::from(SECRET),
        links.throttle(),
        fast_retries(),
    )
    .unwrap();
    let link_calls = (0..8).map(|i| {
        let links = links.clone();
        async move {
            links
                .create_link(&CreateLink {
                    amount_minor: 100,
                    exponent: 2,
                    currency_code: "EUR".into(),
                    invoice_reference: format!("INV-{i}"),
                    invoice_due_date: "2024-05-01T00:00:00+00:00".into(),
                    merchant_reference: format!("INV-{i}/1"),
                    language_code: "NL".into(),
                    country_code: "NL".into(),
                    expiry_date: None,
                    callback_url: None,
                })
                .await
                .map(|_| ())
        }
    });
    let qr_calls = (0..8).map(|i| {
        let qr = qr.clone();
        async move {
            qr.create_transaction(&request(&format!("INV-{i}"), 100))
                .await
                .map(|_| ())
        }
    });
    let (a, b) = futures_util::join!(
        futures_util::future::join_all(link_calls),
        futures_util::future::join_all(qr_calls)
    );
    assert!(a.iter().chain(&b).all(Result::is_ok));
    assert_eq!(sb.counters().max_concurrent, 3, "{:?}", sb.counters());
    assert_eq!(sb.counters().tokens_issued, 2, "one token per API");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_never_reach_errors_debug_or_logs() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let qr = client(&sb);
    let debug = format!("{qr:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("merchant-1"), "{debug}");

    let t = qr.create_transaction(&request("INV-1", 100)).await.unwrap();
    let mut bad = request("INV-2", 100);
    bad.language = "dutch".into();
    let mut errors = vec![
        qr.create_transaction(&bad).await.unwrap_err(),
        qr.get_transaction("missing").await.unwrap_err(),
    ];
    let mut tokens = sb.tokens();
    sb.revoke_tokens();
    qr.get_transaction(&t.id).await.unwrap();
    tokens.extend(sb.tokens());
    assert_eq!(tokens.len(), 2);

    let dead = client(&sb);
    sb.shutdown().await;
    errors.push(dead.get_transaction(&t.id).await.unwrap_err());
    assert!(errors.last().unwrap().is_transient());

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

#[test]
fn purchase_ids_are_short_stable_and_distinct() {
    assert_eq!(purchase_id("INV-2024-001", 1), "INV-2024-001-r1");
    assert_eq!(purchase_id("INV-2024-001", 2), "INV-2024-001-r2");
    let long = "FACTUUR-2024-000000000000000000000000000001";
    let other = "FACTUUR-2024-000000000000000000000000000002";
    assert_eq!(long[..30], other[..30]);
    let odd = [
        long,
        other,
        "2024/01 #7",
        "2024-01--7",
        "  spaced  ",
        "",
        "///",
        "ÄÖÜ-ünïcödé-😀-références-très-longues-vraiment",
        &"x".repeat(1000),
    ];
    let mut seen = std::collections::HashSet::new();
    for r in odd {
        for rev in [1, 2, 99, i64::MAX] {
            let id = purchase_id(r, rev);
            assert!(id.len() <= 35, "{r:?} {rev}: {id} ({} chars)", id.len());
            assert!(!id.is_empty());
            assert!(
                id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{id}"
            );
            assert!(id.ends_with(&format!("-r{rev}")) || id.ends_with(&format!("r{rev}")));
            assert_eq!(id, purchase_id(r, rev), "stable");
            assert!(seen.insert(id.clone()), "unique: {r:?} {rev} → {id}");
        }
    }
    assert_ne!(purchase_id(long, 1), purchase_id(other, 1));
    // A cleaned reference never takes the plain id of the one it looks like.
    assert_ne!(purchase_id("2024/01 #7", 1), purchase_id("2024-01-7", 1));
}

proptest! {
    #[test]
    fn any_reference_gives_a_valid_purchase_id(r in ".{0,80}", rev in 0i64..100_000) {
        let id = purchase_id(&r, rev);
        prop_assert!(id.len() <= 35, "{}", id);
        prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        prop_assert_eq!(&id, &purchase_id(&r, rev));
        prop_assert_ne!(&id, &purchase_id(&r, rev + 1));
    }
}

#[test]
fn amounts_in_range() {
    assert!(!amount_in_range(0));
    assert!(!amount_in_range(-1));
    assert!(amount_in_range(1));
    assert!(amount_in_range(99_999_999));
    assert!(!amount_in_range(100_000_000));
    assert!(!amount_in_range(i64::MAX));
    assert!(!amount_in_range(i64::MIN));
}
