//! The CM API clients: the Payment Link API (OAuth token,
//! create, update / deactivate, get and status of payment links) in [`CmClient`], and the
//! iDEAL QR API in [`IdealQrClient`] (both summarised in ARCHITECTURE.md).
//!
//! It owns how requests reach CM: the token cache, the shared throttle
//! ([`Throttle`]: one semaphore and one rate limiter per account, shared by both clients),
//! the retry policy ([`RetryPolicy`]) and the sorting of failures into transient,
//! permanent and credential errors ([`CmError`]). It never decides what an invoice needs
//! (that is the cycle's job), never touches the database, and never writes the client
//! secret or a bearer token into an error or a log line: logs carry method, path, status
//! and attempt, never headers, and every text taken from a response is scrubbed of the
//! secret.

#![warn(missing_docs)]

mod error;
pub mod idealqr;
mod links;
pub mod retry;
mod session;
pub mod throttle;
mod token;

use std::sync::Arc;

use reqwest::{Method, Url};
use secrecy::SecretString;

pub use error::CmError;
pub use idealqr::{CreateTransaction, IdealQrClient, QrStatus, QrTransaction};
pub use links::{CreateLink, LinkStatus, PaymentLink};
pub use retry::RetryPolicy;
pub use throttle::Throttle;

use crate::domain::LinkRef;
use session::{Payload, Session};

/// A handle on the CM API for one account. Cheap to clone (an ``Arc`` inside), so one cycle
/// can run many requests at once through the same token, throttle and connection pool.
#[derive(Clone)]
pub struct CmClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    session: Session,
}

impl std::fmt::Debug for CmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmClient")
            .field("base", &self.inner.base.as_str())
            .field("client_id", &self.inner.session.client_id())
            .field("throttle", self.inner.session.throttle())
            .field("retry", self.inner.session.retry())
            .finish_non_exhaustive()
    }
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
        let base = session::base_url("cm.base_url", &settings.base_url)?;
        let session = Session::new(
            session::join(&base, &["auth", "v1", "token"]),
            settings.client_id.clone(),
            secret,
            throttle,
            retry,
            settings.timeout_seconds,
            "cm.client_id and the client secret",
        )?;
        Ok(CmClient {
            inner: Arc::new(Inner { base, session }),
        })
    }

    /// The throttle this client sends through, to share it with another client of the
    /// same account.
    pub fn throttle(&self) -> Arc<Throttle> {
        self.inner.session.throttle().clone()
    }

    /// Where this client gets its tokens (the URL it really uses, also for an embedded
    /// sandbox), for `check` to name.
    pub fn token_url(&self) -> String {
        self.inner.session.token_url().to_string()
    }

    /// Obtains a token (or reuses the cached one), so `check` can tell whether the
    /// credentials work before a cycle depends on them.
    pub async fn check_credentials(&self) -> Result<(), CmError> {
        self.inner.session.token().await.map(|_| ())
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
    pub async fn deactivate_link(&self, reference: &LinkRef) -> Result<PaymentLink, CmError> {
        self.update_link(reference, &serde_json::json!({ "active": false }))
            .await
    }

    /// Changes fields of a link (`PATCH /paymentlink/v1/<ref>`); `changes` holds the
    /// fields of the create body and/or `active`. Retried freely: setting values twice
    /// has the effect of setting them once.
    pub async fn update_link(
        &self,
        reference: &LinkRef,
        changes: &serde_json::Value,
    ) -> Result<PaymentLink, CmError> {
        let body = serde_json::to_vec(changes).expect("a JSON value serializes");
        let answer = self
            .api(
                Method::PATCH,
                &["paymentlink", "v1", reference.as_str()],
                Payload::Json(&body),
                true,
            )
            .await?;
        self.decode(&answer)
    }

    /// Reads a link (`GET /paymentlink/v1/<ref>`); an unknown reference is a
    /// [`CmError::Permanent`] with status 404 ([`CmError::is_not_found`]).
    pub async fn get_link(&self, reference: &LinkRef) -> Result<PaymentLink, CmError> {
        let answer = self
            .api(
                Method::GET,
                &["paymentlink", "v1", reference.as_str()],
                Payload::Empty,
                true,
            )
            .await?;
        self.decode(&answer)
    }

    /// The payment status of a link (`GET /paymentlink/v1/<ref>/status`), the only proof
    /// of payment the cycle accepts (a callback merely says "ask").
    pub async fn link_status(&self, reference: &LinkRef) -> Result<LinkStatus, CmError> {
        let answer = self
            .api(
                Method::GET,
                &["paymentlink", "v1", reference.as_str(), "status"],
                Payload::Empty,
                true,
            )
            .await?;
        let body: links::StatusBody = self.decode(&answer)?;
        Ok(body.status)
    }

    /// An authenticated call to `segments` under the base URL.
    async fn api(
        &self,
        method: Method,
        segments: &[&str],
        payload: Payload<'_>,
        idempotent: bool,
    ) -> Result<session::Answer, CmError> {
        let url = session::join(&self.inner.base, segments);
        self.inner
            .session
            .api(method, &url, payload, idempotent)
            .await
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        answer: &session::Answer,
    ) -> Result<T, CmError> {
        self.inner.session.decode(answer)
    }
}
