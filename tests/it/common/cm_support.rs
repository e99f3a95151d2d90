//! Helpers shared by the CM client and sandbox tests: a log capture (to prove what is
//! never logged), quick retries, a sandbox on a free port, one HTTP client, the settings,
//! clients and requests the client tests build, and [`Api`]: the two CM APIs behind one
//! face, for the tests both must pass alike and for raw calls to either side of the
//! sandbox.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use invoice_sync::cm::idealqr::purchase_id;
use invoice_sync::cm::{
    CmClient, CmError, CreateLink, CreateTransaction, IdealQrClient, RetryPolicy, Throttle,
};
use invoice_sync::config::{Cm, IdealQr};
use invoice_sync::domain::{InvoiceRef, MerchantRef};
use invoice_sync::sandbox::{self, Sandbox, SandboxOptions};
use secrecy::SecretString;

/// Every log line of this test binary, at debug level, so tests can assert what is never
/// logged. Printed to stderr as well when `TEST_LOG` is set.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        buf
    })
    .clone()
}

#[derive(Clone)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(data)?;
        }
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

pub async fn start(opts: SandboxOptions) -> Sandbox {
    sandbox::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .expect("sandbox starts")
}

/// One client for the whole binary: building one is slow (TLS roots).
pub fn http() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::new()
        })
        .clone()
}

/// GETs `url` (with a bearer token when given); returns status and body text.
pub async fn http_get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The client id the client tests' sandboxes accept.
pub const CLIENT_ID: &str = "merchant-1";
/// The payment link API's token endpoint.
pub const LINKS_TOKEN_PATH: &str = "/auth/v1/token";
/// The payment link API's create path.
pub const LINKS_CREATE: &str = "/paymentlink/v1.0";
/// The iDEAL QR API's own token endpoint.
pub const QR_TOKEN_PATH: &str = "/api/v1/authorization/oauth2/token";
/// The iDEAL QR transactions (`POST` creates; `/<id>` reads one).
pub const QR_TRANSACTIONS: &str = "/api/v1/paymentmethods/idealqr/v1/transactions";

/// A sandbox that knows only [`CLIENT_ID`] with `secret`, the log capture installed first.
pub async fn sandbox_for(secret: &str, opts: SandboxOptions) -> Sandbox {
    logs();
    start(SandboxOptions {
        client_id: CLIENT_ID.into(),
        client_secret: secret.into(),
        ..opts
    })
    .await
}

/// `[cm]` settings for [`CLIENT_ID`] at `base`: at most `max_in_flight` requests at once,
/// 1000 a second (change the rate with struct update syntax).
pub fn cm_settings(base: &str, max_in_flight: usize) -> Cm {
    Cm {
        base_url: base.into(),
        client_id: CLIENT_ID.into(),
        requests_per_second: std::num::NonZeroU32::new(1000).unwrap(),
        burst: std::num::NonZeroU32::new(1000).unwrap(),
        max_in_flight,
        timeout_seconds: 5,
        ..Cm::default()
    }
}

/// `[ideal_qr]` settings for the sandbox at `base`, with the `[cm]` credentials.
pub fn qr_settings(base: &str) -> IdealQr {
    IdealQr {
        enabled: true,
        base_url: base.into(),
        token_url: format!("{base}{QR_TOKEN_PATH}"),
        client_id: None,
        size: 300,
        return_url: Some("https://merchant.example/paid".into()),
        ..IdealQr::default()
    }
}

/// A payment link client with its own throttle and quick retries.
pub fn links_client(cm: &Cm, secret: &str) -> CmClient {
    let throttle = Arc::new(Throttle::from_settings(cm));
    CmClient::with_parts(cm, SecretString::from(secret), throttle, fast_retries())
        .expect("client builds")
}

/// An iDEAL QR client with its own throttle and quick retries.
pub fn qr_client(qr: &IdealQr, cm: &Cm, secret: &str) -> IdealQrClient {
    let throttle = Arc::new(Throttle::from_settings(cm));
    IdealQrClient::new(qr, cm, SecretString::from(secret), throttle, fast_retries())
        .expect("client builds")
}

/// A valid payment link for invoice `INV-2024-001`, due 2024-05-01.
pub fn link(
    amount_minor: i64,
    exponent: u8,
    currency: &str,
    merchant_reference: &str,
) -> CreateLink {
    CreateLink {
        amount_minor,
        exponent,
        currency_code: currency.into(),
        invoice_reference: InvoiceRef::parse("INV-2024-001").unwrap(),
        invoice_due_date: "2024-05-01T00:00:00+00:00".into(),
        merchant_reference: MerchantRef::parse(merchant_reference).unwrap(),
        language_code: "NL".into(),
        country_code: "NL".into(),
        expiry_date: None,
        callback_url: None,
    }
}

/// A valid iDEAL QR transaction for invoice `reference`, open until 2099.
pub fn qr_request(reference: &str, amount_cents: i64) -> CreateTransaction {
    CreateTransaction {
        reference: InvoiceRef::parse(reference).unwrap(),
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
pub fn request_log(sb: &Sandbox) -> Vec<(String, String, u16)> {
    sb.requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect()
}

/// How many requests the sandbox saw on `path`.
pub fn count(sb: &Sandbox, path: &str) -> usize {
    sb.requests().iter().filter(|r| r.path == path).count()
}

/// One of CM's two APIs, for the tests both must pass alike: such a test runs once for
/// each of [`Api::ALL`] and names the API in every failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    PaymentLinks,
    IdealQr,
}

impl Api {
    pub const ALL: [Api; 2] = [Api::PaymentLinks, Api::IdealQr];

    /// The secret of this API's test sandbox (one per API, to tell their leaks apart).
    pub const fn secret(self) -> &'static str {
        match self {
            Api::PaymentLinks => "s3cr3t-Never-Show-Me-42",
            Api::IdealQr => "qr-S3cret-Never-Show-Me-99",
        }
    }

    pub fn token_path(self) -> &'static str {
        match self {
            Api::PaymentLinks => LINKS_TOKEN_PATH,
            Api::IdealQr => QR_TOKEN_PATH,
        }
    }

    pub fn create_path(self) -> &'static str {
        match self {
            Api::PaymentLinks => LINKS_CREATE,
            Api::IdealQr => QR_TRANSACTIONS,
        }
    }

    /// A well-formed reference / id CM does not know.
    pub fn unknown_id(self) -> &'static str {
        match self {
            Api::PaymentLinks => "pml-00000000-0000-0000-0000-000000000000",
            Api::IdealQr => "00000000-0000-0000-0000-000000000000",
        }
    }

    /// The field CM names when it refuses [`ApiClient::create_refused`].
    pub fn refused_field(self) -> &'static str {
        match self {
            Api::PaymentLinks => "currency_code",
            Api::IdealQr => "language",
        }
    }

    /// A valid create body, as a raw JSON text.
    pub const fn valid_body(self) -> &'static str {
        match self {
            Api::PaymentLinks => {
                r#"{"amount": 10.00, "currency_code": "EUR", "merchant_reference": "M-1", "invoice_reference": "INV-1", "invoice_due_date": "2022-02-22T22:00:00+00:00", "language_code": "NL", "country_code": "NL"}"#
            }
            Api::IdealQr => {
                r#"{"reference": "INV-1", "amount": 1200, "currency": "EUR", "purchaseId": "INV-1-r1", "description": "Invoice INV-1", "expiresAt": "2099-01-02T15:04:05Z", "reusable": false, "size": 200, "language": "nl", "returnUrl": "https://merchant.example/paid"}"#
            }
        }
    }

    /// [`Api::valid_body`] without `field`, or with `field` set to the JSON `literal` (kept
    /// verbatim).
    pub fn with(self, field: &str, literal: Option<&str>) -> String {
        let mut v: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(self.valid_body()).unwrap();
        v.remove(field);
        let mut text = serde_json::to_string(&v).unwrap();
        if let Some(lit) = literal {
            text.pop();
            text.push_str(&format!(",\"{field}\":{lit}}}"));
        }
        text
    }

    /// A token from this API's token endpoint at `sb`, for the sandbox's default
    /// credentials (`sandbox` / `sandbox`), over plain HTTP.
    pub async fn token(self, sb: &Sandbox) -> String {
        let resp = http()
            .post(format!("{}{}", sb.base_url(), self.token_path()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sandbox"),
                ("client_secret", "sandbox"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{self:?}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["token_type"], "bearer", "{self:?}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// POSTs a raw JSON body to this API's create endpoint at `sb` over plain HTTP; returns
    /// the status and the JSON answer (`null` when there is none).
    pub async fn create_raw(
        self,
        sb: &Sandbox,
        token: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let resp = http()
            .post(format!("{}{}", sb.base_url(), self.create_path()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A sandbox for this API's client (see [`sandbox_for`]).
    pub async fn sandbox(self, opts: SandboxOptions) -> Sandbox {
        sandbox_for(self.secret(), opts).await
    }

    /// A sandbox with `opts` and a client of this API at it.
    pub async fn start(self, opts: SandboxOptions) -> (Sandbox, ApiClient) {
        let sb = self.sandbox(opts).await;
        let client = self.client(&sb);
        (sb, client)
    }

    /// A client of this API at `sb`, with the right secret.
    pub fn client(self, sb: &Sandbox) -> ApiClient {
        self.client_with(sb, self.secret())
    }

    /// A client of this API at `sb`, with `secret`.
    pub fn client_with(self, sb: &Sandbox, secret: &str) -> ApiClient {
        let base = sb.base_url();
        let cm = cm_settings(&base, 16);
        match self {
            Api::PaymentLinks => ApiClient::Links(links_client(&cm, secret)),
            Api::IdealQr => ApiClient::Qr(qr_client(&qr_settings(&base), &cm, secret)),
        }
    }

    /// How many links / transactions the sandbox holds.
    pub fn held(self, sb: &Sandbox) -> usize {
        match self {
            Api::PaymentLinks => sb.links().len(),
            Api::IdealQr => sb.qr_transactions().len(),
        }
    }
}

/// A client of one of the two APIs, behind the calls the shared tests make.
#[derive(Clone, Debug)]
pub enum ApiClient {
    Links(CmClient),
    Qr(IdealQrClient),
}

impl ApiClient {
    /// Creates the `i`th of a run of valid links / transactions (amount 1.00 + `i` cents);
    /// returns its reference / id.
    pub async fn create(&self, i: i64) -> Result<String, CmError> {
        match self {
            ApiClient::Links(c) => c
                .create_link(&link(100 + i, 2, "EUR", &format!("R-{i}")))
                .await
                .map(|l| l.reference),
            ApiClient::Qr(c) => c
                .create_transaction(&qr_request(&format!("INV-{i}"), 100 + i))
                .await
                .map(|t| t.id),
        }
    }

    /// A create that only CM refuses (a lowercase currency, a language it does not know),
    /// naming [`Api::refused_field`].
    pub async fn create_refused(&self) -> Result<String, CmError> {
        match self {
            ApiClient::Links(c) => c
                .create_link(&link(100, 2, "eur", "R-1"))
                .await
                .map(|l| l.reference),
            ApiClient::Qr(c) => {
                let mut req = qr_request("INV-1", 100);
                req.language = "dutch".into(); // left for CM to judge
                c.create_transaction(&req).await.map(|t| t.id)
            }
        }
    }

    /// Reads one back (`GET` of the link / transaction).
    pub async fn read(&self, id: &str) -> Result<(), CmError> {
        match self {
            ApiClient::Links(c) => c
                .get_link(&invoice_sync::domain::LinkRef::parse(id).unwrap())
                .await
                .map(drop),
            ApiClient::Qr(c) => c.get_transaction(id).await.map(drop),
        }
    }

    pub async fn check_credentials(&self) -> Result<(), CmError> {
        match self {
            ApiClient::Links(c) => c.check_credentials().await,
            ApiClient::Qr(c) => c.check_credentials().await,
        }
    }
}
