//! The mail outbox: rows written with the link they announce, and the record of every
//! attempt to send them. Nothing here talks to a mail server.

use rusqlite::{Connection, OptionalExtension, params};

use super::invoices::{REVISION_COLUMNS, REVISION_WIDTH, RevisionData};

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
    fn as_str(self) -> &'static str {
        match self {
            MailKind::Link => "link",
            MailKind::Replacement => "replacement",
            MailKind::Resend => "resend",
            MailKind::Reminder => "reminder",
        }
    }
}

/// Queues a mail for a link; runs inside the transaction that records the link.
pub fn enqueue(
    conn: &Connection,
    invoice_id: i64,
    revision: i64,
    link_id: i64,
    kind: MailKind,
    now: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (invoice_id, revision, link_id, kind, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
    )?
    .execute(params![invoice_id, revision, link_id, kind.as_str(), now])?;
    Ok(conn.last_insert_rowid())
}

/// Queues a reminder mail for step `step`; runs inside the transaction that records the
/// decision ([`super::reminders::record`]).
pub fn enqueue_reminder(
    conn: &Connection,
    invoice_id: i64,
    revision: i64,
    link_id: i64,
    step: i64,
    now: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (invoice_id, revision, link_id, kind, state, next_attempt_at,
                             created_at, step)
         VALUES (?1, ?2, ?3, 'reminder', 'queued', ?4, ?4, ?5)",
    )?
    .execute(params![invoice_id, revision, link_id, now, step])?;
    Ok(conn.last_insert_rowid())
}

/// Mails a crash left in `sending`: back to `queued` (they may have been accepted; the
/// Message-ID lets the receiver recognise a duplicate). Returns how many.
pub fn recover_sending(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET state = 'queued',
                last_error = 'interrupted while sending; sent again (the receiver may see it twice)'
         WHERE state = 'sending'",
        [],
    )
}

/// A queued mail with everything its message needs.
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
    pub reference: String,
    /// The invoice revision it belongs to.
    pub revision: i64,
    /// The link it announces.
    pub link_id: i64,
    /// What the revision asks of the customer.
    pub data: RevisionData,
    /// The payment page address the mail carries.
    pub link_uri: Option<String>,
    /// Whether the mail still makes sense: its link is active and its invoice open.
    pub still_wanted: bool,
    /// For a reminder: its step and kind.
    pub reminder: Option<(i64, super::reminders::ReminderKind)>,
}

/// Queued mails whose time has come, oldest first.
pub fn due(conn: &Connection, now: &str, limit: usize) -> rusqlite::Result<Vec<Pending>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT o.id, o.kind, o.attempts, o.invoice_id, i.reference, o.revision,
                {REVISION_COLUMNS}, l.uri,
                l.state = 'active' AND i.state = 'open' AND i.revision = o.revision,
                o.link_id, o.step, rm.kind
         FROM outbox o
         JOIN invoices i ON i.id = o.invoice_id
         JOIN revisions r ON r.invoice_id = o.invoice_id AND r.revision = o.revision
         JOIN links l ON l.id = o.link_id
         LEFT JOIN reminders rm ON rm.invoice_id = o.invoice_id AND rm.step = o.step
         WHERE o.state = 'queued' AND o.next_attempt_at <= ?1
           AND NOT (l.state = 'active' AND l.provisional = 1)
         ORDER BY o.next_attempt_at, o.id LIMIT ?2",
    ))?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        let kind: String = r.get(1)?;
        Ok(Pending {
            id: r.get(0)?,
            kind: match kind.as_str() {
                "replacement" => MailKind::Replacement,
                "resend" => MailKind::Resend,
                "reminder" => MailKind::Reminder,
                _ => MailKind::Link,
            },
            attempts: r.get(2)?,
            invoice_id: r.get(3)?,
            reference: r.get(4)?,
            revision: r.get(5)?,
            data: RevisionData::from_row(r, 6)?,
            link_uri: r.get(6 + REVISION_WIDTH)?,
            still_wanted: r.get(7 + REVISION_WIDTH)?,
            link_id: r.get(8 + REVISION_WIDTH)?,
            reminder: match (
                r.get::<_, Option<i64>>(9 + REVISION_WIDTH)?,
                r.get::<_, Option<String>>(10 + REVISION_WIDTH)?,
            ) {
                (Some(step), Some(kind)) => {
                    super::reminders::ReminderKind::from_db(&kind).map(|k| (step, k))
                }
                _ => None,
            },
        })
    })?;
    rows.collect()
}

/// Queued mails (any time), for the summary.
pub fn count_queued(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM outbox WHERE state = 'queued'",
        [],
        |r| r.get(0),
    )
}

/// Marks a mail as being handed to the server (committed before the send).
pub fn mark_sending(conn: &Connection, id: i64, message_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'sending', message_id = ?2, attempts = attempts + 1 WHERE id = ?1",
        params![id, message_id],
    )?;
    Ok(())
}

/// The server accepted the mail.
pub fn mark_sent(conn: &Connection, id: i64, now: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// A transient failure: queued again for `next_attempt`.
pub fn mark_retry(
    conn: &Connection,
    id: i64,
    error: &str,
    next_attempt: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'queued', last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
        params![id, error, next_attempt],
    )?;
    Ok(())
}

/// A permanent failure (5xx for the recipient, or a mail that cannot be built): not
/// retried; `status` shows it and `resend` queues it again.
pub fn mark_failed(conn: &Connection, id: i64, error: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// A mail that no longer makes sense (the invoice was settled, paid or replaced first).
pub fn cancel(conn: &Connection, id: i64, why: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'cancelled', last_error = ?2 WHERE id = ?1",
        params![id, why],
    )?;
    Ok(())
}

/// Queues the link mail of an invoice again (`resend`): `Ok(None)` when it has no
/// active link to announce.
pub fn requeue(conn: &Connection, reference: &str, now: &str) -> rusqlite::Result<Option<i64>> {
    let live: Option<(i64, i64, i64)> = conn
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
    enqueue(conn, invoice_id, revision, link_id, MailKind::Resend, now).map(Some)
}
