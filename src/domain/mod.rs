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
pub mod creditor;
pub mod money;
pub mod statement;
pub mod text;
pub mod time;

pub use codes::{Country, Language};
pub use creditor::CreditorRef;
pub use money::{Currency, DecimalSeparator, Money};
pub use text::{CustomerName, EmailAddress, InvoiceRef, LinkRef, MerchantRef};
pub use time::Timestamp;

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

/// Whether the customer is a business or a consumer (`customer_type`: `b2b` | `b2c`): a
/// consumer's last reminder may be the statutory final notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerType {
    /// A business: ordinary reminders only.
    #[default]
    B2b,
    /// A consumer: the final notice of article 6:96 BW applies.
    B2c,
}

impl CustomerType {
    /// `b2b` or `b2c`, case-insensitive, surrounding spaces ignored.
    pub fn parse(s: &str) -> Result<CustomerType, DomainError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "b2b" => Ok(CustomerType::B2b),
            "b2c" => Ok(CustomerType::B2c),
            _ => Err(DomainError(format!(
                "{} is not a customer type (b2b or b2c)",
                quoted(s)
            ))),
        }
    }

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerType::B2b => "b2b",
            CustomerType::B2c => "b2c",
        }
    }
}

/// What kind of reminder a step is, which picks its templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderKind {
    /// A step on or before the due date: a friendly reminder that payment is due.
    BeforeDue,
    /// A step after the due date: the invoice is overdue.
    Overdue,
    /// A consumer's last step: the statutory notice before collection costs (article
    /// 6:96 BW).
    FinalNotice,
}

impl ReminderKind {
    /// The stored name, also the template name prefix (`nl.overdue.txt`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::BeforeDue => "before_due",
            ReminderKind::Overdue => "overdue",
            ReminderKind::FinalNotice => "final_notice",
        }
    }

    /// Every kind.
    pub const ALL: [ReminderKind; 3] = [
        ReminderKind::BeforeDue,
        ReminderKind::Overdue,
        ReminderKind::FinalNotice,
    ];
}

/// Why a mail is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// The first link of an invoice.
    Link,
    /// A new link replacing an earlier one (the mail says the old one no longer works).
    Replacement,
    /// An operator asked for it again (`resend`).
    Resend,
    /// A reminder step (its kind is in `reminders`).
    Reminder,
}

impl MailKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Link => "link",
            MailKind::Replacement => "replacement",
            MailKind::Resend => "resend",
            MailKind::Reminder => "reminder",
        }
    }

    /// Every kind.
    pub const ALL: [MailKind; 4] = [
        MailKind::Link,
        MailKind::Replacement,
        MailKind::Resend,
        MailKind::Reminder,
    ];
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
    fn customer_types() {
        assert_eq!(CustomerType::parse(" B2C "), Ok(CustomerType::B2c));
        assert_eq!(CustomerType::parse("b2b"), Ok(CustomerType::B2b));
        let e = CustomerType::parse("consumer").unwrap_err();
        assert_eq!(e.0, "\"consumer\" is not a customer type (b2b or b2c)");
    }

    #[test]
    fn domain_error_displays_the_reason() {
        let e = DomainError("amount is empty".into());
        assert_eq!(e.to_string(), "amount is empty");
    }
}
