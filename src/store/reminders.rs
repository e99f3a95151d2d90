//! Reminders: which invoices have a step due (through `invoices.next_reminder_on` and its
//! partial index, never a scan of the open invoices), what a decision needs to know about
//! one invoice, and the one transaction that records a decision with its mail.

use super::{Result, Store};
use crate::domain::Timestamp;
use crate::domain::{InvoiceRef, LinkRef};
use rusqlite::{ErrorCode, OptionalExtension, params};

use super::invoices::{REVISION_COLUMNS, RevisionData, State};
use super::outbox;
use super::types::IsoDate;

pub use crate::domain::ReminderKind;

/// The live link a reminder would carry: the current revision's active link, recorded
/// with its real expiry.
#[derive(Debug, Clone)]
pub struct LiveLink {
    /// The row id.
    pub id: i64,
    /// CM's reference (`pml-…`).
    pub link_ref: LinkRef,
    /// The expiry CM holds (ISO 8601), if any.
    pub expiry_date: Option<Timestamp>,
    /// Still on its provisional expiry (never mailed yet).
    pub provisional: bool,
    /// Whether a link mail (link, replacement or resend) for it was accepted by the relay.
    pub announced: bool,
}

/// Everything a reminder decision needs to know about one invoice.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The invoice's row id.
    pub invoice_id: i64,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// Its state.
    pub state: State,
    /// Its current revision.
    pub revision: i64,
    /// What the current revision asks.
    pub data: RevisionData,
    /// The link a reminder would carry.
    pub link: Option<LiveLink>,
    /// The highest step decided so far (sent or skipped).
    pub last_step: Option<i64>,
    /// When the last mail to this invoice went out (RFC 3339 UTC): a sent mail of any
    /// kind, or a reminder still queued.
    pub last_mail_at: Option<Timestamp>,
}

/// The read of [`due`]: the condition repeats the partial index's, so SQLite uses it.
const DUE: &str = "SELECT id FROM invoices
     WHERE next_reminder_on IS NOT NULL AND next_reminder_on <= ?1
     ORDER BY next_reminder_on, id LIMIT ?2";

/// Invoice ids with a reminder date on or before `today` (local), earliest first: a range
/// read of the partial index, so only the invoices that have one due are read.
pub fn due(db: &Store, today: chrono::NaiveDate, limit: usize) -> Result<Vec<i64>> {
    let mut stmt = db.conn.prepare_cached(DUE)?;
    let rows = stmt.query_map(params![IsoDate(today), limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many invoices have a reminder date on or before `today` (for "waiting for the
/// send window").
pub fn count_due(db: &Store, today: chrono::NaiveDate) -> Result<i64> {
    Ok(db.conn.query_row(
        "SELECT count(*) FROM invoices
         WHERE next_reminder_on IS NOT NULL AND next_reminder_on <= ?1",
        [IsoDate(today)],
        |r| r.get(0),
    )?)
}

/// Reads what a decision needs about one invoice (look-ups through its keys).
pub fn subject(db: &Store, invoice_id: i64) -> Result<Option<Subject>> {
    let head = db
        .conn
        .prepare_cached(&format!(
            "SELECT i.reference, i.state, i.revision, {REVISION_COLUMNS}
             FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
             WHERE i.id = ?1"
        ))?
        .query_row([invoice_id], |r| {
            Ok((
                r.get::<_, InvoiceRef>(0)?,
                r.get::<_, State>(1)?,
                r.get::<_, i64>(2)?,
                RevisionData::from_row(r, 3)?,
            ))
        })
        .optional()?;
    let Some((reference, state, revision, data)) = head else {
        return Ok(None);
    };
    let link = db
        .conn
        .prepare_cached(
            "SELECT l.id, l.link_ref, l.expiry_date, l.provisional,
                    EXISTS (SELECT 1 FROM outbox o WHERE o.link_id = l.id AND o.state = 'sent'
                                                     AND o.kind <> 'reminder')
             FROM links l
             WHERE l.invoice_id = ?1 AND l.revision = ?2 AND l.state = 'active'
               AND l.link_ref IS NOT NULL",
        )?
        .query_row(params![invoice_id, revision], |r| {
            Ok(LiveLink {
                id: r.get(0)?,
                link_ref: r.get(1)?,
                expiry_date: r.get(2)?,
                provisional: r.get(3)?,
                announced: r.get(4)?,
            })
        })
        .optional()?;
    let last_step = db
        .conn
        .prepare_cached("SELECT max(step) FROM reminders WHERE invoice_id = ?1")?
        .query_row([invoice_id], |r| r.get(0))?;
    let last_mail_at = last_mail_at(db, invoice_id)?;
    Ok(Some(Subject {
        invoice_id,
        reference,
        state,
        revision,
        data,
        link,
        last_step,
        last_mail_at,
    }))
}

/// When the last mail to an invoice went out: its latest sent mail, or a reminder
/// decided and still queued (it counts from its decision).
pub fn last_mail_at(db: &Store, invoice_id: i64) -> Result<Option<Timestamp>> {
    Ok(db
        .conn
        .prepare_cached(
            "SELECT max(CASE WHEN state = 'sent' THEN sent_at
                         WHEN kind = 'reminder' AND (state = 'queued' OR state = 'sending')
                         THEN created_at END)
         FROM outbox WHERE invoice_id = ?1",
        )?
        .query_row([invoice_id], |r| r.get(0))?)
}

/// Sets (or clears) the date an invoice's next step may go.
pub fn schedule(db: &Store, invoice_id: i64, on: Option<chrono::NaiveDate>) -> Result<()> {
    db.conn
        .prepare_cached("UPDATE invoices SET next_reminder_on = ?2 WHERE id = ?1")?
        .execute(params![invoice_id, on.map(IsoDate)])?;
    Ok(())
}

/// The ladder settings the stored dates were computed with, if any.
pub fn ladder_settings(db: &Store) -> Result<Option<String>> {
    Ok(db
        .conn
        .query_row("SELECT settings FROM reminder_ladder", [], |r| r.get(0))
        .optional()?)
}

/// Records the ladder settings the stored dates now follow.
pub fn set_ladder_settings(db: &Store, settings: &str) -> Result<()> {
    db.conn.execute(
        "INSERT INTO reminder_ladder (only, settings) VALUES (1, ?1)
         ON CONFLICT (only) DO UPDATE SET settings = excluded.settings",
        [settings],
    )?;
    Ok(())
}

/// Open invoices with an announced link of their current revision, in id order from
/// `after`: the ones whose date is computed again when the ladder changes.
pub fn announced_open(db: &Store, after: i64, limit: usize) -> Result<Vec<i64>> {
    let mut stmt = db.conn.prepare_cached(
        "SELECT i.id FROM invoices i
         WHERE i.state = 'open' AND i.id > ?1
           AND EXISTS (SELECT 1 FROM links l JOIN outbox o ON o.link_id = l.id
                       WHERE l.invoice_id = i.id AND l.revision = i.revision
                         AND l.state = 'active' AND o.state = 'sent' AND o.kind <> 'reminder')
         ORDER BY i.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Clears every stored date (reminders were switched off).
pub fn clear_all(db: &Store) -> Result<usize> {
    Ok(db.conn.execute(
        "UPDATE invoices SET next_reminder_on = NULL WHERE next_reminder_on IS NOT NULL",
        [],
    )?)
}

/// One decision: the step mailed and the earlier ones skipped with it.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The invoice.
    pub invoice_id: i64,
    /// Its current revision.
    pub revision: i64,
    /// The link the mail carries.
    pub link_id: i64,
    /// The step mailed.
    pub step: i64,
    /// Its kind.
    pub kind: ReminderKind,
    /// Earlier steps due at the same time, recorded as skipped.
    pub skipped: &'a [i64],
    /// The date the next step may go, if any (`YYYY-MM-DD`).
    pub next_on: Option<chrono::NaiveDate>,
    /// Now (RFC 3339 UTC).
    pub now: Timestamp,
}

/// Records a decision and queues its mail in one transaction. `Ok(None)` when one of its
/// steps was decided already (another run got there first): nothing is written.
pub fn record(db: &Store, d: &Decision<'_>) -> Result<Option<i64>> {
    let tx = db.immediate()?;
    let written = (|| -> Result<i64> {
        let mut insert = tx.conn.prepare_cached(
            "INSERT INTO reminders (invoice_id, step, revision, outcome, kind, outbox_id, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for step in d.skipped {
            insert.execute(params![
                d.invoice_id,
                step,
                d.revision,
                "skipped",
                None::<&str>,
                None::<i64>,
                d.now
            ])?;
        }
        let mail =
            outbox::enqueue_reminder(&tx, d.invoice_id, d.revision, d.link_id, d.step, d.now)?;
        insert.execute(params![
            d.invoice_id,
            d.step,
            d.revision,
            "sent",
            d.kind.as_str(),
            mail,
            d.now
        ])?;
        schedule(&tx, d.invoice_id, d.next_on)?;
        Ok(mail)
    })();
    match written {
        Ok(mail) => {
            tx.commit()?;
            Ok(Some(mail))
        }
        // Only the key of `reminders`: any other constraint is a fault, not a race.
        Err(super::Error(rusqlite::Error::SqliteFailure(e, _)))
            if e.code == ErrorCode::ConstraintViolation
                && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A reminder overtaken before it left (a later step was decided, or a before-due
/// reminder could only go after the due date): its step is recorded `skipped` and its
/// mail cancelled, in one transaction.
pub fn skip_queued(
    db: &Store,
    outbox_id: i64,
    invoice_id: i64,
    step: i64,
    why: &str,
) -> Result<()> {
    let tx = db.immediate()?;
    tx.conn
        .prepare_cached(
            "UPDATE reminders SET outcome = 'skipped', kind = NULL
         WHERE invoice_id = ?1 AND step = ?2 AND outbox_id = ?3",
        )?
        .execute(params![invoice_id, step, outbox_id])?;
    outbox::cancel(&tx, outbox_id, why)?;
    tx.commit()
}

/// Reminders mailed to an invoice (decided and accepted by the relay).
pub fn sent_count(db: &Store, invoice_id: i64) -> Result<i64> {
    Ok(db
        .conn
        .prepare_cached(
            "SELECT count(*) FROM reminders r JOIN outbox o ON o.id = r.outbox_id
         WHERE r.invoice_id = ?1 AND o.state = 'sent'",
        )?
        .query_row([invoice_id], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cycle's read of due reminders is a range of the partial index, never a scan of
    /// the invoices: its cost is the invoices that have one due.
    #[test]
    fn due_reminders_are_read_through_their_index() {
        let store = crate::store::Store::open_in_memory().unwrap();
        let db = &store;
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUE}"))
            .unwrap()
            .query_map(params!["2030-01-01", 10], |r| r.get::<_, String>(3))
            .unwrap()
            .map(rusqlite::Result::unwrap)
            .collect();
        let plan = plan.join("; ");
        assert!(
            plan.contains("USING COVERING INDEX invoices_reminder_due")
                || plan.contains("USING INDEX invoices_reminder_due"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN invoices"), "{plan}");
        assert!(
            due(db, chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(), 10)
                .unwrap()
                .is_empty()
        );
    }
}
