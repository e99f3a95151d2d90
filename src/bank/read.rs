//! Detection by content and the streaming readers. (Being written.)

use super::entry::{Format, Item, ReadError};
use std::io::Read;

/// Why reading stopped.
#[derive(Debug)]
pub enum Failure {
    /// The file is not a statement that can be read (nothing of it may be applied).
    Unreadable(ReadError),
    /// The caller's `each` returned an error, which is handed back.
    Stopped(anyhow::Error),
}

/// Reads a statement file from `input`, detecting its format from the content, and
/// calls `each` for every statement header and entry in file order. Memory stays
/// bounded whatever the size of the file or of any one line or element.
pub fn read_statements(
    input: impl Read,
    each: impl FnMut(Item) -> anyhow::Result<()>,
) -> Result<Format, Failure> {
    let _ = (input, each);
    Err(Failure::Unreadable(ReadError::at(0, "not written yet")))
}
