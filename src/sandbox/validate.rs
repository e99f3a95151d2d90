//! Field validation of the payment link bodies, on the raw JSON literals, so that a
//! string amount or a third decimal is caught the way a strict API would catch it.

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;

/// The request fields the API knows (besides `active` on PATCH); others are ignored.
pub(super) const LINK_FIELDS: [&str; 9] = [
    "amount",
    "callback_url",
    "country_code",
    "currency_code",
    "expiry_date",
    "invoice_due_date",
    "invoice_reference",
    "language_code",
    "merchant_reference",
];

/// Parses a body into its top-level fields, keeping each value's literal text.
pub(super) fn parse_body(body: &[u8]) -> Result<HashMap<String, Box<RawValue>>, String> {
    serde_json::from_slice(body).map_err(|e| format!("body is not a JSON object: {e}"))
}

/// Checks the known fields of a create (`creating`) or update body and returns them.
pub(super) fn link_fields(
    body: &HashMap<String, Box<RawValue>>,
    creating: bool,
) -> Result<BTreeMap<String, Box<RawValue>>, String> {
    if creating {
        for required in ["amount", "merchant_reference"] {
            if !body.contains_key(required) {
                return Err(format!("{required} is required"));
            }
        }
    }
    let mut out = BTreeMap::new();
    for name in LINK_FIELDS {
        let Some(raw) = body.get(name) else { continue };
        check_field(name, raw)?;
        out.insert(name.to_string(), raw.clone());
    }
    Ok(out)
}

/// Checks `active` of an update body, when present.
pub(super) fn active_field(body: &HashMap<String, Box<RawValue>>) -> Result<Option<bool>, String> {
    match body.get("active") {
        None => Ok(None),
        Some(raw) => match raw.get() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err("active must be a boolean".into()),
        },
    }
}

fn check_field(name: &str, raw: &RawValue) -> Result<(), String> {
    if name == "amount" {
        return check_amount(raw.get());
    }
    let value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|_| format!("{name} is not valid JSON"))?;
    let Some(s) = value.as_str() else {
        return Err(format!("{name} must be a string"));
    };
    match name {
        "merchant_reference" if s.trim().is_empty() => {
            Err("merchant_reference must not be empty".into())
        }
        "currency_code" if !(s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())) => Err(
            format!("currency_code must be an ISO 4217 code of 3 uppercase letters, not `{s}`"),
        ),
        "country_code" if !two_letters(s) => Err(format!(
            "country_code must be an ISO 3166-1 alpha-2 code, not `{s}`"
        )),
        "language_code" if !two_letters(s) => Err(format!(
            "language_code must be an ISO 639-1 code of 2 letters, not `{s}`"
        )),
        "expiry_date" | "invoice_due_date" if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
            Err(format!("{name} must be an ISO 8601 timestamp, not `{s}`"))
        }
        "callback_url" if !http_url(s) => {
            Err(format!("callback_url must be an http(s) URL, not `{s}`"))
        }
        _ => Ok(()),
    }
}

pub(super) fn two_letters(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic())
}

pub(super) fn http_url(s: &str) -> bool {
    reqwest::Url::parse(s)
        .map(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        })
        .unwrap_or(false)
}

/// A positive JSON number written as plain decimal with at most two decimals:
/// `10`, `10.5`, `10.00`; not `"10.00"`, `10.001`, `-1`, `0`, `1e3`.
fn check_amount(literal: &str) -> Result<(), String> {
    if literal.starts_with('"') {
        return Err("amount must be a JSON number, not a string".into());
    }
    if literal.starts_with('-') {
        return Err("amount must be positive".into());
    }
    let (int, frac) = match literal.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (literal, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(format!(
            "amount must be a plain decimal number, not `{literal}`"
        ));
    }
    if frac.is_some_and(|f| f.len() > 2) {
        return Err(format!("amount has more than two decimals: `{literal}`"));
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err(format!("amount is not a valid JSON number: `{literal}`"));
    }
    if literal.bytes().all(|b| b == b'0' || b == b'.') {
        return Err("amount must be positive".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_judged_on_their_literal() {
        for ok in ["10", "10.5", "10.00", "0.01", "99999999.99"] {
            assert_eq!(check_amount(ok), Ok(()), "{ok}");
        }
        for bad in [
            "\"10.00\"",
            "10.001",
            "-1",
            "0",
            "0.00",
            "1e3",
            "true",
            "null",
            "01.5",
            "1.",
        ] {
            assert!(check_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn codes_and_urls() {
        let f = |name: &str, json: &str| {
            check_field(name, &RawValue::from_string(json.into()).unwrap())
        };
        assert!(f("currency_code", "\"EUR\"").is_ok());
        assert!(f("currency_code", "\"eur\"").is_err());
        assert!(f("country_code", "\"NL\"").is_ok());
        assert!(f("country_code", "\"NLD\"").is_err());
        assert!(f("language_code", "\"nl\"").is_ok());
        assert!(f("language_code", "null").is_err());
        assert!(f("callback_url", "\"https://m.example/cb\"").is_ok());
        assert!(f("callback_url", "\"ftp://m.example/cb\"").is_err());
        assert!(f("expiry_date", "\"2022-02-22T22:00:00+00:00\"").is_ok());
        assert!(f("expiry_date", "\"2022-02-22\"").is_err());
    }
}
