//! The mail outbox: rows written with the link they announce, and the record of every
//! attempt to send them. Nothing here talks to a mail server.

use super::{Result, Store};
use crate::domain::InvoiceRef;
use crate::domain::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::invoices::{REVISION_COLUMNS, REVISION_WIDTH, RevisionData};

pub use crate::domain::MailKind;

/// Where a mail is on its way out (`outbox.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Waiting for its turn (or for its retry time).
    Queued,
    /// Being handed to the relay; a crash leaves it here, and recovery queues it again.
    Sending,
    /// The relay accepted it.
    Sent,
    /// The relay refused it for good.
    Failed,
    /// Not wanted any more (its invoice was settled, paid or replaced).
    Cancelled,
}

impl MailState {
    /// Every state.
    pub const ALL: [MailState; 5] = [
        MailState::Queued,
        MailState::Sending,
        MailState::Sent,
        MailState::Failed,
        MailState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Queued => "queued",
            MailState::Sending => "sending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
            MailState::Cancelled => "cancelled",
        }
    }
}

/// Queues a mail for a link; runs inside the transaction that records the link.
pub fn enqueue(
    db: &Store,
    invoice_id: i64,
    revision: i64,
    link_id: i64,
    kind: MailKind,
    now: Timestamp,
) -> Result<i64> {
    db.conn.prepare_cached(
        "INSERT INTO outbox (invoice_id, revision, link_id, kind, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
    )?
    .execute(params![invoice_id, revision, link_id, kind.as_str(), now])?;
    Ok(db.conn.last_insert_rowid())
}

/// Queues a reminder mail for step `step`; runs inside the transaction that records the
/// decision ([`super::reminders::record`]).
pub fn enqueue_reminder(
    db: &Store,
    invoice_id: i64,
    revision: i64,
    link_id: i64,
    step: i64,
    now: Timestamp,
) -> Result<i64> {
    db.conn
        .prepare_cached(
            "INSERT INTO outbox (invoice_id, revision, link_id, kind, state, next_attempt_at,
                             created_at, step)
         VALUES (?1, ?2, ?3, 'reminder', 'queued', ?4, ?4, ?5)",
        )?
        .execute(params![invoice_id, revision, link_id, now, step])?;
    Ok(db.conn.last_insert_rowid())
}

/// Mails a crash left in `sending`: back to `queued` (they may have been accepted; the
/// Message-ID lets the receiver recognise a duplicate). Returns how many.
pub fn recover_sending(db: &Store) -> Result<usize> {
    Ok(db.conn.execute(
        "UPDATE outbox SET state = 'queued',
                last_error = 'interrupted while sending; sent again (the receiver may see it twice)'
         WHERE state = 'sending'",
        [],
    )?)
}

/// A queued mail with everything its message needs, and what the send-time checks
/// ([`crate::policy::may_leave`]) need to know.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The row id.
    pub id: i64,
    /// What kind of mail it is.
    pub kind: MailKind,
    /// Send attempts so far.
    pub attempts: i64,
    /// The invoice's row id.
    pub invoice_id: i64,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// The invoice revision it belongs to.
    pub revision: i64,
    /// The link it announces.
    pub link_id: i64,
    /// What the revision asks of the customer.
    pub data: RevisionData,
    /// The payment page address the mail carries.
    pub link_uri: Option<String>,
    /// CM's reference of the link (`pml-…`).
    pub link_ref: Option<crate::domain::LinkRef>,
    /// The link's expiry as stored (RFC 3339), none: no expiry.
    pub link_expiry: Option<Timestamp>,
    /// Whether the invoice is still open.
    pub invoice_open: bool,
    /// Whether the mail belongs to the invoice's current revision.
    pub same_revision: bool,
    /// Whether its link is still active with its real expiry.
    pub link_live: bool,
    /// For a reminder: its step and kind.
    pub reminder: Option<(i64, super::reminders::ReminderKind)>,
    /// The highest reminder step decided to be mailed for the invoice.
    pub latest_step: Option<i64>,
    /// When the relay last accepted a mail to the invoice (RFC 3339 UTC).
    pub last_accepted_at: Option<Timestamp>,
}

/// What every read of a queued mail selects (see [`Pending`]); the reads add their own
/// `WHERE`.
fn pending_select() -> String {
    format!(
        "SELECT o.id, o.kind, o.attempts, o.invoice_id, i.reference, o.revision,
                {REVISION_COLUMNS}, l.uri,
                i.state = 'open', i.revision = o.revision,
                l.state = 'active' AND l.provisional = 0,
                o.link_id, o.step, rm.kind, l.link_ref, l.expiry_date,
                (SELECT max(x.step) FROM reminders x
                 WHERE x.invoice_id = o.invoice_id AND x.outcome = 'sent'),
                (SELECT max(s.sent_at) FROM outbox s
                 WHERE s.invoice_id = o.invoice_id AND s.state = 'sent')
         FROM outbox o
         JOIN invoices i ON i.id = o.invoice_id
         JOIN revisions r ON r.invoice_id = o.invoice_id AND r.revision = o.revision
         JOIN links l ON l.id = o.link_id
         LEFT JOIN reminders rm ON rm.invoice_id = o.invoice_id AND rm.step = o.step"
    )
}

/// Reads one row of [`pending_select`].
fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    let w = REVISION_WIDTH;
    let kind: MailKind = r.get(1)?;
    let reminder = match (
        r.get::<_, Option<i64>>(11 + w)?,
        r.get::<_, Option<super::reminders::ReminderKind>>(12 + w)?,
    ) {
        (Some(step), Some(kind)) => Some((step, kind)),
        _ => None,
    };
    Ok(Pending {
        id: r.get(0)?,
        kind,
        attempts: r.get(2)?,
        invoice_id: r.get(3)?,
        reference: r.get(4)?,
        revision: r.get(5)?,
        data: RevisionData::from_row(r, 6)?,
        link_uri: r.get(6 + w)?,
        invoice_open: r.get(7 + w)?,
        same_revision: r.get(8 + w)?,
        link_live: r.get(9 + w)?,
        link_id: r.get(10 + w)?,
        reminder,
        link_ref: r.get(13 + w)?,
        link_expiry: r.get(14 + w)?,
        latest_step: r.get(15 + w)?,
        last_accepted_at: r.get(16 + w)?,
    })
}

/// The condition of a mail whose time has come (`?1`: now); a link still on its
/// provisional expiry is never announced.
const DUE: &str = "o.state = 'queued' AND o.next_attempt_at <= ?1
           AND NOT (l.state = 'active' AND l.provisional = 1)";

/// Queued mails whose time has come, oldest first, with everything about each (the dry
/// run's read).
pub fn due(db: &Store, now: Timestamp, limit: usize) -> Result<Vec<Pending>> {
    let mut stmt = db.conn.prepare_cached(&format!(
        "{} WHERE {DUE} ORDER BY o.next_attempt_at, o.id LIMIT ?2",
        pending_select()
    ))?;
    let rows = stmt.query_map(params![now, limit as i64], pending_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids and links of the queued mails whose time has come, oldest first: what the
/// mail loop reads each time it looks at the queue; each mail is then read whole with
/// [`pending`] just before it is checked, so that it is judged on what the mails before
/// it changed.
pub fn due_ids(db: &Store, now: Timestamp, limit: usize) -> Result<Vec<(i64, i64)>> {
    let mut stmt = db.conn.prepare_cached(&format!(
        "SELECT o.id, o.link_id FROM outbox o JOIN links l ON l.id = o.link_id
         WHERE {DUE} ORDER BY o.next_attempt_at, o.id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One queued mail as it stands now; `None` once it is no longer queued.
pub fn pending(db: &Store, id: i64) -> Result<Option<Pending>> {
    Ok(db
        .conn
        .prepare_cached(&format!(
            "{} WHERE o.id = ?1 AND o.state = 'queued'",
            pending_select()
        ))?
        .query_row([id], pending_row)
        .optional()?)
}

/// A value read from the database that this program does not know: an error, never a
/// default.
/// Mails waiting in the outbox (queued, or caught mid-send by a crash): what the summary,
/// the exit-3 sentence and `/metrics` count.
pub fn count_queued(db: &Store) -> Result<i64> {
    // Two counts, each a read of its partial index (an `OR` would scan the outbox).
    Ok(db.conn.query_row(
        "SELECT (SELECT count(*) FROM outbox WHERE state = 'queued')
              + (SELECT count(*) FROM outbox WHERE state = 'sending')",
        [],
        |r| r.get(0),
    )?)
}

/// A mail that may not leave yet: it stays queued, says why, and (when given) is not
/// looked at again before `until`.
pub fn hold(db: &Store, id: i64, why: &str, until: Option<&str>) -> Result<()> {
    db.conn.execute(
        "UPDATE outbox SET last_error = ?2, next_attempt_at = coalesce(?3, next_attempt_at)
         WHERE id = ?1 AND state = 'queued'",
        params![id, why, until],
    )?;
    Ok(())
}

/// Marks a mail as being handed to the server (committed before the send).
pub fn mark_sending(db: &Store, id: i64, message_id: &str) -> Result<()> {
    db.conn.execute(
        "UPDATE outbox SET state = 'sending', message_id = ?2, attempts = attempts + 1 WHERE id = ?1",
        params![id, message_id],
    )?;
    Ok(())
}

/// The server accepted the mail.
pub fn mark_sent(db: &Store, id: i64, now: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// A transient failure: queued again for `next_attempt`.
pub fn mark_retry(db: &Store, id: i64, error: &str, next_attempt: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE outbox SET state = 'queued', last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
        params![id, error, next_attempt],
    )?;
    Ok(())
}

/// A permanent failure (5xx for the recipient, or a mail that cannot be built): not
/// retried; `status` shows it and `resend` queues it again.
pub fn mark_failed(db: &Store, id: i64, error: &str) -> Result<()> {
    db.conn.execute(
        "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// A mail that no longer makes sense (the invoice was settled, paid or replaced first).
pub fn cancel(db: &Store, id: i64, why: &str) -> Result<()> {
    db.conn.execute(
        "UPDATE outbox SET state = 'cancelled', last_error = ?2 WHERE id = ?1",
        params![id, why],
    )?;
    Ok(())
}

/// Queues the link mail of an invoice again (`resend`): `Ok(None)` when it has no
/// active link to announce.
pub fn requeue(db: &Store, reference: &InvoiceRef, now: Timestamp) -> Result<Option<i64>> {
    let live: Option<(i64, i64, i64)> = db.conn
        .query_row(
            "SELECT l.invoice_id, l.revision, l.id FROM links l JOIN invoices i ON i.id = l.invoice_id
             WHERE i.reference = ?1 AND l.state = 'active' AND i.state = 'open'",
            [reference],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((invoice_id, revision, link_id)) = live else {
        return Ok(None);
    };
    enqueue(db, invoice_id, revision, link_id, MailKind::Resend, now).map(Some)
}
