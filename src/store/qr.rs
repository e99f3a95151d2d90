//! iDEAL QR transactions: which invoice revisions need one, the intent written before
//! each create request, the record of CM's answers, and the follow-up of their status.
//! A transaction is never cancelled at CM (the API has no such call): when its invoice
//! moves on it is withdrawn here and still followed until it ends.

use super::{Result, Store};
use crate::domain::InvoiceRef;
use crate::domain::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::invoices::{REVISION_COLUMNS, REVISION_WIDTH, RevisionData};

/// An invoice revision with an active link that needs a QR transaction.
#[derive(Debug, Clone)]
pub struct QrToCreate {
    /// The invoice's row id.
    pub invoice_id: i64,
    /// The invoice revision it belongs to.
    pub revision: i64,
    /// The link's row id.
    pub link_id: i64,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// What the revision asks of the customer.
    pub data: RevisionData,
    /// The link's expiry (ISO 8601) when it has one.
    pub link_expiry: Option<Timestamp>,
    /// An unfinished earlier intent for this revision.
    pub qr_id: Option<i64>,
}

/// Revisions whose link is active and that have no QR transaction yet (or an unfinished
/// intent); the caller skips those in other currencies or out of range, once.
pub fn plan_creates(db: &Store) -> Result<Vec<QrToCreate>> {
    plan(db, None)
}

/// The revision a link just given its real expiry needs a QR transaction for, if it
/// needs one (as [`plan_creates`], for one link).
pub fn plan_for_link(db: &Store, link_id: i64) -> Result<Option<QrToCreate>> {
    Ok(plan(db, Some(link_id))?.pop())
}

fn plan(db: &Store, link_id: Option<i64>) -> Result<Vec<QrToCreate>> {
    // Two statements, not `?1 IS NULL OR l.id = ?1`: through the OR, SQLite would read
    // every active link for one.
    let filter = if link_id.is_some() {
        "l.id = ?1"
    } else {
        "?1 IS NULL"
    };
    let mut stmt = db.conn.prepare(&format!(
        "SELECT i.id, i.revision, l.id, i.reference,
                {REVISION_COLUMNS}, l.expiry_date,
                (SELECT q.id FROM qr_transactions q
                  WHERE q.invoice_id = i.id AND q.revision = i.revision AND q.state = 'creating')
         FROM invoices i
         JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
         JOIN links l ON l.invoice_id = i.id AND l.revision = i.revision AND l.state = 'active'
                         AND l.provisional = 0
         WHERE {filter} AND i.state = 'open'
           AND NOT EXISTS (SELECT 1 FROM qr_transactions q
                           WHERE q.invoice_id = i.id AND q.revision = i.revision
                             AND q.state <> 'creating')
         ORDER BY i.reference",
    ))?;
    let rows = stmt.query_map([link_id], |r| {
        Ok(QrToCreate {
            invoice_id: r.get(0)?,
            revision: r.get(1)?,
            link_id: r.get(2)?,
            reference: r.get(3)?,
            data: RevisionData::from_row(r, 4)?,
            link_expiry: r.get(4 + REVISION_WIDTH)?,
            qr_id: r.get(5 + REVISION_WIDTH)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records that a revision gets no QR (another currency, an amount out of range), so
/// that it is said once and not planned again.
pub fn record_skipped(
    db: &Store,
    q: &QrToCreate,
    purchase_id: &str,
    why: &str,
    now: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "INSERT INTO qr_transactions (invoice_id, revision, link_id, purchase_id, state,
                                      amount_cents, expires_at, last_error, created_at)
         VALUES (?1, ?2, ?3, ?4, 'skipped', ?5, '', ?6, ?7)",
        params![
            q.invoice_id,
            q.revision,
            q.link_id,
            purchase_id,
            q.data.due.minor,
            why,
            now
        ],
    )?;
    Ok(())
}

/// Writes the intent to create (or a retry of an earlier one), committed before the
/// request is sent.
pub fn record_intent(
    db: &Store,
    q: &QrToCreate,
    purchase_id: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<i64> {
    if let Some(id) = q.qr_id {
        db.conn.execute(
            "UPDATE qr_transactions SET in_flight = 1, attempts = attempts + 1, expires_at = ?2
             WHERE id = ?1",
            params![id, expires_at],
        )?;
        return Ok(id);
    }
    db.conn.execute(
        "INSERT INTO qr_transactions (invoice_id, revision, link_id, purchase_id, state, in_flight,
                                      amount_cents, expires_at, attempts, created_at)
         VALUES (?1, ?2, ?3, ?4, 'creating', 1, ?5, ?6, 1, ?7)",
        params![
            q.invoice_id,
            q.revision,
            q.link_id,
            purchase_id,
            q.data.due.minor,
            expires_at,
            now
        ],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Records CM's answer to a create.
pub fn record_created(
    db: &Store,
    id: i64,
    cm_id: &str,
    qr_url: Option<&str>,
    next_check: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "UPDATE qr_transactions SET state = 'open', in_flight = 0, cm_id = ?2, qr_url = ?3,
                next_check_at = ?4, last_error = NULL
         WHERE id = ?1",
        params![id, cm_id, qr_url, next_check],
    )?;
    Ok(())
}

/// Withdraws one transaction at once (never shown or mailed; still followed), with why.
pub fn withdraw(db: &Store, id: i64, why: &str) -> Result<()> {
    db.conn.execute(
        "UPDATE qr_transactions SET withdrawn = 1, last_error = ?2 WHERE id = ?1",
        params![id, why],
    )?;
    Ok(())
}

/// A permanent refusal: this revision gets no QR; its link still works.
pub fn record_refused(db: &Store, id: i64, message: &str) -> Result<()> {
    db.conn.execute(
        "UPDATE qr_transactions SET state = 'refused', in_flight = 0, last_error = ?2 WHERE id = ?1",
        params![id, message],
    )?;
    Ok(())
}

/// A transient failure: retried next cycle; a possible orphan when CM may have acted.
pub fn record_deferred(db: &Store, id: i64, message: &str, maybe_applied: bool) -> Result<()> {
    db.conn.execute(
        "UPDATE qr_transactions SET in_flight = 0, last_error = ?2,
                possible_orphan = possible_orphan OR ?3
         WHERE id = ?1",
        params![id, message, maybe_applied],
    )?;
    Ok(())
}

/// Create requests a crash interrupted: possible orphans. Returns their purchase ids.
pub fn recover_interrupted(db: &Store) -> Result<Vec<String>> {
    let mut stmt = db
        .conn
        .prepare("SELECT purchase_id FROM qr_transactions WHERE in_flight = 1")?;
    let found: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    db.conn.execute(
        "UPDATE qr_transactions SET in_flight = 0, possible_orphan = 1,
                last_error = 'a create request was interrupted; CM may hold an unrecorded QR transaction with this purchase id'
         WHERE in_flight = 1",
        [],
    )?;
    Ok(found)
}

/// Withdraws the open transactions whose invoice revision is no longer current and open:
/// not shown or mailed any more, still followed. Returns how many.
pub fn withdraw_stale(db: &Store) -> Result<usize> {
    Ok(db.conn.execute(
        "UPDATE qr_transactions SET withdrawn = 1
         WHERE withdrawn = 0 AND state = 'open'
           AND EXISTS (SELECT 1 FROM invoices i WHERE i.id = qr_transactions.invoice_id
                       AND (i.state <> 'open' OR i.revision <> qr_transactions.revision))",
        [],
    )?)
}

/// A transaction whose status is to be fetched.
#[derive(Debug, Clone)]
pub struct QrToCheck {
    /// The row id.
    pub id: i64,
    /// CM's transaction id.
    pub cm_id: String,
    /// The invoice's row id.
    pub invoice_id: i64,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// How many status checks it has had (the back-off step).
    pub status_checks: i64,
}

/// Open transactions due for a check (withdrawn ones included), at most `limit`.
pub fn due_for_check(db: &Store, now: Timestamp, limit: usize) -> Result<Vec<QrToCheck>> {
    let mut stmt = db.conn.prepare(
        "SELECT q.id, q.cm_id, q.invoice_id, i.reference, q.status_checks
         FROM qr_transactions q JOIN invoices i ON i.id = q.invoice_id
         WHERE q.state = 'open' AND q.cm_id IS NOT NULL AND q.next_check_at <= ?1
         ORDER BY q.next_check_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        Ok(QrToCheck {
            id: r.get(0)?,
            cm_id: r.get(1)?,
            invoice_id: r.get(2)?,
            reference: r.get(3)?,
            status_checks: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Makes a transaction due now (a webhook named it by purchase id or CM id).
pub fn request_check(db: &Store, key: &str, now: Timestamp) -> Result<usize> {
    Ok(db.conn.execute(
        "UPDATE qr_transactions SET next_check_at = ?2
         WHERE state = 'open' AND (purchase_id = ?1 OR cm_id = ?1)",
        params![key, now],
    )?)
}

/// Records a check that found the transaction still open.
pub fn record_checked(db: &Store, id: i64, next_check: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE qr_transactions SET status_checks = status_checks + 1, next_check_at = ?2
         WHERE id = ?1",
        params![id, next_check],
    )?;
    Ok(())
}

/// How an iDEAL QR transaction ended other than paid, as `qr_transactions.state` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrEnded {
    /// The payer cancelled.
    Cancelled,
    /// It passed its expiry unpaid.
    Expired,
    /// The payment failed.
    Failure,
}

impl QrEnded {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            QrEnded::Cancelled => "cancelled",
            QrEnded::Expired => "expired",
            QrEnded::Failure => "failure",
        }
    }
}

/// Records a final status other than success.
pub fn record_ended(db: &Store, id: i64, state: QrEnded) -> Result<()> {
    db.conn.execute(
        "UPDATE qr_transactions SET state = ?2, next_check_at = NULL,
                status_checks = status_checks + 1
         WHERE id = ?1",
        params![id, state.as_str()],
    )?;
    Ok(())
}

/// Records a payment through the QR code: the invoice is paid (its link is then
/// deactivated by the link step). Returns true when the invoice had already been paid
/// through its link: a double payment, flagged on the invoice.
pub fn record_success(db: &Store, id: i64, invoice_id: i64, now: Timestamp) -> Result<bool> {
    db.conn.execute(
        "UPDATE qr_transactions SET state = 'success', paid_at = ?2, next_check_at = NULL,
                status_checks = status_checks + 1
         WHERE id = ?1",
        params![id, now],
    )?;
    let stale: bool = db.conn.query_row(
        "SELECT q.revision <> i.revision FROM qr_transactions q JOIN invoices i ON i.id = q.invoice_id
         WHERE q.id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let note = stale.then_some(
        "paid through the iDEAL QR code of an earlier revision; the export now asks a different amount: check the balance",
    );
    let amount: i64 = db.conn.query_row(
        "SELECT amount_cents FROM qr_transactions WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?;
    super::invoices::to_paid(
        db,
        invoice_id,
        amount,
        super::bank::PaidBy::IdealQr,
        now,
        note,
    )
}

/// The QR of an invoice revision that is offered (open, not withdrawn): `(url, cm id)`.
pub fn offered(db: &Store, invoice_id: i64, revision: i64) -> Result<Option<(String, String)>> {
    Ok(db
        .conn
        .query_row(
            "SELECT qr_url, cm_id FROM qr_transactions
         WHERE invoice_id = ?1 AND revision = ?2 AND state = 'open' AND withdrawn = 0
           AND qr_url IS NOT NULL",
            params![invoice_id, revision],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}
