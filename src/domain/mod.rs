//! Validated newtypes: values that passed `parse` are proof of their own validity.
//!
//! Every value read from a CSV export goes through one of these before it reaches the
//! store or an API. Money is integer minor units with its currency; it never passes
//! through a float.
//!
//! This module owns the rules for what a valid amount, currency, language, country,
//! invoice reference, customer name and e-mail address is, and the plain-words reason
//! when one is not; and one rule of money: the statutory scale of collection costs
//! ([`collection`]), which the consumer's final notice states. It never reads files, talks to the network or decides what to do
//! with a valid value (skipping zero or negative amounts is the caller's choice).
#![warn(missing_docs)]

pub mod codes;
pub mod collection;
pub mod money;
pub mod text;

pub use codes::{Country, Language};
pub use money::{Currency, DecimalSeparator, Money};
pub use text::{CustomerName, EmailAddress, InvoiceRef};

/// Why a value was refused, in words for the rejection report.
///
/// The text is the whole reason ("\"EURO\" is not an ISO 4217 currency code"): the
/// ingest layer adds the line and the column, so the reason never repeats them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

/// How many characters of an offending value a reason quotes.
const QUOTE_MAX_CHARS: usize = 40;

/// `s` in double quotes for a reason: at most [`QUOTE_MAX_CHARS`] characters (then `…`),
/// control characters escaped, so that a reason stays one short, readable line even
/// when the value was a megabyte of garbage or carried a line break.
pub(crate) fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &s[..cut])),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_short_values_whole() {
        assert_eq!(quoted("EURO"), "\"EURO\"");
        assert_eq!(quoted("€ 12,50"), "\"€ 12,50\"");
    }

    #[test]
    fn quoted_escapes_line_breaks() {
        assert_eq!(quoted("a\r\nb"), "\"a\\r\\nb\"");
    }

    #[test]
    fn quoted_truncates_long_values() {
        let long = "x".repeat(100);
        let q = quoted(&long);
        assert_eq!(q, format!("\"{}…\"", "x".repeat(40)));
        // exactly at the limit: not truncated
        let forty = "é".repeat(40);
        assert_eq!(quoted(&forty), format!("\"{forty}\""));
    }

    #[test]
    fn domain_error_displays_the_reason() {
        let e = DomainError("amount is empty".into());
        assert_eq!(e.to_string(), "amount is empty");
    }
}
