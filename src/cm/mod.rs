//! The CM Payment Link API client (`cm-payment-link-api.txt`): OAuth token, create,
//! update / deactivate, get and status of payment links.
//!
//! It owns how requests reach CM: the token cache, the shared throttle
//! ([`Throttle`]: one semaphore and one rate limiter per account), the retry policy
//! ([`RetryPolicy`]) and the sorting of failures into transient, permanent and
//! credential errors ([`CmError`]). It never decides what an invoice needs (that is the
//! cycle's job), never touches the database, and never writes the client secret or a
//! bearer token into an error or a log line: logs carry method, path, status and attempt,
//! never headers, and every text taken from a response is scrubbed of the secret.

#![warn(missing_docs)]

pub mod connection;
mod error;
mod links;
pub mod retry;
pub mod throttle;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use connection::CmConnection;
pub use error::CmError;
pub use links::{CreateLink, LinkStatus, PaymentLink};
pub use retry::RetryPolicy;
pub use throttle::Throttle;

use retry::{Decision, Outcome};
use token::{Token, TokenCache};

/// The longest piece of a response body quoted in an error.
const MAX_MESSAGE: usize = 300;

/// A handle on the CM API for one account. Cheap to clone (an `Arc` inside), so one cycle
/// can run many requests at once through the same token, throttle and connection pool.
#[derive(Clone)]
pub struct CmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    secret: SecretString,
    throttle: Arc<Throttle>,
    retry: RetryPolicy,
    token: TokenCache,
}

impl std::fmt::Debug for CmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmClient")
            .field("base", &self.inner.base.as_str())
            .field("client_id", &self.inner.client_id)
            .field("throttle", &self.inner.throttle)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// The body of a token answer.
#[derive(Deserialize)]
struct TokenBody {
    access_token: SecretString,
    token_type: String,
    expires_in: u64,
}

/// An answer that ends the retrying: a success, or a status that retrying cannot change.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

enum Payload<'a> {
    Empty,
    Json(&'a [u8]),
    Token,
}

impl CmClient {
    /// A client for the account of `settings`, with its own throttle and the default
    /// retry policy. `secret` is passed in (resolved by the caller from
    /// `settings.client_secret_source()`) so that building a client never reads files or
    /// the environment.
    pub fn new(settings: &crate::config::Cm, secret: SecretString) -> Result<CmClient, CmError> {
        CmClient::with_parts(
            settings,
            secret,
            Arc::new(Throttle::from_settings(settings)),
            RetryPolicy::default(),
        )
    }

    /// A client sharing `throttle` with other clients of the same account (iDEAL QR), and
    /// with a chosen retry policy (tests shorten the waits).
    pub fn with_parts(
        settings: &crate::config::Cm,
        secret: SecretString,
        throttle: Arc<Throttle>,
        retry: RetryPolicy,
    ) -> Result<CmClient, CmError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut base = Url::parse(settings.base_url.trim()).map_err(|e| {
            CmError::Invalid(format!(
                "cm.base_url `{}` is not a URL ({e}); an embedded sandbox must be started and its URL used",
                settings.base_url
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(CmError::Invalid(format!(
                "cm.base_url `{}` must be an http(s) URL",
                settings.base_url
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let timeout = Duration::from_secs(settings.timeout_seconds.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invoice-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CmError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(CmClient {
            inner: Arc::new(Inner {
                http,
                base,
                client_id: settings.client_id.clone(),
                secret,
                throttle,
                retry,
                token: TokenCache::default(),
            }),
        })
    }

    /// The throttle this client sends through, to share it with another client of the
    /// same account.
    pub fn throttle(&self) -> Arc<Throttle> {
        self.inner.throttle.clone()
    }

    /// Obtains a token (or reuses the cached one), so `check` can tell whether the
    /// credentials work before a cycle depends on them.
    pub async fn check_credentials(&self) -> Result<(), CmError> {
        self.token().await.map(|_| ())
    }

    /// Creates a payment link (`POST /paymentlink/v1.0`, answered `201`). Not idempotent:
    /// it is only sent again when CM certainly did not act on it (`429`, `503`, `408`, no
    /// connection); any other failure is returned with [`CmError::maybe_applied`] set, so
    /// a lost answer never becomes a second link for the same invoice.
    pub async fn create_link(&self, link: &CreateLink) -> Result<PaymentLink, CmError> {
        let body = link.to_body()?;
        let answer = self
            .api(
                Method::POST,
                &["paymentlink", "v1.0"],
                Payload::Json(&body),
                false,
            )
            .await?;
        self.decode(&answer)
    }

    /// Deactivates a link (`PATCH /paymentlink/v1/<ref>` with `{"active": false}`), when
    /// its invoice was paid elsewhere or replaced. Idempotent, so it is retried freely.
    pub async fn deactivate_link(&self, reference: &str) -> Result<PaymentLink, CmError> {
        self.update_link(reference, &serde_json::json!({ "active": false }))
            .await
    }

    /// Changes fields of a link (`PATCH /paymentlink/v1/<ref>`); `changes` holds the
    /// fields of the create body and/or `active`. Retried freely: setting values twice
    /// has the effect of setting them once.
    pub async fn update_link(
        &self,
        reference: &str,
        changes: &serde_json::Value,
    ) -> Result<PaymentLink, CmError> {
        let body = serde_json::to_vec(changes).expect("a JSON value serializes");
        let answer = self
            .api(
                Method::PATCH,
                &["paymentlink", "v1", reference],
                Payload::Json(&body),
                true,
            )
            .await?;
        self.decode(&answer)
    }

    /// Reads a link (`GET /paymentlink/v1/<ref>`); an unknown reference is a
    /// [`CmError::Permanent`] with status 404 ([`CmError::is_not_found`]).
    pub async fn get_link(&self, reference: &str) -> Result<PaymentLink, CmError> {
        let answer = self
            .api(
                Method::GET,
                &["paymentlink", "v1", reference],
                Payload::Empty,
                true,
            )
            .await?;
        self.decode(&answer)
    }

    /// The payment status of a link (`GET /paymentlink/v1/<ref>/status`), the only proof
    /// of payment the cycle accepts (a callback merely says "ask").
    pub async fn link_status(&self, reference: &str) -> Result<LinkStatus, CmError> {
        let answer = self
            .api(
                Method::GET,
                &["paymentlink", "v1", reference, "status"],
                Payload::Empty,
                true,
            )
            .await?;
        let body: links::StatusBody = self.decode(&answer)?;
        Ok(body.status)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .expect("checked in the constructor: the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// An authenticated API call: a cached token, and on `401` one retry with a fresh one.
    async fn api(
        &self,
        method: Method,
        segments: &[&str],
        payload: Payload<'_>,
        idempotent: bool,
    ) -> Result<Answer, CmError> {
        let url = self.url(segments);
        let mut refreshed = false;
        loop {
            // The token before the throttle permit: a token fetch needs a permit of its
            // own, and requests holding every permit while waiting for it would deadlock.
            let token = self.token().await?;
            let answer = self
                .send(&method, &url, &payload, Some(&token), idempotent)
                .await?;
            match answer.status {
                200..=299 => return Ok(answer),
                401 if !refreshed => {
                    // The token expired or was revoked early: the request was refused
                    // unseen, so sending it again is safe even for a create.
                    self.inner.token.invalidate(token.id).await;
                    refreshed = true;
                }
                401 => {
                    return Err(CmError::Auth {
                        client_id: self.inner.client_id.clone(),
                        message: format!(
                            "CM refused a freshly issued token: {}",
                            self.message(&answer.body)
                        ),
                    });
                }
                status => {
                    return Err(CmError::Permanent {
                        status,
                        message: self.message(&answer.body),
                    });
                }
            }
        }
    }

    async fn token(&self) -> Result<Token, CmError> {
        self.inner.token.get(|| self.fetch_token()).await
    }

    /// `POST /auth/v1/token` with the client credentials as a form.
    async fn fetch_token(&self) -> Result<(SecretString, Duration), CmError> {
        let url = self.url(&["auth", "v1", "token"]);
        let answer = self
            .send(&Method::POST, &url, &Payload::Token, None, true)
            .await?;
        match answer.status {
            200..=299 => {
                // Not `decode`: serde's message may quote a value, and here a value may be
                // the token.
                let body: TokenBody =
                    serde_json::from_slice(&answer.body).map_err(|e| CmError::Protocol {
                        status: answer.status,
                        message: format!(
                            "the token answer lacks access_token, token_type or expires_in (line {}, column {})",
                            e.line(),
                            e.column()
                        ),
                    })?;
                if !body.token_type.eq_ignore_ascii_case("bearer") {
                    return Err(CmError::Protocol {
                        status: answer.status,
                        message: format!(
                            "token_type is `{}`, not `bearer`",
                            self.scrub(&body.token_type)
                        ),
                    });
                }
                tracing::debug!(expires_in = body.expires_in, "CM token obtained");
                Ok((body.access_token, Duration::from_secs(body.expires_in)))
            }
            400 | 401 | 403 => Err(CmError::Auth {
                client_id: self.inner.client_id.clone(),
                message: format!(
                    "HTTP {}: {}; check cm.client_id and the client secret",
                    answer.status,
                    self.message(&answer.body)
                ),
            }),
            status => Err(CmError::Permanent {
                status,
                message: self.message(&answer.body),
            }),
        }
    }

    /// Sends one request under the throttle, retrying per the policy. Returns the first
    /// answer that retrying cannot change (2xx or a final 4xx), or a transient error.
    async fn send(
        &self,
        method: &Method,
        url: &Url,
        payload: &Payload<'_>,
        token: Option<&Token>,
        idempotent: bool,
    ) -> Result<Answer, CmError> {
        let inner = &*self.inner;
        let path = url.path();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = {
                let _permit = inner.throttle.acquire().await;
                let mut req = inner.http.request(method.clone(), url.clone());
                req = match payload {
                    Payload::Empty => req,
                    Payload::Json(body) => req
                        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(body.to_vec()),
                    Payload::Token => req.form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", inner.client_id.as_str()),
                        ("client_secret", inner.secret.expose_secret()),
                    ]),
                };
                if let Some(token) = token {
                    req = req.bearer_auth(token.value.expose_secret());
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let wait = retry::retry_after(resp.headers(), SystemTime::now());
                        resp.bytes().await.map(|body| (status, wait, body.to_vec()))
                    }
                    Err(e) => Err(e),
                }
            };
            let outcome = match result {
                Ok((status, wait, body)) => {
                    tracing::debug!(%method, path, status, attempt, "CM request");
                    if !retry::retryable_status(status) {
                        return Ok(Answer { status, body });
                    }
                    Outcome::Status {
                        status,
                        retry_after: wait,
                    }
                }
                Err(e) => {
                    let outcome = if e.is_connect() {
                        Outcome::Connect
                    } else if e.is_timeout() {
                        Outcome::Timeout
                    } else {
                        Outcome::Broken
                    };
                    tracing::debug!(%method, path, attempt, error = %self.transport_error(&e), "CM request failed");
                    outcome
                }
            };
            match retry::decide(&inner.retry, &outcome, attempt, idempotent) {
                Decision::RetryAfter(wait) => tokio::time::sleep(wait).await,
                Decision::GiveUp => {
                    let what = match &outcome {
                        Outcome::Status { status, .. } => format!("HTTP {status}"),
                        Outcome::Connect => "cannot connect".into(),
                        Outcome::Timeout => "no answer in time".into(),
                        Outcome::Broken => "connection broken".into(),
                    };
                    return Err(CmError::Transient {
                        message: format!(
                            "{method} {path}: {what} after {attempt} attempt{}",
                            if attempt == 1 { "" } else { "s" }
                        ),
                        maybe_applied: !outcome.surely_not_applied(),
                    });
                }
            }
        }
    }

    /// Reads a success body; a body that does not fit is a protocol error (and a create
    /// that returned one did happen — [`CmError::maybe_applied`] says so).
    fn decode<T: DeserializeOwned>(&self, answer: &Answer) -> Result<T, CmError> {
        serde_json::from_slice(&answer.body).map_err(|e| CmError::Protocol {
            status: answer.status,
            message: self.scrub(&e.to_string()),
        })
    }

    /// CM's explanation of a refusal: its `message` / `error` field, else the body text,
    /// truncated and scrubbed.
    fn message(&self, body: &[u8]) -> String {
        let text = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                ["message", "error_description", "error"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        let text = if text.is_empty() {
            "(no message)".to_string()
        } else {
            text
        };
        self.scrub(&truncate(&text, MAX_MESSAGE))
    }

    /// A transport error with its causes, scrubbed.
    fn transport_error(&self, e: &reqwest::Error) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.scrub(&text)
    }

    /// Removes the client secret from a text that came from outside (a response could
    /// echo the form it got). Bearer tokens never reach texts: only response bodies and
    /// transport errors do, and neither carries request headers.
    fn scrub(&self, text: &str) -> String {
        let secret = self.inner.secret.expose_secret();
        if !secret.is_empty() && text.contains(secret) {
            text.replace(secret, "[redacted]")
        } else {
            text.to_string()
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}
