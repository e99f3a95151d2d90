//! Imports: one row per applied file, keyed by the SHA-256 of its content, so that the
//! same bytes dropped again (or re-read after a crash before the archive move) change
//! nothing.

use super::{Result, Store};
use crate::domain::InvoiceRef;
use crate::domain::Timestamp;
use rusqlite::{OptionalExtension, params};

/// Where a file came from: the inbox (moved to the archive afterwards) or a command-line
/// argument (never moved or changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportSource {
    /// From `inbox.dir` (moved to the archive afterwards).
    Inbox,
    /// Named on the command line (never moved).
    Argument,
}

impl ImportSource {
    /// Every source.
    pub const ALL: [ImportSource; 2] = [ImportSource::Inbox, ImportSource::Argument];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportSource::Inbox => "inbox",
            ImportSource::Argument => "argument",
        }
    }
}

/// The counts recorded for an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Rows read (blank lines aside).
    pub rows_read: u64,
    /// Rows applied.
    pub rows_accepted: u64,
    /// Rows rejected (see the rejection report).
    pub rows_rejected: u64,
    /// Rows skipped (credit notes, zero amounts).
    pub rows_skipped: u64,
    /// Invoices seen for the first time.
    pub invoices_new: u64,
    /// Invoices that got a new revision.
    pub invoices_changed: u64,
    /// Invoices settled elsewhere by this file.
    pub invoices_settled: u64,
    /// Snapshot settlement was held back (stored); the reason is in `snapshot_held`.
    pub snapshot_guard: bool,
    /// Why snapshot settlement was held back, in words (not stored).
    pub snapshot_held: Option<String>,
    /// Invoices paid through their link that this export lists with another payment.
    pub paid_changed: Vec<InvoiceRef>,
}

/// A previous import of the same content: its file name and time.
#[derive(Debug, Clone)]
pub struct PriorImport {
    /// The first import of this content.
    pub id: i64,
    /// The file name it had.
    pub file_name: String,
    /// When it was imported (RFC 3339 UTC).
    pub imported_at: Timestamp,
    /// The latest attempt at this content (the first import, or its last `--again`).
    pub latest: i64,
}

/// The earlier import with this content hash, if any.
pub fn find_by_hash(db: &Store, sha256: &str) -> Result<Option<PriorImport>> {
    Ok(db
        .conn
        .query_row(
            "SELECT f.id, f.file_name, f.imported_at,
                (SELECT max(a.id) FROM imports a WHERE a.sha256 = f.sha256)
         FROM imports f WHERE f.sha256 = ?1 AND f.again_of IS NULL",
            [sha256],
            |r| {
                Ok(PriorImport {
                    id: r.get(0)?,
                    file_name: r.get(1)?,
                    imported_at: r.get(2)?,
                    latest: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Records that `import_id` rejected the row starting on `line`.
pub fn note_rejected(db: &Store, import_id: i64, line: i64) -> Result<()> {
    db.conn
        .prepare_cached("INSERT OR IGNORE INTO rejected_lines (import_id, line) VALUES (?1, ?2)")?
        .execute(params![import_id, line])?;
    Ok(())
}

/// The lines `import_id` rejected.
pub fn rejected_lines(db: &Store, import_id: i64) -> Result<std::collections::HashSet<i64>> {
    let mut stmt = db
        .conn
        .prepare("SELECT line FROM rejected_lines WHERE import_id = ?1")?;
    let lines = stmt.query_map([import_id], |r| r.get(0))?;
    Ok(lines.collect::<rusqlite::Result<_>>()?)
}

/// Records the start of an import inside the file's transaction; returns its id.
pub fn begin(
    db: &Store,
    file_name: &str,
    sha256: &str,
    source: ImportSource,
    now: Timestamp,
    again_of: Option<i64>,
) -> Result<i64> {
    db.conn.execute(
        "INSERT INTO imports (file_name, sha256, source, imported_at, again_of)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![file_name, sha256, source, now, again_of],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Records the final counts of an import, in the same transaction as its rows.
pub fn finish(db: &Store, id: i64, c: &ImportCounts) -> Result<()> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    db.conn.execute(
        "UPDATE imports SET rows_read = ?2, rows_accepted = ?3, rows_rejected = ?4,
                rows_skipped = ?5, invoices_new = ?6, invoices_changed = ?7,
                invoices_settled = ?8, snapshot_guard = ?9
         WHERE id = ?1",
        params![
            id,
            n(c.rows_read),
            n(c.rows_accepted),
            n(c.rows_rejected),
            n(c.rows_skipped),
            n(c.invoices_new),
            n(c.invoices_changed),
            n(c.invoices_settled),
            c.snapshot_guard
        ],
    )?;
    Ok(())
}
