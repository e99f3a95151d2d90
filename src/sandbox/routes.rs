//! The HTTP surface: the API routes of the reference documents (the iDEAL QR ones in
//! [`super::idealqr`]), the simulated conditions around them, and the `/sandbox/*`
//! control routes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngExt;

use super::RequestRecord;
use super::state::{Api, Link, Shared};
use super::{idealqr, validate};

type S = State<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/auth/v1/token", post(token))
        .route("/paymentlink/v1.0", post(create))
        .route("/paymentlink/v1/{reference}", get(read).patch(update))
        .route("/paymentlink/v1/{reference}/status", get(status))
        .merge(idealqr::api())
        .route_layer(from_fn_with_state(shared.clone(), simulate));
    let control = Router::new()
        .route("/sandbox/paymentlinks/{reference}/pay", post(pay_route))
        .route("/sandbox/faults", post(faults_route))
        .route("/pml/{code}", get(page))
        .merge(idealqr::control());
    api.merge(control)
        .layer(from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// `{"message": ...}` with a status, the error shape of every answer but 2xx.
pub(super) fn message(status: StatusCode, text: impl Into<String>) -> Response {
    let body = serde_json::json!({ "message": text.into() });
    (status, axum::Json(body)).into_response()
}

pub(super) fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Logs every request (API and control) with its timing.
async fn record(State(s): S, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let rec = RequestRecord {
        method,
        path,
        status: resp.status().as_u16(),
        started,
        finished: Instant::now(),
    };
    tracing::debug!(method = %rec.method, path = %rec.path, status = rec.status, "sandbox request");
    s.lock().log.push(rec);
    resp
}

/// Decrements the in-flight gauge however the request ends (a client timeout drops us).
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The simulated conditions of an API request: rate limit (judged on arrival, as a
/// gateway would), latency, random 503s.
async fn simulate(State(s): S, req: Request, next: Next) -> Response {
    s.api_requests.fetch_add(1, Ordering::Relaxed);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_concurrent.fetch_max(now, Ordering::SeqCst);
    let _gauge = InFlight(&s);
    let limited = s.limiter.as_ref().is_some_and(|l| l.check().is_err());
    if !s.opts.latency.is_zero() {
        tokio::time::sleep(s.opts.latency).await;
    }
    if limited {
        s.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut resp = message(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    if s.opts.fail_rate > 0.0 && rand::rng().random_bool(s.opts.fail_rate.clamp(0.0, 1.0)) {
        s.server_errors.fetch_add(1, Ordering::Relaxed);
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated failure, try again",
        );
    }
    let faults = s.faults();
    let is_token = req.uri().path().ends_with("/token");
    let method_matches = faults
        .api_method
        .as_deref()
        .is_none_or(|m| req.method().as_str().eq_ignore_ascii_case(m));
    let fault = if is_token {
        faults.token
    } else {
        faults.api.filter(|_| method_matches)
    };
    if let Some(super::Misroute::EchoRequest) = fault {
        let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            String::from_utf8_lossy(&body).into_owned(),
        )
            .into_response();
    }
    if let Some(m) = fault {
        return misrouted(m, &s.base_url);
    }
    let resp = next.run(req).await;
    if resp.status().is_server_error() {
        s.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    if !is_token && !faults.late_answers.is_zero() {
        // The work is done; the answer comes late (a client that gave up never sees it).
        tokio::time::sleep(faults.late_answers).await;
    }
    resp
}

/// What a broken way to CM answers instead of CM.
fn misrouted(m: super::Misroute, base_url: &str) -> Response {
    use super::Misroute;
    let page = |status: StatusCode, title: &str| {
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
            format!("<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center><hr><center>nginx</center></body></html>"),
        )
            .into_response()
    };
    match m {
        Misroute::EchoRequest => message(StatusCode::BAD_REQUEST, "echo"),
        Misroute::NotFoundPage => page(StatusCode::NOT_FOUND, "404 Not Found"),
        Misroute::BadGatewayPage => page(StatusCode::BAD_GATEWAY, "502 Bad Gateway"),
        Misroute::Unavailable => {
            let mut resp = page(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
            resp
        }
        Misroute::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            "Method Not Allowed",
        )
            .into_response(),
        Misroute::Redirect => {
            let target = base_url.replacen("http://", "https://", 1);
            let mut resp = page(StatusCode::FOUND, "302 Found");
            if let Ok(v) = HeaderValue::from_str(&format!("{target}/moved")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
    }
}

/// `POST /sandbox/faults` with `{"token": "404"|"405"|"302"|"502"|null, "api": ...,
/// "late_answers_ms": N}`: switches faults on or off for a sandbox started as a command.
async fn faults_route(State(s): S, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        api: Option<String>,
        #[serde(default)]
        api_method: Option<String>,
        #[serde(default)]
        late_answers_ms: u64,
        #[serde(default)]
        advance_clock_seconds: u64,
    }
    let parsed: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return message(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let misroute = |v: Option<String>| v.map(|v| v.parse::<super::Misroute>()).transpose();
    match (misroute(parsed.token), misroute(parsed.api)) {
        (Ok(token), Ok(api)) => {
            s.set_faults(super::Faults {
                token,
                api,
                api_method: parsed.api_method,
                late_answers: std::time::Duration::from_millis(parsed.late_answers_ms),
            });
            s.advance_clock(std::time::Duration::from_secs(parsed.advance_clock_seconds));
            message(StatusCode::OK, "faults set")
        }
        (Err(e), _) | (_, Err(e)) => message(StatusCode::BAD_REQUEST, e),
    }
}

/// Why the request must be answered `401`, unless it carries a bearer token that was
/// issued for `api` and has not expired.
pub(super) fn authorize(s: &Shared, headers: &HeaderMap, api: Api) -> Result<(), &'static str> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return Err("a bearer token is required");
    };
    match s.lock().tokens_of(api).get(token) {
        Some(expiry) if Instant::now() < *expiry => Ok(()),
        Some(_) => Err("the access token has expired"),
        None => Err("the access token is not valid"),
    }
}

pub(super) fn unauthorized(text: &str) -> Response {
    let mut resp = message(StatusCode::UNAUTHORIZED, text);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// 36 characters shaped like a UUID (`8-4-4-4-12` hex digits), as CM's ids are.
pub(super) fn uuid_like() -> String {
    format!(
        "{}-{}-{}-{}-{}",
        random_hex(4),
        random_hex(2),
        random_hex(2),
        random_hex(2),
        random_hex(6)
    )
}

async fn token(
    State(s): S,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    issue_token(&s, form, Api::PaymentLink)
}

/// The OAuth client-credentials grant of a token endpoint: the same credentials and
/// lifetime for both APIs, a token valid for `api` only.
pub(super) fn issue_token(
    s: &Shared,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
    api: Api,
) -> Response {
    let Ok(Form(form)) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "the body must be x-www-form-urlencoded",
        );
    };
    for field in ["grant_type", "client_id", "client_secret"] {
        if !form.contains_key(field) {
            return message(StatusCode::BAD_REQUEST, format!("{field} is required"));
        }
    }
    if form["grant_type"] != "client_credentials" {
        return message(
            StatusCode::BAD_REQUEST,
            "grant_type must be client_credentials",
        );
    }
    if form["client_id"] != s.opts.client_id || form["client_secret"] != s.opts.client_secret {
        return message(StatusCode::UNAUTHORIZED, "authentication failed");
    }
    let token = random_hex(24);
    let ttl = s.opts.token_ttl;
    {
        let now = Instant::now();
        let mut state = s.lock();
        let tokens = state.tokens_of(api);
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), now + ttl);
    }
    s.tokens_issued.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn create(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(why) = authorize(&s, &headers, Api::PaymentLink) {
        return unauthorized(why);
    }
    let parsed = match validate::parse_body(&body) {
        Ok(p) => p,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let mut fields = match validate::link_fields(&parsed, true) {
        Ok(f) => f,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    if s.opts.skew_amounts
        && let Some(raw) = fields.get("amount")
        && let Ok(minor) = crate::domain::money::parse_amount(
            raw.get(),
            crate::domain::money::DecimalSeparator::Dot,
            2,
        )
        && let Ok(skewed) = serde_json::value::RawValue::from_string(
            crate::domain::money::format_minor(minor + 1, 2),
        )
    {
        fields.insert("amount".into(), skewed);
    }
    let reference = format!("pml-{}", uuid_like());
    let code: String = {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rng();
        (0..7)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let base = s.opts.public_base.as_deref().unwrap_or(&s.base_url);
    let link = Link {
        reference: reference.clone(),
        uri: format!("{}/pml/{code}", base.trim_end_matches('/')),
        active: true,
        status: "open".into(),
        fields,
        created_with: String::from_utf8_lossy(&body).into_owned(),
    };
    let out = link.to_json();
    let mut state = s.lock();
    state.insert(link);
    s.persist(&state);
    drop(state);
    json(StatusCode::CREATED, out)
}

async fn update(
    State(s): S,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = authorize(&s, &headers, Api::PaymentLink) {
        return unauthorized(why);
    }
    if s.lock().link_mut(&reference).is_none() {
        return message(StatusCode::NOT_FOUND, "payment link not found");
    }
    let parsed = match validate::parse_body(&body) {
        Ok(p) => p,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let (fields, active) = match (
        validate::link_fields(&parsed, false),
        validate::active_field(&parsed),
    ) {
        (Ok(f), Ok(a)) => (f, a),
        (Err(e), _) | (_, Err(e)) => return message(StatusCode::BAD_REQUEST, e),
    };
    let mut state = s.lock();
    let Some(link) = state.link_mut(&reference) else {
        return message(StatusCode::NOT_FOUND, "payment link not found");
    };
    link.fields.extend(fields);
    if let Some(active) = active {
        link.active = active;
    }
    let out = link.to_json();
    s.persist(&state);
    drop(state);
    json(StatusCode::OK, out)
}

async fn read(State(s): S, Path(reference): Path<String>, headers: HeaderMap) -> Response {
    if let Err(why) = authorize(&s, &headers, Api::PaymentLink) {
        return unauthorized(why);
    }
    match s.lock().link_mut(&reference) {
        Some(link) => json(StatusCode::OK, link.to_json()),
        None => message(StatusCode::NOT_FOUND, "payment link not found"),
    }
}

async fn status(State(s): S, Path(reference): Path<String>, headers: HeaderMap) -> Response {
    if let Err(why) = authorize(&s, &headers, Api::PaymentLink) {
        return unauthorized(why);
    }
    match s.lock().link_mut(&reference) {
        Some(link) => {
            let body = serde_json::json!({ "status": link.status });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        None => message(StatusCode::NOT_FOUND, "payment link not found"),
    }
}

/// The payment page a link's `uri` points at, so a demo user who opens the mailed link
/// sees the invoice and can pay it (which fires the callback).
async fn page(State(s): S, Path(code): Path<String>) -> Response {
    let suffix = format!("/pml/{code}");
    let state = s.lock();
    let Some(link) = state.links.iter().find(|l| l.uri.ends_with(&suffix)) else {
        return (StatusCode::NOT_FOUND, "no such payment link").into_response();
    };
    let text = |name: &str| {
        link.fields
            .get(name)
            .map(|raw| {
                serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_string())
            })
            .unwrap_or_default()
    };
    let action = if link.payable(s.now()) {
        format!(
            "<form method=\"post\" action=\"/sandbox/paymentlinks/{}/pay\"><button>Pay (simulated)</button></form>",
            crate::domain::text::escape_html(&link.reference)
        )
    } else if link.status == "paid" {
        "<p>This invoice has been paid.</p>".to_string()
    } else if link.active {
        "<p>This payment link has expired.</p>".to_string()
    } else {
        "<p>This payment link is no longer active.</p>".to_string()
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>CM sandbox payment</title></head><body><h1>CM sandbox payment</h1><p>Invoice {}</p><p>Amount {} {}</p>{action}</body></html>",
        crate::domain::text::escape_html(&text("invoice_reference")),
        crate::domain::text::escape_html(&text("currency_code")),
        crate::domain::text::escape_html(&text("amount")),
    );
    axum::response::Html(html).into_response()
}

async fn pay_route(State(s): S, Path(reference): Path<String>) -> Response {
    let (status, text) = pay(&s, &reference);
    message(status, text)
}

/// Marks a link paid and sends its callback in the background.
pub(super) fn pay(s: &Arc<Shared>, reference: &str) -> (StatusCode, String) {
    let mut state = s.lock();
    let Some(link) = state.link_mut(reference) else {
        return (StatusCode::NOT_FOUND, "payment link not found".into());
    };
    if !link.active {
        return (StatusCode::CONFLICT, "payment link is not active".into());
    }
    if link.status == "paid" {
        return (StatusCode::CONFLICT, "payment link is already paid".into());
    }
    if link.expired(s.now()) {
        return (StatusCode::CONFLICT, "payment link has expired".into());
    }
    link.status = "paid".into();
    let callback = link
        .fields
        .get("callback_url")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    s.persist(&state);
    drop(state);
    if let Some(url) = callback {
        let body = serde_json::json!({ "paymentlink_refs": [reference] });
        notify(s, vec![(url, body)]);
    }
    (StatusCode::OK, "payment link paid".into())
}

/// POSTs each JSON body to its URL, in order, in one background task, each within the
/// sandbox client's timeout (5 s), so that a slow merchant never holds up the request that caused the callback.
/// Failures are logged, not retried.
pub(super) fn notify(s: &Shared, calls: Vec<(String, serde_json::Value)>) {
    if calls.is_empty() {
        return;
    }
    let http = s.http.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                for (url, body) in calls {
                    match http.post(&url).json(&body).send().await {
                        Ok(resp) => {
                            tracing::debug!(%url, status = resp.status().as_u16(), "sandbox callback sent")
                        }
                        Err(e) => tracing::warn!(%url, error = %e, "sandbox callback failed"),
                    }
                }
            });
        }
        Err(_) => tracing::warn!("sandbox callback not sent: no async runtime"),
    }
}
