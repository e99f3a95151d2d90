//! Validated newtypes: values that passed `parse` are proof of their own validity.
//!
//! Every value read from a CSV export goes through one of these before it reaches the
//! store or an API. Money is integer minor units with its currency; it never passes
//! through a float.

pub mod codes;
pub mod money;
pub mod text;

pub use codes::{Country, Language};
pub use money::{Currency, DecimalSeparator, Money};
pub use text::{CustomerName, EmailAddress, InvoiceRef};

/// Why a value was refused, in words for the rejection report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);
