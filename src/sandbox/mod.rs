//! The CM simulator (README, *The CM sandbox*): a local HTTP server that speaks CM's Payment
//! Link API (OAuth token, create / update / get / status,
//! merchant callback) and CM's iDEAL QR API (its
//! own OAuth token, create / get of transactions, QR images, webhooks), with their
//! validation and status codes.
//!
//! It owns: the routes and their validation, the simulated conditions (latency, a 503
//! failure rate, a 429 rate limit, expiring tokens), the in-memory link state and its
//! optional state file, a bare payment page behind each link URI (`/pml/<code>`, with a
//! button that pays; the same for each iDEAL QR transaction, which its QR code encodes),
//! and the inspection surface tests use (links and transactions with the exact body they
//! were created with, a request log, counters). It serves loopback tests, demos and
//! benchmarks, started in-process with [`start`] or as a command with [`run_command`].
//!
//! It never talks to the real CM, never holds real credentials, and is never used by the
//! client itself: the client only sees a base URL.

#![warn(missing_docs)]

mod command;
mod idealqr;
mod routes;
mod state;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use command::{SandboxArgs, run_command};

use state::Shared;

/// How the simulator behaves. The defaults are a well-behaved CM: no latency, no
/// failures, no rate limit, day-long tokens, and the credentials `sandbox` / `sandbox`,
/// so a demo config works without setup.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Added before every API request is answered, to model a slow remote API (so that
    /// throughput tests show concurrency at work).
    pub latency: Duration,
    /// Fraction (0.0..=1.0) of API requests answered `503`, to exercise retries.
    pub fail_rate: f64,
    /// Requests per second accepted (burst of the same size); beyond it `429` with
    /// `Retry-After: 1`, as CM's own gateway would.
    pub rate_limit: Option<u32>,
    /// How long an issued token is accepted (and the `expires_in` it reports).
    pub token_ttl: Duration,
    /// The only client id accepted by the token endpoint.
    pub client_id: String,
    /// The only client secret accepted by the token endpoint.
    pub client_secret: String,
    /// Base of the link URIs handed out (`<public_base>/pml/<code>`); the server's own base
    /// URL when `None`. Lets a demo hand out URIs that stay stable across restarts.
    pub public_base: Option<String>,
    /// When set, links are loaded from here at start and written after every change, so
    /// an embedded demo sandbox remembers its links between runs.
    pub state_file: Option<PathBuf>,
    /// Misbehave: record (and echo) one minor unit more than each link asked for, so
    /// tests can prove that the client checks the amount CM says it holds.
    pub skew_amounts: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            fail_rate: 0.0,
            rate_limit: None,
            token_ttl: Duration::from_secs(86_400),
            client_id: "sandbox".into(),
            client_secret: "sandbox".into(),
            public_base: None,
            state_file: None,
            skew_amounts: false,
        }
    }
}

/// A running simulator. Dropping it leaves the server running until the runtime ends;
/// call [`Sandbox::shutdown`] to stop it (and release a state file) deterministically.
pub struct Sandbox {
    shared: Arc<Shared>,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The runtime it serves on, so that [`Sandbox::pay`] can send the callback even when
    /// called from a plain test thread.
    runtime: tokio::runtime::Handle,
}

/// One payment link as the sandbox holds it, for tests to check what the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// CM's reference (`pml-...`).
    pub reference: String,
    /// The exact request body the link was created with, byte for byte.
    pub created_with: String,
    /// The current top-level fields as raw JSON literals (`amount` → `0.10`,
    /// `currency_code` → `"EUR"`), so a test can check a literal, not a parsed value.
    pub fields: std::collections::BTreeMap<String, String>,
    /// Whether the link can still be paid.
    pub active: bool,
    /// `open` or `paid`.
    pub status: String,
    /// The payment page address handed out.
    pub uri: String,
    /// Whether a customer could pay it now (by the sandbox's clock): active, unpaid, and
    /// its `expiry_date`, if any, not yet passed.
    pub payable: bool,
}

/// How a broken way to CM answers, for [`Faults`]: what a misconfigured proxy, a
/// gateway or a wrong URL does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misroute {
    /// `404` with an HTML page (a gateway that does not know the path).
    NotFoundPage,
    /// `405` with a plain-text body.
    MethodNotAllowed,
    /// `302` to another address (`http://` where `https://` is served), never to be followed.
    Redirect,
    /// `502` with an HTML page, as a load balancer shows while its backend is down.
    BadGatewayPage,
    /// `503` with an HTML page and `Retry-After: 120`, as a gateway answers while CM is
    /// under maintenance.
    Unavailable,
    /// `400` whose plain-text body echoes the request it got (a debugging proxy, a
    /// careless token endpoint): the client must never log it.
    EchoRequest,
}

impl std::str::FromStr for Misroute {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "404" => Ok(Misroute::NotFoundPage),
            "405" => Ok(Misroute::MethodNotAllowed),
            "302" => Ok(Misroute::Redirect),
            "502" => Ok(Misroute::BadGatewayPage),
            "503" => Ok(Misroute::Unavailable),
            "echo" => Ok(Misroute::EchoRequest),
            other => Err(format!(
                "`{other}` is not one of 404, 405, 302, 502, 503, echo"
            )),
        }
    }
}

/// Misbehaviour that can be switched on and off while the sandbox runs
/// ([`Sandbox::set_faults`], or `POST /sandbox/faults`), to test that a fault on the way
/// to CM is never taken for CM's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// How the token endpoints answer instead of issuing a token.
    pub token: Option<Misroute>,
    /// How the API endpoints (everything but the token endpoints) answer instead of
    /// doing their work.
    pub api: Option<Misroute>,
    /// With `api`: only requests of this method (`PATCH`) are misrouted.
    pub api_method: Option<String>,
    /// API requests are carried out, and then answered only after this long: a CM
    /// slower than the client's timeout, whose work happened although no answer came.
    pub late_answers: Duration,
}

/// One iDEAL QR transaction as the sandbox holds it, for tests to check what the client
/// sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrRecord {
    /// The transaction id (36 characters, UUID-like).
    pub id: String,
    /// `OPEN`, `SUCCESS`, `CANCELLED`, `EXPIRED` or `FAILURE`, as a `GET` would report it
    /// now (an `OPEN` one past its `expiresAt` is `EXPIRED`).
    pub status: String,
    /// The exact request body the transaction was created with, byte for byte.
    pub created_with: String,
    /// The known request fields as raw JSON literals (`amount` → `1200`, `currency` →
    /// `"EUR"`), so a test can check a literal, not a parsed value.
    pub fields: std::collections::BTreeMap<String, String>,
    /// The QR image address handed out as `action.qrcode.url`.
    pub qr_url: String,
    /// The sandbox payment page the QR code encodes.
    pub pay_url: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// One request as the sandbox saw it, so tests can check order and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method (`POST`).
    pub method: String,
    /// Request path without query (`/paymentlink/v1/pml-...`).
    pub path: String,
    /// Status code answered.
    pub status: u16,
    /// When the request arrived.
    pub started: Instant,
    /// When the answer was ready.
    pub finished: Instant,
}

/// What the simulator counted, for assertions about client behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Tokens handed out by `POST /auth/v1/token` and the iDEAL QR token endpoint.
    pub tokens_issued: u64,
    /// `429` answers served by the rate limit.
    pub rate_limited: u64,
    /// `5xx` answers served (simulated failures).
    pub server_errors: u64,
    /// The most API requests ever in progress at once.
    pub max_concurrent: u64,
    /// API requests received (not counting `/sandbox/*`).
    pub api_requests: u64,
}

/// Starts the simulator on `addr` (port 0 picks a free port). Fails when the address
/// cannot be bound or the state file cannot be read.
pub async fn start(addr: SocketAddr, opts: SandboxOptions) -> std::io::Result<Sandbox> {
    // The callback sender uses reqwest, which needs a process-wide rustls provider even
    // for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let base_url = format!("http://{local}");
    let shared = Arc::new(Shared::new(opts, base_url.clone())?);
    let app = routes::router(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "sandbox server ended with an error");
        }
    });
    tracing::debug!(%base_url, "sandbox started");
    Ok(Sandbox {
        shared,
        base_url,
        stop: Some(stop),
        task: Some(task),
        runtime: tokio::runtime::Handle::current(),
    })
}

impl Sandbox {
    /// The address clients use as `cm.base_url` (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Stops accepting connections and waits (briefly) for requests in progress, so a
    /// test can restart a sandbox on the same state file.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Idle keep-alive connections of clients still alive must not hold us up.
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// All links, in creation order.
    pub fn links(&self) -> Vec<LinkRecord> {
        self.shared.links()
    }

    /// One link by reference.
    pub fn link(&self, reference: &str) -> Option<LinkRecord> {
        self.shared
            .links()
            .into_iter()
            .find(|l| l.reference == reference)
    }

    /// Every request so far, in order of completion.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// The tokens currently accepted, so a test can assert that none of them ever shows up
    /// in a log line or an error.
    pub fn tokens(&self) -> Vec<String> {
        self.shared.tokens()
    }

    /// Forgets every issued token, as if CM had revoked them: the next API call with an
    /// old token gets `401`, which exercises the client's refresh path.
    pub fn revoke_tokens(&self) {
        self.shared.revoke_tokens();
    }

    /// All iDEAL QR transactions, in creation order.
    pub fn qr_transactions(&self) -> Vec<QrRecord> {
        self.shared.qr_transactions()
    }

    /// One iDEAL QR transaction by id.
    pub fn qr_transaction(&self, id: &str) -> Option<QrRecord> {
        self.shared
            .qr_transactions()
            .into_iter()
            .find(|t| t.id == id)
    }

    /// Pays an `OPEN` iDEAL QR transaction (status `SUCCESS`) and fires its webhooks, as
    /// `POST /sandbox/idealqr/transactions/<id>/pay` does; works from a plain test thread.
    /// Returns the HTTP status that route would answer (200, 404 or 409).
    pub fn pay_qr(&self, id: &str) -> u16 {
        let _in_runtime = self.runtime.enter();
        idealqr::finish(&self.shared, id, "SUCCESS").0.as_u16()
    }

    /// Ends an `OPEN` iDEAL QR transaction with `CANCELLED`, `EXPIRED` or `FAILURE` and
    /// fires its webhooks, as `POST /sandbox/idealqr/transactions/<id>/status` does.
    /// Returns the HTTP status that route would answer (200, 400, 404 or 409).
    pub fn end_qr(&self, id: &str, status: &str) -> u16 {
        if !idealqr::ENDINGS.contains(&status) {
            return 400;
        }
        let _in_runtime = self.runtime.enter();
        idealqr::finish(&self.shared, id, status).0.as_u16()
    }

    /// Switches faults on (or off, with `Faults::default()`), from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Moves the sandbox's clock forward by `by`: expiry dates are judged by it, so a
    /// test can see which links are still payable days later.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by);
    }

    /// Marks a link paid and fires its callback, as `POST /sandbox/paymentlinks/<ref>/pay`
    /// does. Returns the HTTP status that route would answer (200, 404 or 409).
    pub fn pay(&self, reference: &str) -> u16 {
        let _in_runtime = self.runtime.enter();
        routes::pay(&self.shared, reference).0.as_u16()
    }
}
