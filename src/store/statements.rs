//! camt.053 statements: their numbers and balances, which continue from one statement to
//! the next, and the payments an `export-paid --new` has written. Runs inside the caller's
//! transaction.

use super::{Result, Store};
use rusqlite::{OptionalExtension, params};

use super::payments::PaymentKind;
use crate::domain::{Currency, Timestamp};

/// The last statement of a currency: its sequence number and closing balance.
pub fn last(db: &Store, currency: Currency) -> Result<Option<(i64, i64)>> {
    Ok(db.conn.query_row(
        "SELECT seq, closing_minor FROM statements WHERE currency = ?1 ORDER BY seq DESC LIMIT 1",
        [currency],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// The currencies that have a statement chain (an earlier statement recorded), in code
/// order: each gets a statement in every export, its balance carried on.
pub fn chains(db: &Store) -> Result<Vec<Currency>> {
    let mut stmt = db
        .conn
        .prepare("SELECT DISTINCT currency FROM statements ORDER BY currency")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One statement about to be written.
#[derive(Debug, Clone)]
pub struct NewStatement<'a> {
    /// The file's message id.
    pub msg_id: &'a str,
    /// The statement's own id.
    pub stmt_id: &'a str,
    /// Its currency.
    pub currency: Currency,
    /// Its electronic sequence number.
    pub seq: i64,
    /// Opening balance (the previous closing balance).
    pub opening_minor: i64,
    /// Closing balance.
    pub closing_minor: i64,
    /// Number of entries.
    pub entries: i64,
    /// Written by `--new` (its payments are marked).
    pub new_only: bool,
    /// When.
    pub created_at: Timestamp,
}

/// Records a statement; returns its row id.
pub fn record(db: &Store, s: &NewStatement<'_>) -> Result<i64> {
    db.conn.execute(
        "INSERT INTO statements (msg_id, stmt_id, currency, seq, opening_minor, closing_minor,
                                 entries, new_only, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            s.msg_id,
            s.stmt_id,
            s.currency,
            s.seq,
            s.opening_minor,
            s.closing_minor,
            s.entries,
            s.new_only,
            s.created_at
        ],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Marks a payment as written by a `--new` export: the statement `statement_id`, or a
/// CSV (`None`).
pub fn mark(
    db: &Store,
    kind: PaymentKind,
    payment_id: i64,
    statement_id: Option<i64>,
    now: Timestamp,
) -> Result<()> {
    db.conn
        .prepare_cached(
            "INSERT INTO statement_payments (kind, payment_id, statement_id, exported_at)
         VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![kind, payment_id, statement_id, now])?;
    Ok(())
}

/// The number of the next file (for its message id).
pub fn next_file_number(db: &Store) -> Result<i64> {
    Ok(db.conn.query_row(
        "SELECT count(DISTINCT msg_id) + 1 FROM statements",
        [],
        |r| r.get(0),
    )?)
}
