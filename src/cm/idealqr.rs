//! CM's iDEAL QR API (ARCHITECTURE.md): create a transaction, read
//! it back, download its QR image.
//!
//! It owns the wire format of that API (amounts as integer cents, the `purchaseId` rule,
//! the FINALSTATUS webhook) and refuses before sending what the document forbids, so a
//! request that cannot succeed costs no rate-limit slot. Requests go through the same
//! session machinery as the payment link client — its own token from
//! `ideal_qr.token_url`, the account's shared [`Throttle`], the same [`RetryPolicy`] — so
//! a create is never sent twice when CM may have acted on it. It never decides which
//! invoice gets a QR (the cycle does) and never touches the database.

use std::sync::Arc;

use reqwest::{Method, Url};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::session::{self, Answer, Payload, Session};
use super::{CmError, RetryPolicy, Throttle};
use crate::domain::InvoiceRef;

/// The path of the transactions resource under `ideal_qr.base_url`.
const TRANSACTIONS: [&str; 6] = [
    "api",
    "v1",
    "paymentmethods",
    "idealqr",
    "v1",
    "transactions",
];

/// The largest amount the document allows, in cents (EUR 999,999.99).
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999;

/// The longest `purchaseId` the document allows.
pub const MAX_PURCHASE_ID: usize = 35;

/// The most bytes of a QR image that are downloaded: a QR of the largest size (2000
/// pixels) is far smaller, so anything bigger is not what CM meant to send.
pub const MAX_QR_PNG: usize = 1 << 20;

/// The eight bytes every PNG file starts with.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// A handle on the iDEAL QR API of one account. Cheap to clone (an `Arc` inside). It has
/// its own token (the QR API has its own OAuth endpoint) but shares the throttle with the
/// payment link client, because CM counts the account's requests together. `Debug` shows
/// the URLs and the client id, never the secret or a token.
#[derive(Clone)]
pub struct IdealQrClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    session: Session,
}

impl std::fmt::Debug for IdealQrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdealQrClient")
            .field("base", &self.inner.base.as_str())
            .field("token_url", &self.inner.session.token_url().as_str())
            .field("client_id", &self.inner.session.client_id())
            .field("throttle", self.inner.session.throttle())
            .field("retry", self.inner.session.retry())
            .finish_non_exhaustive()
    }
}

/// What a new iDEAL QR transaction asks for. Plain values, because the cycle already
/// holds validated domain values; this type decides how they go on the wire and refuses
/// what the API would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTransaction {
    /// The invoice reference (1..=255 characters); CM adds it to webhook payloads.
    pub reference: InvoiceRef,
    /// The amount in cents, sent as a JSON integer; see [`amount_in_range`].
    pub amount_cents: i64,
    /// `EUR`: iDEAL knows no other currency, and the amount is in its cents.
    pub currency: String,
    /// Shown on the payer's bank statement; at most 35 characters, see [`purchase_id`].
    pub purchase_id: String,
    /// Shown to the payer (1..=255 characters).
    pub description: String,
    /// RFC 3339 timestamp after which the QR can no longer be paid.
    pub expires_at: String,
    /// Side of the QR image in pixels (100..=2000).
    pub size: u32,
    /// Where the payer lands after paying (at most 2000 characters).
    pub return_url: String,
    /// ISO 639-1 code of the payment pages; sent in lowercase, left out when empty (CM
    /// judges the code itself).
    pub language: String,
    /// Where CM announces the final status (a `FINALSTATUS` webhook); none when `None`.
    pub webhook_url: Option<String>,
}

/// The body of a create, fields in the document's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    reference: &'a str,
    amount: i64,
    currency: &'a str,
    purchase_id: &'a str,
    description: &'a str,
    expires_at: &'a str,
    reusable: bool,
    size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhooks: Option<[Webhook<'a>; 1]>,
    return_url: &'a str,
}

#[derive(Serialize)]
struct Webhook<'a> {
    url: &'a str,
    events: [&'static str; 1],
}

impl CreateTransaction {
    /// The JSON body, or why it cannot be sent: each refusal names the document's field.
    pub(crate) fn to_body(&self) -> Result<Vec<u8>, CmError> {
        let invalid = |text: String| Err(CmError::Invalid(text));
        if !amount_in_range(self.amount_cents) {
            return invalid(format!(
                "an iDEAL QR amount must be 1 to {MAX_AMOUNT_CENTS} cents, not {} cents",
                self.amount_cents
            ));
        }
        if self.currency != "EUR" {
            return invalid(format!(
                "iDEAL QR takes EUR only, not currency `{}`",
                self.currency
            ));
        }
        text_field("reference", self.reference.as_str(), 255)?;
        text_field("description", &self.description, 255)?;
        text_field("purchaseId", &self.purchase_id, MAX_PURCHASE_ID)?;
        if chrono::DateTime::parse_from_rfc3339(&self.expires_at).is_err() {
            return invalid(format!(
                "expiresAt must be an RFC 3339 timestamp, not `{}`",
                self.expires_at
            ));
        }
        if !(100..=2000).contains(&self.size) {
            return invalid(format!(
                "size must be 100 to 2000 pixels, not {}",
                self.size
            ));
        }
        text_field("returnUrl", &self.return_url, 2000)?;
        http_url("returnUrl", &self.return_url)?;
        // Not judged here: the cycle passes a validated ISO 639-1 code, and CM knows the
        // languages it offers better than a list copied into this client would.
        let language = Some(self.language.trim().to_ascii_lowercase()).filter(|l| !l.is_empty());
        if let Some(url) = &self.webhook_url {
            http_url("webhook url", url)?;
        }
        let body = CreateBody {
            reference: self.reference.as_str(),
            amount: self.amount_cents,
            currency: &self.currency,
            purchase_id: &self.purchase_id,
            description: &self.description,
            expires_at: &self.expires_at,
            reusable: false,
            size: self.size,
            language,
            webhooks: self.webhook_url.as_deref().map(|url| {
                [Webhook {
                    url,
                    events: ["FINALSTATUS"],
                }]
            }),
            return_url: &self.return_url,
        };
        Ok(serde_json::to_vec(&body).expect("strings and integers serialize"))
    }
}

/// A text of 1..=`max` characters that is not only blanks.
fn text_field(name: &str, value: &str, max: usize) -> Result<(), CmError> {
    if value.trim().is_empty() {
        return Err(CmError::Invalid(format!(
            "{name} must not be empty for iDEAL QR"
        )));
    }
    let n = value.chars().count();
    if n > max {
        return Err(CmError::Invalid(format!(
            "{name} has {n} characters; iDEAL QR allows at most {max}"
        )));
    }
    Ok(())
}

fn http_url(name: &str, value: &str) -> Result<Url, CmError> {
    match Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err(CmError::Invalid(format!(
            "{name} must be an http(s) URL, not `{value}`"
        ))),
    }
}

/// Where an iDEAL QR transaction stands. `Unknown` is anything this client does not know,
/// which callers must treat as neither paid nor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrStatus {
    /// Created, can be paid.
    Open,
    /// Paid: the invoice is settled through this QR.
    Success,
    /// The payer cancelled.
    Cancelled,
    /// Not paid before `expiresAt`.
    Expired,
    /// Not paid, for a reason CM does not give.
    Failure,
    /// A status this client does not know; not proof of anything.
    Unknown,
}

impl QrStatus {
    /// The API's spelling (`OPEN`, ...), for storing and showing; `UNKNOWN` for
    /// [`QrStatus::Unknown`].
    pub fn as_str(self) -> &'static str {
        match self {
            QrStatus::Open => "OPEN",
            QrStatus::Success => "SUCCESS",
            QrStatus::Cancelled => "CANCELLED",
            QrStatus::Expired => "EXPIRED",
            QrStatus::Failure => "FAILURE",
            QrStatus::Unknown => "UNKNOWN",
        }
    }

    /// Reads a stored or answered status (any case); anything else is `Unknown`, so a
    /// new status from CM never becomes a payment by accident.
    pub fn parse(text: &str) -> QrStatus {
        [
            QrStatus::Open,
            QrStatus::Success,
            QrStatus::Cancelled,
            QrStatus::Expired,
            QrStatus::Failure,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
        .unwrap_or(QrStatus::Unknown)
    }

    /// Whether the status can no longer change, so polling it can stop.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            QrStatus::Success | QrStatus::Cancelled | QrStatus::Expired | QrStatus::Failure
        )
    }
}

impl<'de> Deserialize<'de> for QrStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(QrStatus::parse(&String::deserialize(d)?))
    }
}

/// A transaction as CM answers a create or a get. The request fields are echoed so the
/// caller can check that CM holds what was asked for (above all the amount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrTransaction {
    /// CM's transaction id (36 characters), the key for every later call.
    pub id: String,
    /// Where the transaction stands.
    pub status: QrStatus,
    /// The QR image address (`action.qrcode.url`); CM gives it only while `OPEN`.
    pub qr_url: Option<String>,
    /// The reference it was created with.
    pub reference: Option<String>,
    /// The echoed amount in cents; `None` when CM did not echo it as a JSON integer, so
    /// a float never turns into money.
    pub amount_cents: Option<i64>,
    /// The purchaseId it was created with.
    pub purchase_id: Option<String>,
    /// RFC 3339 expiry.
    pub expires_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionBody {
    id: String,
    status: QrStatus,
    #[serde(default)]
    action: Option<ActionBody>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default, deserialize_with = "integer_literal")]
    amount: Option<i64>,
    #[serde(default)]
    purchase_id: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct ActionBody {
    #[serde(default)]
    qrcode: Option<QrCodeBody>,
}

#[derive(Deserialize)]
struct QrCodeBody {
    #[serde(default)]
    url: Option<String>,
}

/// A JSON integer read from its literal; anything else (`12.0`, `"1200"`, `null`) is
/// `None`.
fn integer_literal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
    Ok(raw.and_then(|r| {
        let text = r.get();
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
    }))
}

impl From<TransactionBody> for QrTransaction {
    fn from(b: TransactionBody) -> Self {
        QrTransaction {
            id: b.id,
            status: b.status,
            qr_url: b.action.and_then(|a| a.qrcode).and_then(|q| q.url),
            reference: b.reference,
            amount_cents: b.amount,
            purchase_id: b.purchase_id,
            expires_at: b.expires_at,
        }
    }
}

impl IdealQrClient {
    /// A client for `settings.base_url`, with tokens from `settings.token_url` for
    /// `settings.client_id` (else `cm.client_id`). `secret` is resolved by the caller, so
    /// building a client reads no files; `throttle` is the payment link client's
    /// ([`super::CmClient::throttle`]) so the account's limits hold for both APIs; the
    /// timeout is `cm.timeout_seconds`.
    pub fn new(
        settings: &crate::config::IdealQr,
        cm: &crate::config::Cm,
        secret: SecretString,
        throttle: Arc<Throttle>,
        retry: RetryPolicy,
    ) -> Result<IdealQrClient, CmError> {
        let base = session::base_url("ideal_qr.base_url", &settings.base_url)?;
        let token_url = session::endpoint_url("ideal_qr.token_url", &settings.token_url)?;
        // A blank `client_id = ""` means "not set", as an operator clearing it would mean.
        let own = settings
            .client_id
            .as_deref()
            .filter(|id| !id.trim().is_empty());
        let (client_id, credentials) = match own {
            Some(id) => (id.to_string(), "ideal_qr.client_id and its client secret"),
            None => (
                cm.client_id.clone(),
                "cm.client_id and the client secret (used for iDEAL QR as ideal_qr.client_id is not set)",
            ),
        };
        let session = Session::new(
            token_url,
            client_id,
            secret,
            throttle,
            retry,
            cm.timeout_seconds,
            credentials,
        )?;
        Ok(IdealQrClient {
            inner: Arc::new(Inner { base, session }),
        })
    }

    /// Where this client gets its tokens (the URL it really uses, also for an embedded
    /// sandbox), for `check` to name.
    pub fn token_url(&self) -> String {
        self.inner.session.token_url().to_string()
    }

    /// Obtains a token (or reuses the cached one), so `check` can tell whether the iDEAL
    /// QR credentials work before a cycle depends on them.
    pub async fn check_credentials(&self) -> Result<(), CmError> {
        self.inner.session.token().await.map(|_| ())
    }

    /// Creates a transaction (`POST .../idealqr/v1/transactions`, answered `201`). Not
    /// idempotent: sent again only when CM surely did not act on it (`429`, `503`, `408`,
    /// no connection); any other failure comes back with [`CmError::maybe_applied`] set,
    /// so a lost answer never becomes a second QR for the same invoice.
    pub async fn create_transaction(
        &self,
        req: &CreateTransaction,
    ) -> Result<QrTransaction, CmError> {
        let body = req.to_body()?;
        let url = session::join(&self.inner.base, &TRANSACTIONS);
        let answer = self
            .inner
            .session
            .api(Method::POST, &url, Payload::Json(&body), false)
            .await?;
        self.transaction(&answer)
    }

    /// Reads a transaction (`GET .../transactions/<id>`): the only proof of payment the
    /// cycle accepts, since a webhook carries no status. An unknown id is a
    /// [`CmError::Permanent`] with status 404 ([`CmError::is_not_found`]).
    pub async fn get_transaction(&self, id: &str) -> Result<QrTransaction, CmError> {
        if id.trim().is_empty() {
            return Err(CmError::Invalid(
                "an iDEAL QR transaction id must not be empty".into(),
            ));
        }
        let mut segments = TRANSACTIONS.to_vec();
        segments.push(id);
        let url = session::join(&self.inner.base, &segments);
        let answer = self
            .inner
            .session
            .api(Method::GET, &url, Payload::Empty, true)
            .await?;
        self.transaction(&answer)
    }

    /// GETs the QR image at `url` (the address CM returned; no bearer token is sent to
    /// it, as it may be on another host), at most [`MAX_QR_PNG`] bytes, and only a PNG,
    /// so the mail never embeds something else. Throttled and retried like the API.
    pub async fn fetch_qr_png(&self, url: &str) -> Result<Vec<u8>, CmError> {
        let url = http_url("the QR image URL", url)?;
        let answer = self
            .inner
            .session
            .send(
                &Method::GET,
                &url,
                &Payload::Empty,
                None,
                true,
                Some(MAX_QR_PNG),
            )
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(CmError::Permanent {
                status: answer.status,
                message: self.inner.session.message(&answer.body),
            });
        }
        if !answer.body.starts_with(&PNG_SIGNATURE) {
            return Err(CmError::Protocol {
                status: answer.status,
                message: "the QR image is not a PNG".into(),
            });
        }
        Ok(answer.body)
    }

    /// A transaction from a success answer; one without an id is a protocol error (a
    /// create that got one did happen: [`CmError::maybe_applied`] says so).
    fn transaction(&self, answer: &Answer) -> Result<QrTransaction, CmError> {
        let body: TransactionBody = self.inner.session.decode(answer)?;
        if body.id.trim().is_empty() {
            return Err(CmError::Protocol {
                status: answer.status,
                message: "the transaction has no id".into(),
            });
        }
        Ok(body.into())
    }
}

/// The `purchaseId` of an invoice revision: at most 35 characters of ASCII letters,
/// digits and dashes, ending in `-r<revision>`. The reference is kept as it is when it
/// fits and is already in that alphabet; otherwise it is cleaned, shortened and followed
/// by 10 hex digits of a SHA-256 of the full reference, so that two long references with
/// a common start still differ. Stable: the same input always gives the same id, so it
/// can be derived again instead of stored.
pub fn purchase_id(invoice_reference: &str, revision: i64) -> String {
    let suffix = format!("r{revision}");
    let mut clean = String::with_capacity(invoice_reference.len());
    for c in invoice_reference.chars() {
        if c.is_ascii_alphanumeric() {
            clean.push(c);
        } else if !clean.is_empty() && !clean.ends_with('-') {
            clean.push('-');
        }
    }
    while clean.ends_with('-') {
        clean.pop();
    }
    if !clean.is_empty()
        && clean == invoice_reference
        && clean.len() + 1 + suffix.len() <= MAX_PURCHASE_ID
    {
        return format!("{clean}-{suffix}");
    }
    let digest = Sha256::digest(invoice_reference.as_bytes());
    let hash = &hex::encode(digest)[..10];
    let room = MAX_PURCHASE_ID.saturating_sub(suffix.len() + hash.len() + 2);
    clean.truncate(room); // ASCII only: any byte index is a char boundary
    while clean.ends_with('-') {
        clean.pop();
    }
    let parts: Vec<&str> = [clean.as_str(), hash, &suffix]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    parts.join("-")
}

/// Whether an amount can have a QR: the document allows 1..=99,999,999 cents. The cycle
/// asks first, to skip the QR (and say so) instead of failing the invoice.
pub fn amount_in_range(amount_cents: i64) -> bool {
    (1..=MAX_AMOUNT_CENTS).contains(&amount_cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CreateTransaction {
        CreateTransaction {
            reference: InvoiceRef::parse("INV-1").unwrap(),
            amount_cents: 1200,
            currency: "EUR".into(),
            purchase_id: "INV-1-r1".into(),
            description: "Invoice INV-1".into(),
            expires_at: "2024-05-15T00:00:00+00:00".into(),
            size: 300,
            return_url: "https://merchant.example/paid".into(),
            language: "NL".into(),
            webhook_url: None,
        }
    }

    #[test]
    fn the_body_follows_the_document() {
        let body = String::from_utf8(sample().to_body().unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"reference":"INV-1","amount":1200,"currency":"EUR","purchaseId":"INV-1-r1","description":"Invoice INV-1","expiresAt":"2024-05-15T00:00:00+00:00","reusable":false,"size":300,"language":"nl","returnUrl":"https://merchant.example/paid"}"#
        );
        let mut hooked = sample();
        hooked.webhook_url = Some("https://m.example/cb?x=1".into());
        hooked.language = String::new();
        let body = String::from_utf8(hooked.to_body().unwrap()).unwrap();
        assert!(
            body.contains(
                r#""webhooks":[{"url":"https://m.example/cb?x=1","events":["FINALSTATUS"]}]"#
            ),
            "{body}"
        );
        assert!(!body.contains("language"), "{body}");
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn what_the_document_forbids_is_refused() {
        type Change = fn(&mut CreateTransaction);
        let cases: Vec<(&str, Change)> = vec![
            ("amount", |t| t.amount_cents = 0),
            ("amount", |t| t.amount_cents = 100_000_000),
            ("EUR", |t| t.currency = "USD".into()),
            ("description", |t| t.description = String::new()),
            ("description", |t| t.description = "é".repeat(256)),
            ("purchaseId", |t| t.purchase_id = "p".repeat(36)),
            ("expiresAt", |t| t.expires_at = "2024-05-15".into()),
            ("size", |t| t.size = 99),
            ("size", |t| t.size = 2001),
            ("returnUrl", |t| t.return_url = "/paid".into()),
            ("webhook", |t| t.webhook_url = Some("cb".into())),
        ];
        for (field, change) in cases {
            let mut t = sample();
            change(&mut t);
            match t.to_body() {
                Err(CmError::Invalid(m)) => assert!(m.contains(field), "{field}: {m}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut edge = sample();
        edge.description = "é".repeat(255);
        edge.amount_cents = MAX_AMOUNT_CENTS;
        edge.size = 2000;
        assert!(edge.to_body().is_ok());
    }

    #[test]
    fn statuses_read_and_unknown_is_not_final() {
        for s in ["OPEN", "SUCCESS", "CANCELLED", "EXPIRED", "FAILURE"] {
            assert_eq!(QrStatus::parse(s).as_str(), s);
        }
        assert_eq!(QrStatus::parse("success"), QrStatus::Success);
        assert_eq!(QrStatus::parse("REFUNDED"), QrStatus::Unknown);
        assert!(!QrStatus::Unknown.is_final());
        assert!(!QrStatus::Open.is_final());
        assert!(QrStatus::Expired.is_final());
    }

    #[test]
    fn answers_read_integer_amounts_only() {
        let read = |json: &str| -> QrTransaction {
            serde_json::from_str::<TransactionBody>(json)
                .unwrap()
                .into()
        };
        let t = read(
            r#"{"id":"x","status":"OPEN","amount":1200,"action":{"qrcode":{"id":"q","url":"https://q.example/q.png"}}}"#,
        );
        assert_eq!(t.amount_cents, Some(1200));
        assert_eq!(t.qr_url.as_deref(), Some("https://q.example/q.png"));
        assert_eq!(
            read(r#"{"id":"x","status":"OPEN","amount":12.0}"#).amount_cents,
            None
        );
        assert_eq!(
            read(r#"{"id":"x","status":"OPEN","amount":"1200"}"#).amount_cents,
            None
        );
        let t = read(r#"{"id":"x","status":"SUCCESS","action":null}"#);
        assert_eq!((t.status, t.qr_url), (QrStatus::Success, None));
    }
}
