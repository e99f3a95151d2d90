//! How requests reach one CM API, shared by the payment link and the iDEAL QR clients:
//! the OAuth token (fetched with client credentials, cached, refreshed once on `401`),
//! the shared throttle, the retry policy, and the reading of answers into [`CmError`]s.
//!
//! It owns the request loop and the scrubbing of texts that come from outside. It never
//! knows an API's paths or bodies (the clients build URLs and payloads) and never writes
//! the client secret or a bearer token into an error or a log line.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::retry::{self, Decision, Outcome};
use super::token::{Token, TokenCache};
use super::{CmError, RetryPolicy, Throttle};

/// The longest piece of a response body quoted in an error.
const MAX_MESSAGE: usize = 300;

/// The body of a token answer.
#[derive(Deserialize)]
struct TokenBody {
    access_token: SecretString,
    token_type: String,
    expires_in: u64,
}

/// An answer that ends the retrying: a success, or a status that retrying cannot change.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What a request carries.
pub(crate) enum Payload<'a> {
    Empty,
    Json(&'a [u8]),
    /// The client-credentials form of a token request.
    Token,
}

/// The sending half of one CM API client: one token, one retry policy, and the throttle
/// it shares with every other client of the same account.
pub(crate) struct Session {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    secret: SecretString,
    throttle: Arc<Throttle>,
    retry: RetryPolicy,
    token: TokenCache,
    /// The settings an operator must check when the credentials are refused, in words
    /// (`cm.client_id and the client secret`).
    credentials: &'static str,
}

/// An http(s) URL from a setting that other paths are appended to, with a trailing slash
/// so that appending keeps its path. `key` names the setting in the message.
pub(crate) fn base_url(key: &str, value: &str) -> Result<Url, CmError> {
    let mut base = endpoint_url(key, value)?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// An http(s) URL from a setting, used as it is (a token endpoint).
pub(crate) fn endpoint_url(key: &str, value: &str) -> Result<Url, CmError> {
    let url = Url::parse(value.trim()).map_err(|e| {
        CmError::Invalid(format!(
            "{key} `{value}` is not a URL ({e}); an embedded sandbox must be started and its URL used"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(CmError::Invalid(format!(
            "{key} `{value}` must be an http(s) URL"
        )));
    }
    Ok(url)
}

/// `base` with `segments` appended, each escaped as one path segment.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("checked by base_url: the base URL can be a base")
        .pop_if_empty()
        .extend(segments);
    url
}

impl Session {
    /// A session that fetches its token from `token_url` with `client_id` and `secret`,
    /// and gives every request `timeout_seconds` (at least one).
    pub fn new(
        token_url: Url,
        client_id: String,
        secret: SecretString,
        throttle: Arc<Throttle>,
        retry: RetryPolicy,
        timeout_seconds: u64,
        credentials: &'static str,
    ) -> Result<Session, CmError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs(timeout_seconds.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invoice-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CmError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Session {
            http,
            token_url,
            client_id,
            secret,
            throttle,
            retry,
            token: TokenCache::default(),
            credentials,
        })
    }

    /// The client id the token is requested with (not a secret).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Where tokens come from.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The shared throttle.
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// An authenticated API call: a cached token, and on `401` one retry with a fresh one.
    pub async fn api(
        &self,
        method: Method,
        url: &Url,
        payload: Payload<'_>,
        idempotent: bool,
    ) -> Result<Answer, CmError> {
        let mut refreshed = false;
        loop {
            // The token before the throttle permit: a token fetch needs a permit of its
            // own, and requests holding every permit while waiting for it would deadlock.
            let token = self.token().await?;
            let answer = self
                .send(&method, url, &payload, Some(&token), idempotent, None)
                .await?;
            match answer.status {
                200..=299 => return Ok(answer),
                401 if !refreshed => {
                    // The token expired or was revoked early: the request was refused
                    // unseen, so sending it again is safe even for a create.
                    self.token.invalidate(token.id).await;
                    refreshed = true;
                }
                401 => {
                    return Err(CmError::Auth {
                        client_id: self.client_id.clone(),
                        message: format!(
                            "CM refused a freshly issued token: {}",
                            self.message(&answer.body)
                        ),
                    });
                }
                // Only CM's own JSON answer to an authenticated request is a verdict on
                // the invoice or the link; a redirect or a gateway's page is not.
                status if (400..500).contains(&status) && is_cm_json(&answer.body) => {
                    return Err(CmError::Permanent {
                        status,
                        message: self.message(&answer.body),
                    });
                }
                status => return Err(self.not_cm(url, status, &answer.body)),
            }
        }
    }

    /// A fault of the way to CM: an answer that is not CM's (a redirect, which is never
    /// followed; a gateway's error page; a body that is not CM's JSON). It defers the
    /// work and never decides anything: CM did not see, or did not answer, the request.
    fn not_cm(&self, url: &Url, status: u16, body: &[u8]) -> CmError {
        let what = if (300..400).contains(&status) {
            "a redirect (never followed: check the URL, e.g. https:// rather than http://)"
                .to_string()
        } else if *url == self.token_url {
            // A token endpoint's body may echo the form it got, secret included: never
            // quoted, in any spelling.
            "an answer that is not a token".to_string()
        } else {
            format!(
                "an answer that is not CM's JSON ({})",
                truncate(&self.scrub(String::from_utf8_lossy(body).trim()), 80)
            )
        };
        CmError::Transient {
            message: format!(
                "{} answered HTTP {status} with {what}; nothing was decided, the work is left for the next cycle",
                url_without_query(url)
            ),
            maybe_applied: false,
        }
    }

    /// The cached token, or a new one. Only refused credentials are [`CmError::Auth`];
    /// every other failure of the token endpoint (a 404, a redirect, a gateway's page,
    /// an answer without a token) is a transient fault that defers the work, never a
    /// verdict on an invoice or a link.
    pub async fn token(&self) -> Result<Token, CmError> {
        self.token
            .get(|| async {
                self.fetch_token().await.map_err(|e| match e {
                    CmError::Auth { .. } => e,
                    CmError::Transient { message, .. } => {
                        CmError::NoToken(format!("the token endpoint failed: {message}"))
                    }
                    other => CmError::NoToken(format!(
                        "the token endpoint {} failed: {other}",
                        url_without_query(&self.token_url)
                    )),
                })
            })
            .await
    }

    /// `POST <token_url>` with the client credentials as a form.
    async fn fetch_token(&self) -> Result<(SecretString, Duration), CmError> {
        let answer = self
            .send(
                &Method::POST,
                &self.token_url,
                &Payload::Token,
                None,
                true,
                None,
            )
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
            401 => Err(CmError::Auth {
                client_id: self.client_id.clone(),
                message: format!(
                    "HTTP {}: {}; check {}",
                    answer.status,
                    self.message(&answer.body),
                    self.credentials
                ),
            }),
            400 if is_refused_client(&answer.body) => Err(CmError::Auth {
                client_id: self.client_id.clone(),
                message: format!(
                    "HTTP 400: {}; check {}",
                    self.message(&answer.body),
                    self.credentials
                ),
            }),
            status => Err(self.not_cm(&self.token_url, status, &answer.body)),
        }
    }

    /// Sends one request under the throttle, retrying per the policy. Returns the first
    /// answer that retrying cannot change (2xx or a final 4xx), or a transient error.
    /// With `limit`, a body longer than that many bytes is not read further and the
    /// request fails with [`CmError::Protocol`] (a download that must stay small).
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        payload: &Payload<'_>,
        token: Option<&Token>,
        idempotent: bool,
        limit: Option<usize>,
    ) -> Result<Answer, CmError> {
        let path = url.path();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = {
                let _permit = self.throttle.acquire().await;
                let mut req = self.http.request(method.clone(), url.clone());
                req = match payload {
                    Payload::Empty => req,
                    Payload::Json(body) => req
                        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(body.to_vec()),
                    Payload::Token => req.form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", self.client_id.as_str()),
                        ("client_secret", self.secret.expose_secret()),
                    ]),
                };
                if let Some(token) = token {
                    req = req.bearer_auth(token.value.expose_secret());
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let wait = retry::retry_after(resp.headers(), SystemTime::now());
                        match read_body(resp, limit).await {
                            Ok(Some(body)) => Ok((status, wait, body)),
                            Ok(None) => {
                                return Err(CmError::Protocol {
                                    status,
                                    message: format!(
                                        "{method} {path}: the answer is longer than {} bytes",
                                        limit.unwrap_or(usize::MAX)
                                    ),
                                });
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            };
            // An answer, or a failure within the timeout, is progress for the watchdog.
            crate::progress::beat();
            match &result {
                Ok((status, _, _)) => crate::metrics::cm_request(Some(*status), false, false),
                Err(e) => crate::metrics::cm_request(None, e.is_timeout(), e.is_connect()),
            }
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
            match retry::decide(&self.retry, &outcome, attempt, idempotent) {
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
    pub fn decode<T: DeserializeOwned>(&self, answer: &Answer) -> Result<T, CmError> {
        serde_json::from_slice(&answer.body).map_err(|e| CmError::Protocol {
            status: answer.status,
            message: self.scrub(&e.to_string()),
        })
    }

    /// CM's explanation of a refusal: its `message` / `error` field, else the body text,
    /// truncated and scrubbed.
    pub fn message(&self, body: &[u8]) -> String {
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
    pub fn scrub(&self, text: &str) -> String {
        crate::redact::scrub(text, [self.secret.expose_secret()])
    }
}

/// Whether a body is CM's own JSON (an object), not a gateway's page or a proxy's text.
fn is_cm_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object())
}

/// Whether a token endpoint's `400` is OAuth's refusal of the client (RFC 6749 5.2:
/// `invalid_client` / `unauthorized_client`), as opposed to a malformed exchange.
fn is_refused_client(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        matches!(
            v.get("error").and_then(|e| e.as_str()),
            Some("invalid_client" | "unauthorized_client")
        )
    })
}

/// A URL for a message: scheme, host, port and path, never a query (which could carry
/// anything).
fn url_without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The whole body, or `None` when it is longer than `limit` (read no further than that).
async fn read_body(
    mut resp: reqwest::Response,
    limit: Option<usize>,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let Some(limit) = limit else {
        return resp.bytes().await.map(|b| Some(b.to_vec()));
    };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}
