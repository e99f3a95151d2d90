//! The merchant's own bank statements (README, *Bank transfers*): read them, match their
//! credits to invoices, and settle what was paid by transfer.
//!
//! - [`entry`]: the typed entries every reader produces, whatever the format.
//! - [`read`]: detection by content and the streaming readers (`camt` for camt.052,
//!   camt.053 and camt.054; `mt940` for MT940), in bounded memory at any file size.

mod camt;
/// The typed entries every reader produces (kept in [`crate::domain::statement`], as the
/// store records them).
pub mod entry {
    pub use crate::domain::statement::*;
}
pub mod import;
pub mod matching;
mod mt940;
pub mod read;

pub use entry::{Booking, Direction, Entry, Format, Item, ReadError, StatementHeader};
pub use read::{Failure, read_statements};
