//! The iDEAL QR side of the simulator (CM's iDEAL QR API, see ARCHITECTURE.md): its OAuth
//! token endpoint, create and get of transactions with the document's validation, the QR
//! image behind `action.qrcode.url` (a real, scannable QR code of a sandbox payment page),
//! and the control routes that end a transaction and fire its webhooks.
//!
//! It owns the transaction records and their wire format. Webhooks carry the id, the
//! reference and the event, never a status: as with CM, a receiver must `GET` the
//! transaction to learn what happened. An `OPEN` transaction past its `expiresAt` reads
//! as `EXPIRED` (no webhook is sent for that: there is no timer).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::QrRecord;
use super::routes::{self, json, message, uuid_like};
use super::state::{Api, Shared, echo, literals};
use super::validate::{http_url, two_letters};

type S = State<Arc<Shared>>;

/// The path of the transactions resource.
const TRANSACTIONS: &str = "/api/v1/paymentmethods/idealqr/v1/transactions";

/// The statuses `POST /sandbox/idealqr/transactions/<id>/status` can end a transaction
/// with (`SUCCESS` is what `/pay` does).
pub(super) const ENDINGS: [&str; 3] = ["CANCELLED", "EXPIRED", "FAILURE"];

/// The webhook events the document names.
const EVENTS: [&str; 3] = ["FINALSTATUS", "STATUS_CHANGE", "QR_PAYMENT_CREATED"];

/// The request fields the API knows; others are ignored (not echoed).
const FIELDS: [&str; 13] = [
    "amount",
    "amountChangeable",
    "currency",
    "description",
    "expiresAt",
    "language",
    "purchaseId",
    "reference",
    "returnUrl",
    "returnUrls",
    "reusable",
    "size",
    "webhooks",
];

/// The API routes (behind the simulated conditions).
pub(super) fn api() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/authorization/oauth2/token", post(token))
        .route(TRANSACTIONS, post(create))
        .route(&format!("{TRANSACTIONS}/{{id}}"), get(read))
}

/// The control routes: pay / end a transaction, its payment page, its QR image.
pub(super) fn control() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sandbox/idealqr/transactions/{id}/pay", post(pay_route))
        .route(
            "/sandbox/idealqr/transactions/{id}/status",
            post(status_route),
        )
        .route("/sandbox/idealqr/transactions/{id}", get(page))
        .route("/sandbox/idealqr/qr/{file}", get(image))
}

/// A transaction as stored (and persisted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QrTx {
    pub id: String,
    pub qr_id: String,
    pub qr_url: String,
    /// The payment page the QR code encodes.
    pub pay_url: String,
    /// `OPEN` until paid or ended; see [`QrTx::status`] for expiry.
    pub status: String,
    /// The known request fields, as raw JSON literals.
    pub fields: BTreeMap<String, Box<RawValue>>,
    /// The exact creation body.
    pub created_with: String,
    pub created_at: String,
}

impl QrTx {
    /// The status as the API reports it: an `OPEN` one past its `expiresAt` is `EXPIRED`.
    pub fn status(&self) -> &str {
        if self.status == "OPEN"
            && self
                .text("expiresAt")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .is_some_and(|at| at < chrono::Utc::now())
        {
            "EXPIRED"
        } else {
            &self.status
        }
    }

    /// A string field's value.
    fn text(&self, name: &str) -> Option<String> {
        let raw = self.fields.get(name)?;
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// The API representation: the request fields echoed, plus id / status / createdAt,
    /// and `action` only while `OPEN`, as the document says.
    pub fn to_json(&self) -> String {
        let status = self.status();
        let mut answer = vec![
            ("id", self.id.clone().into()),
            ("status", status.into()),
            ("createdAt", self.created_at.clone().into()),
        ];
        if status == "OPEN" {
            let qrcode = serde_json::json!({ "id": self.qr_id, "url": self.qr_url });
            answer.push(("action", serde_json::json!({ "qrcode": qrcode })));
        }
        echo(&self.fields, answer)
    }

    pub fn record(&self) -> QrRecord {
        QrRecord {
            id: self.id.clone(),
            status: self.status().to_string(),
            created_with: self.created_with.clone(),
            fields: literals(&self.fields),
            qr_url: self.qr_url.clone(),
            pay_url: self.pay_url.clone(),
            created_at: self.created_at.clone(),
        }
    }
}

async fn token(
    State(s): S,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    routes::issue_token(&s, form, Api::IdealQr)
}

async fn create(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(why) = routes::authorize(&s, &headers, Api::IdealQr) {
        return routes::unauthorized(why);
    }
    let fields = match super::validate::parse_body(&body).and_then(|b| fields(&b)) {
        Ok(f) => f,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let id = uuid_like();
    let base = s
        .opts
        .public_base
        .as_deref()
        .unwrap_or(&s.base_url)
        .trim_end_matches('/')
        .to_string();
    let tx = QrTx {
        qr_id: format!("{}-1", routes::random_hex(10)),
        qr_url: format!("{base}/sandbox/idealqr/qr/{id}.png"),
        pay_url: format!("{base}/sandbox/idealqr/transactions/{id}"),
        id,
        status: "OPEN".into(),
        fields,
        created_with: String::from_utf8_lossy(&body).into_owned(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let out = tx.to_json();
    let mut state = s.lock();
    state.insert_qr(tx);
    s.persist(&state);
    drop(state);
    json(StatusCode::CREATED, out)
}

async fn read(State(s): S, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(why) = routes::authorize(&s, &headers, Api::IdealQr) {
        return routes::unauthorized(why);
    }
    match s.lock().qr(&id) {
        Some(tx) => json(StatusCode::OK, tx.to_json()),
        None => message(StatusCode::NOT_FOUND, "transaction not found"),
    }
}

/// Checks a create body as the document constrains it and returns the known fields.
/// Every message names the field.
pub(super) fn fields(
    body: &HashMap<String, Box<RawValue>>,
) -> Result<BTreeMap<String, Box<RawValue>>, String> {
    let value = |name: &str| -> Result<Option<serde_json::Value>, String> {
        body.get(name)
            .map(|raw| {
                serde_json::from_str(raw.get()).map_err(|_| format!("{name} is not valid JSON"))
            })
            .transpose()
    };
    let text = |name: &str, min: usize, max: usize, required: bool| -> Result<(), String> {
        match value(name)? {
            None if required => Err(format!("{name} is required")),
            None => Ok(()),
            Some(serde_json::Value::String(s)) => {
                let n = s.chars().count();
                if (min..=max).contains(&n) {
                    Ok(())
                } else {
                    Err(format!(
                        "{name} must have {min} to {max} characters, not {n}"
                    ))
                }
            }
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    let integer = |name: &str, min: i64, max: i64| -> Result<(), String> {
        let Some(raw) = body.get(name) else {
            return Err(format!("{name} is required"));
        };
        let literal = raw.get();
        let n = integer_literal(literal)
            .ok_or_else(|| format!("{name} must be a JSON integer, not `{literal}`"))?;
        if (min..=max).contains(&n) {
            Ok(())
        } else {
            Err(format!("{name} must be {min} to {max}, not {n}"))
        }
    };

    text("reference", 1, 255, true)?;
    integer("amount", 1, 99_999_999)?;
    text("description", 1, 255, true)?;
    text("expiresAt", 1, 100, true)?;
    if let Some(serde_json::Value::String(at)) = value("expiresAt")?
        && chrono::DateTime::parse_from_rfc3339(&at).is_err()
    {
        return Err(format!(
            "expiresAt must be an RFC 3339 timestamp, not `{at}`"
        ));
    }
    integer("size", 100, 2000)?;
    match (
        body.contains_key("returnUrl"),
        body.contains_key("returnUrls"),
    ) {
        (true, true) => return Err("either returnUrl or returnUrls must be given, not both".into()),
        (false, false) => return Err("returnUrl or returnUrls is required".into()),
        (true, false) => {
            text("returnUrl", 1, 2000, true)?;
            if let Some(serde_json::Value::String(url)) = value("returnUrl")?
                && !http_url(&url)
            {
                return Err(format!("returnUrl must be an http(s) URL, not `{url}`"));
            }
        }
        (false, true) => match value("returnUrls")? {
            Some(serde_json::Value::Object(urls))
                if !urls.is_empty()
                    && urls.iter().all(|(_, u)| {
                        u.as_str()
                            .is_some_and(|u| u.chars().count() <= 2000 && http_url(u))
                    }) => {}
            _ => return Err("returnUrls must be an object of http(s) URLs per status".into()),
        },
    }
    text("purchaseId", 1, 35, false)?;
    if let Some(l) = value("language")?
        && !l.as_str().is_some_and(two_letters)
    {
        return Err(format!(
            "language must be an ISO 639-1 code of 2 letters, not {l}"
        ));
    }
    if let Some(c) = value("currency")?
        && !c
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(format!(
            "currency must be an ISO 4217 code of 3 uppercase letters, not {c}"
        ));
    }
    if let Some(r) = value("reusable")?
        && !r.is_boolean()
    {
        return Err("reusable must be a boolean".into());
    }
    if let Some(a) = value("amountChangeable")?
        && !a.as_object().is_some_and(|a| {
            a.values()
                .all(|v| v.as_i64().is_some_and(|n| (1..=99_999_999).contains(&n)))
        })
    {
        return Err("amountChangeable must be an object of integer min / max".into());
    }
    if let Some(hooks) = value("webhooks")? {
        check_webhooks(&hooks)?;
    }
    Ok(FIELDS
        .iter()
        .filter_map(|name| body.get(*name).map(|raw| (name.to_string(), raw.clone())))
        .collect())
}

/// `webhooks`: an array of `{url, events}` with an http(s) URL and known events.
fn check_webhooks(hooks: &serde_json::Value) -> Result<(), String> {
    let Some(hooks) = hooks.as_array() else {
        return Err("webhooks must be an array".into());
    };
    for (i, hook) in hooks.iter().enumerate() {
        let Some(hook) = hook.as_object() else {
            return Err(format!(
                "webhooks[{i}] must be an object with url and events"
            ));
        };
        if !hook
            .get("url")
            .and_then(|u| u.as_str())
            .is_some_and(http_url)
        {
            return Err(format!("webhooks[{i}].url must be an http(s) URL"));
        }
        let events = hook.get("events").and_then(|e| e.as_array());
        let known = |e: &serde_json::Value| e.as_str().is_some_and(|e| EVENTS.contains(&e));
        if !events.is_some_and(|e| !e.is_empty() && e.iter().all(known)) {
            return Err(format!(
                "webhooks[{i}].events must be a non-empty array of {}",
                EVENTS.join(" / ")
            ));
        }
    }
    Ok(())
}

/// A JSON integer literal (`1200`, `-3`), not `12.5`, `1e3`, `"1200"` or `01`.
fn integer_literal(literal: &str) -> Option<i64> {
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    if plain { literal.parse().ok() } else { None }
}

async fn pay_route(State(s): S, Path(id): Path<String>) -> Response {
    let (status, text) = finish(&s, &id, "SUCCESS");
    message(status, text)
}

#[derive(Deserialize)]
struct Ending {
    status: String,
}

async fn status_route(State(s): S, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(ending) = serde_json::from_slice::<Ending>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "the body must be {\"status\": \"CANCELLED\" | \"EXPIRED\" | \"FAILURE\"}",
        );
    };
    if !ENDINGS.contains(&ending.status.as_str()) {
        return message(
            StatusCode::BAD_REQUEST,
            format!(
                "status must be one of {}, not `{}`",
                ENDINGS.join(", "),
                ending.status
            ),
        );
    }
    let (status, text) = finish(&s, &id, &ending.status);
    message(status, text)
}

/// Ends an `OPEN` transaction with `status` (`SUCCESS` is a payment) and fires its
/// webhooks in the background. Answers 404 for an unknown id, 409 when it is not open.
pub(super) fn finish(s: &Arc<Shared>, id: &str, status: &str) -> (StatusCode, String) {
    let mut state = s.lock();
    let Some(tx) = state.qr_mut(id) else {
        return (StatusCode::NOT_FOUND, "transaction not found".into());
    };
    let now = tx.status().to_string();
    if now != "OPEN" {
        return (
            StatusCode::CONFLICT,
            format!("transaction is {now}, not OPEN"),
        );
    }
    tx.status = status.to_string();
    let tx = tx.clone();
    s.persist(&state);
    drop(state);
    let events: &[&str] = if status == "SUCCESS" {
        &["QR_PAYMENT_CREATED", "STATUS_CHANGE", "FINALSTATUS"]
    } else {
        &["STATUS_CHANGE", "FINALSTATUS"]
    };
    let reference = tx.text("reference").unwrap_or_default();
    let registered: Vec<serde_json::Value> = tx
        .fields
        .get("webhooks")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let mut hooks = Vec::new();
    for event in events {
        for hook in &registered {
            let listens = hook["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e == event));
            if let (true, Some(url)) = (listens, hook["url"].as_str()) {
                let body =
                    serde_json::json!({ "id": tx.id, "reference": reference, "event": event });
                hooks.push((url.to_string(), body));
            }
        }
    }
    routes::notify(s, hooks);
    (StatusCode::OK, format!("transaction is {status}"))
}

/// The page the QR code leads to, so a demo user who scans it sees the invoice and can
/// pay it (which fires the webhooks).
async fn page(State(s): S, Path(id): Path<String>) -> Response {
    let state = s.lock();
    let Some(tx) = state.qr(&id) else {
        return (StatusCode::NOT_FOUND, "no such iDEAL QR transaction").into_response();
    };
    let cents = tx
        .fields
        .get("amount")
        .and_then(|raw| integer_literal(raw.get()))
        .unwrap_or_default();
    let action = match tx.status() {
        "OPEN" => format!(
            "<img src=\"{}\" alt=\"QR code\"><form method=\"post\" action=\"/sandbox/idealqr/transactions/{}/pay\"><button>Pay (simulated)</button></form>",
            crate::domain::text::escape_html(&tx.qr_url),
            crate::domain::text::escape_html(&tx.id)
        ),
        other => format!(
            "<p>This transaction is {}.</p>",
            crate::domain::text::escape_html(other)
        ),
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>CM sandbox iDEAL QR</title></head><body><h1>CM sandbox iDEAL QR</h1><p>{}</p><p>Reference {}</p><p>Amount EUR {}.{:02}</p>{action}</body></html>",
        crate::domain::text::escape_html(&tx.text("description").unwrap_or_default()),
        crate::domain::text::escape_html(&tx.text("reference").unwrap_or_default()),
        cents / 100,
        cents % 100,
    );
    axum::response::Html(html).into_response()
}

/// The QR image of a transaction (`<id>.png`), about `size` pixels square.
async fn image(State(s): S, Path(file): Path<String>) -> Response {
    let found = file.strip_suffix(".png").and_then(|id| {
        let state = s.lock();
        let tx = state.qr(id)?;
        let size = tx
            .fields
            .get("size")
            .and_then(|raw| integer_literal(raw.get()))
            .unwrap_or(300);
        Some((tx.pay_url.clone(), size))
    });
    let Some((text, size)) = found else {
        return (StatusCode::NOT_FOUND, "no such QR image").into_response();
    };
    let size = u32::try_from(size.clamp(100, 2000)).unwrap_or(300);
    match tokio::task::spawn_blocking(move || qr_png(&text, size)).await {
        Ok(Ok(png)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static("image/png"))],
            png,
        )
            .into_response(),
        Ok(Err(e)) => message(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A black-on-white PNG (1 bit per pixel) of a QR code of `text`, with the standard
/// quiet zone of 4 modules, modules of a whole number of pixels, centred in a square of
/// `size` pixels (larger only when the code needs more than one pixel per module).
pub(super) fn qr_png(text: &str, size: u32) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| format!("cannot encode the QR code: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    let total = width + 8;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let scale = (size / total).max(1);
    let side = (total * scale).max(size);
    let offset = (side - width * scale) / 2;
    let row_bytes = side.div_ceil(8);
    // Bit 1 is white: start all white, clear the dark modules.
    let mut pixels = vec![0xffu8; row_bytes * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % width, i / width);
        for py in offset + my * scale..offset + (my + 1) * scale {
            for px in offset + mx * scale..offset + (mx + 1) * scale {
                pixels[py * row_bytes + px / 8] &= !(0x80 >> (px % 8));
            }
        }
    }
    let side = u32::try_from(side).map_err(|_| "the QR image is too large".to_string())?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("cannot write the PNG: {e}"))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| format!("cannot write the PNG: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("cannot write the PNG: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_literals() {
        assert_eq!(integer_literal("1200"), Some(1200));
        assert_eq!(integer_literal("-3"), Some(-3));
        for bad in ["12.5", "1e3", "\"1200\"", "01", "", "-", "null", "true"] {
            assert_eq!(integer_literal(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_png_is_about_size_pixels_square() {
        for size in [100, 300, 2000] {
            let png = qr_png("http://127.0.0.1:1/sandbox/idealqr/transactions/x", size).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
            assert_eq!(width, size);
        }
    }
}
