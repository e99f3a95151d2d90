//! The payment link shapes of CM's Payment Link API (ARCHITECTURE.md): the create request as CM wants
//! it, and the link and status CM answers with.
//!
//! It owns the wire format, above all the amount: written as a JSON number from integer
//! minor units digit by digit, never through a float. It never sends anything.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::CmError;
use crate::domain::{InvoiceRef, MerchantRef};

/// What a new payment link asks for. Plain strings, because the caller (the cycle)
/// already holds validated domain values and formats them once; this type only decides
/// how they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateLink {
    /// The amount in the currency's minor units (cents), so no float ever touches money.
    pub amount_minor: i64,
    /// Decimals of the currency (2 for EUR, 0 for JPY), which decides how the amount is
    /// written.
    pub exponent: u8,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency_code: String,
    /// The invoice number shown to the payer.
    pub invoice_reference: InvoiceRef,
    /// ISO 8601 timestamp, already formatted (e.g. `2024-05-01T00:00:00+00:00`).
    pub invoice_due_date: String,
    /// Unique per invoice revision, so a link can always be traced to the revision that
    /// asked for it.
    pub merchant_reference: MerchantRef,
    /// ISO 639-1 code of the payment page language.
    pub language_code: String,
    /// ISO 3166-1 alpha-2 code deciding the payment methods shown.
    pub country_code: String,
    /// ISO 8601 timestamp after which the link cannot be paid; none when absent.
    pub expiry_date: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Where CM announces status changes; CM's merchant default when absent.
    pub callback_url: Option<String>,
}

/// The body of `POST /paymentlink/v1.0`, fields in the document's order; optional fields
/// are left out rather than sent as `null`.
#[derive(Serialize)]
struct CreateBody<'a> {
    amount: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
    country_code: &'a str,
    currency_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_date: Option<String>,
    invoice_due_date: &'a str,
    invoice_reference: &'a str,
    language_code: &'a str,
    merchant_reference: &'a str,
}

impl CreateLink {
    /// The JSON body, or why it cannot be sent (CM would refuse it, and a refusal costs a
    /// request and a rate-limit slot).
    pub(crate) fn to_body(&self) -> Result<Vec<u8>, CmError> {
        if self.amount_minor <= 0 {
            return Err(CmError::Invalid(format!(
                "a payment link needs a positive amount, not {} minor units",
                self.amount_minor
            )));
        }
        let literal = amount_literal(self.amount_minor, self.exponent).ok_or_else(|| {
            CmError::Invalid(format!(
                "a currency with {} decimals is not supported",
                self.exponent
            ))
        })?;
        let body = CreateBody {
            amount: RawValue::from_string(literal).expect("digits and a dot are a JSON number"),
            callback_url: self.callback_url.as_deref(),
            country_code: &self.country_code,
            currency_code: &self.currency_code,
            expiry_date: self
                .expiry_date
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
            invoice_due_date: &self.invoice_due_date,
            invoice_reference: self.invoice_reference.as_str(),
            language_code: &self.language_code,
            merchant_reference: self.merchant_reference.as_str(),
        };
        Ok(serde_json::to_vec(&body).expect("strings and a raw number serialize"))
    }
}

/// The JSON number for `minor` units with `exponent` decimals: `10, 2` → `0.10`,
/// `123456, 2` → `1234.56`, `1234, 0` → `1234`. `None` for a negative amount or more than
/// nine decimals (no currency has them).
pub(crate) fn amount_literal(minor: i64, exponent: u8) -> Option<String> {
    if minor < 0 || exponent > 9 {
        return None;
    }
    Some(crate::domain::money::format_minor(minor, exponent))
}

/// The inverse of [`amount_literal`] for what CM echoes: the literal read exactly into
/// minor units. `None` when it has more decimals than the currency or is not a plain
/// decimal.
fn literal_minor(literal: &str, exponent: u8) -> Option<i64> {
    let (int, frac) = literal.split_once('.').unwrap_or((literal, ""));
    let exp = usize::from(exponent);
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > exp
    {
        return None;
    }
    let mut units: i64 = int.parse().ok()?;
    for _ in 0..exp {
        units = units.checked_mul(10)?;
    }
    let frac_units: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<exp$}").parse().ok()?
    };
    units.checked_add(frac_units)
}

/// Whether a link has been paid. Anything else CM may report is `Unknown`, which callers
/// must treat as not paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// Not paid (yet).
    Open,
    /// Paid: the invoice is settled through this link.
    Paid,
    /// A status this client does not know; not proof of payment.
    #[serde(other)]
    Unknown,
}

/// A payment link as CM returns it from create, update and get. The request fields are
/// echoed so the caller can check that CM holds what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentLink {
    /// CM's reference (`pml-...`), the key for every later call.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The payment page address mailed to the customer.
    pub uri: String,
    /// Whether the link can still be paid.
    pub active: bool,
    /// Payment status.
    pub status: LinkStatus,
    /// The amount exactly as CM wrote it (`10.00`); see [`PaymentLink::amount_minor`].
    #[serde(default, deserialize_with = "raw_literal")]
    pub amount: Option<String>,
    /// ISO 4217 code.
    #[serde(default)]
    pub currency_code: Option<String>,
    /// The invoice number.
    #[serde(default)]
    pub invoice_reference: Option<String>,
    /// The merchant reference it was created with.
    #[serde(default)]
    pub merchant_reference: Option<String>,
    /// ISO 8601 due date.
    #[serde(default)]
    pub invoice_due_date: Option<String>,
    /// ISO 8601 expiry, when it has one.
    #[serde(default)]
    pub expiry_date: Option<String>,
    /// The callback address, when one was given.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Payment page language.
    #[serde(default)]
    pub language_code: Option<String>,
    /// Payment methods country.
    #[serde(default)]
    pub country_code: Option<String>,
}

impl PaymentLink {
    /// The echoed amount in minor units, read exactly from CM's literal, so the caller can
    /// verify it against what it asked for without a float.
    pub fn amount_minor(&self, exponent: u8) -> Option<i64> {
        literal_minor(self.amount.as_deref()?, exponent)
    }
}

fn raw_literal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
    Ok(raw
        .map(|r| r.get().to_string())
        .filter(|s| s.as_str() != "null"))
}

/// The body of `GET /paymentlink/v1/<ref>/status`.
#[derive(Deserialize)]
pub(crate) struct StatusBody {
    pub status: LinkStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_exactly() {
        assert_eq!(amount_literal(10, 2).unwrap(), "0.10");
        assert_eq!(amount_literal(1, 2).unwrap(), "0.01");
        assert_eq!(amount_literal(100, 2).unwrap(), "1.00");
        assert_eq!(amount_literal(123_456, 2).unwrap(), "1234.56");
        assert_eq!(amount_literal(9_999_999_999, 2).unwrap(), "99999999.99");
        assert_eq!(amount_literal(1234, 0).unwrap(), "1234");
        assert_eq!(amount_literal(1, 3).unwrap(), "0.001");
        assert_eq!(amount_literal(i64::MAX, 2).unwrap(), "92233720368547758.07");
        assert_eq!(amount_literal(-1, 2), None);
    }

    #[test]
    fn echoed_literals_read_back_exactly() {
        for (minor, exp) in [(10, 2), (123_456, 2), (9_999_999_999, 2), (1234, 0), (7, 3)] {
            let lit = amount_literal(minor, exp).unwrap();
            assert_eq!(literal_minor(&lit, exp), Some(minor), "{lit}");
        }
        assert_eq!(literal_minor("10", 2), Some(1000));
        assert_eq!(literal_minor("10.5", 2), Some(1050));
        assert_eq!(literal_minor("10.001", 2), None);
        assert_eq!(literal_minor("1e3", 2), None);
        assert_eq!(literal_minor("\"10\"", 2), None);
    }

    fn sample() -> CreateLink {
        CreateLink {
            amount_minor: 10,
            exponent: 2,
            currency_code: "EUR".into(),
            invoice_reference: InvoiceRef::parse("INV-1").unwrap(),
            invoice_due_date: "2024-05-01T00:00:00+00:00".into(),
            merchant_reference: MerchantRef::parse("INV-1/1").unwrap(),
            language_code: "NL".into(),
            country_code: "NL".into(),
            expiry_date: None,
            callback_url: None,
        }
    }

    #[test]
    fn absent_options_are_left_out_not_null() {
        let body = String::from_utf8(sample().to_body().unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"amount":0.10,"country_code":"NL","currency_code":"EUR","invoice_due_date":"2024-05-01T00:00:00+00:00","invoice_reference":"INV-1","language_code":"NL","merchant_reference":"INV-1/1"}"#
        );
    }

    #[test]
    fn impossible_requests_are_refused_before_sending() {
        let mut zero = sample();
        zero.amount_minor = 0;
        assert!(matches!(zero.to_body(), Err(CmError::Invalid(_))));
        // A blank merchant reference cannot be made at all.
        assert!(MerchantRef::parse(" ").is_err());
    }

    #[test]
    fn unknown_status_is_not_paid() {
        let s: StatusBody = serde_json::from_str(r#"{"status":"refunded"}"#).unwrap();
        assert_eq!(s.status, LinkStatus::Unknown);
    }
}
