//! Payment links: the plan the link step derives from invoice state, the intent written
//! before every create request, and the record of each answer.
//!
//! The invariant the database enforces: at most one live link (`creating`, `active` or
//! `deactivating`) per invoice. A replacement is therefore created only after the old
//! link is deactivated.

use super::{Result, Store};
use crate::domain::Timestamp;
use crate::domain::{InvoiceRef, LinkRef, MerchantRef};
use rusqlite::{OptionalExtension, params};

use super::invoices::{REVISION_COLUMNS, REVISION_WIDTH, RevisionData};

/// An invoice revision that needs a link created (or a create retried).
#[derive(Debug, Clone)]
pub struct ToCreate {
    /// The invoice's row id.
    pub invoice_id: i64,
    /// The invoice revision it belongs to.
    pub revision: i64,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// What the revision asks of the customer.
    pub data: RevisionData,
    /// The earlier intent for this revision, when a create is being retried.
    pub link_id: Option<i64>,
    /// Whether an older revision had a link (this is a replacement).
    pub replaces: bool,
    /// Links of this revision that lapsed at their provisional expiry before they could
    /// be given their real one (never mailed); the next link gets a merchant reference
    /// of its own.
    pub lapsed: i64,
}

impl ToCreate {
    /// The merchant reference this create goes out under (see [`MerchantRef::of`]).
    pub fn merchant_reference(&self) -> MerchantRef {
        MerchantRef::of(&self.reference, self.revision, self.lapsed)
    }
}

/// Where a payment link is in its life (`links.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The create intent is recorded; CM's answer is not (yet).
    Creating,
    /// CM made it; it can be paid.
    Active,
    /// Its deactivation was started but not confirmed.
    Deactivating,
    /// Deactivated at CM.
    Inactive,
    /// Paid.
    Paid,
    /// CM refused to make it.
    Failed,
}

impl LinkState {
    /// Every state.
    pub const ALL: [LinkState; 6] = [
        LinkState::Creating,
        LinkState::Active,
        LinkState::Deactivating,
        LinkState::Inactive,
        LinkState::Paid,
        LinkState::Failed,
    ];

    /// The stored name, also what `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Creating => "creating",
            LinkState::Active => "active",
            LinkState::Deactivating => "deactivating",
            LinkState::Inactive => "inactive",
            LinkState::Paid => "paid",
            LinkState::Failed => "failed",
        }
    }

    /// Whether the link can still be paid (or is about to be deactivated).
    pub fn is_live(self) -> bool {
        matches!(self, LinkState::Active | LinkState::Deactivating)
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a live link must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeactivateReason {
    /// A newer revision replaces it.
    Replaced,
    /// The invoice is settled elsewhere, paid, expired or failed.
    NotOpen,
    /// An operator asked (`deactivate INVOICE`).
    Operator,
    /// It lapsed at its provisional expiry before it got its real one (never mailed).
    ProvisionalLapsed,
    /// It passed its expiry date unpaid.
    Expired,
    /// CM recorded another amount than the one asked; switched off, never mailed.
    AmountMismatch,
}

impl DeactivateReason {
    /// Every reason.
    pub const ALL: [DeactivateReason; 6] = [
        DeactivateReason::Replaced,
        DeactivateReason::NotOpen,
        DeactivateReason::Operator,
        DeactivateReason::ProvisionalLapsed,
        DeactivateReason::Expired,
        DeactivateReason::AmountMismatch,
    ];

    /// Stored in `links.deactivation_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeactivateReason::Replaced => "replaced",
            DeactivateReason::NotOpen => "invoice_not_open",
            DeactivateReason::Operator => "operator",
            DeactivateReason::ProvisionalLapsed => "provisional_lapsed",
            DeactivateReason::Expired => "expired",
            DeactivateReason::AmountMismatch => "amount_mismatch",
        }
    }
}

/// A live link that must be deactivated.
#[derive(Debug, Clone)]
pub struct ToDeactivate {
    /// The link's row id.
    pub link_id: i64,
    /// The invoice's row id.
    pub invoice_id: i64,
    /// CM's reference of the link (`pml-…`).
    pub link_ref: LinkRef,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// Why, in words or as a kind.
    pub reason: DeactivateReason,
    /// The invoice's state, for the plan.
    pub invoice_state: super::invoices::State,
}

/// Active links whose invoice is no longer open or whose revision is no longer current,
/// and every link whose deactivation was started but not confirmed: read from the live
/// links (the partial index `links_by_state`, whose condition the query repeats so that
/// SQLite uses it), never from all links ever made.
pub fn plan_deactivations(db: &Store) -> Result<Vec<ToDeactivate>> {
    let mut stmt = db.conn.prepare(
        "SELECT l.id, l.link_ref, i.reference, i.state, l.revision = i.revision,
                l.deactivation_reason, l.invoice_id
         FROM links l JOIN invoices i ON i.id = l.invoice_id
         WHERE l.link_ref IS NOT NULL
           AND (l.state = 'creating' OR l.state = 'active' OR l.state = 'deactivating')
           AND (l.state = 'deactivating'
                OR (l.state = 'active' AND (i.state <> 'open' OR l.revision <> i.revision)))
         ORDER BY i.reference",
    )?;
    let rows = stmt.query_map([], |r| {
        let current: bool = r.get(4)?;
        let stored: Option<DeactivateReason> = r.get(5)?;
        Ok(ToDeactivate {
            link_id: r.get(0)?,
            invoice_id: r.get(6)?,
            link_ref: r.get(1)?,
            reference: r.get(2)?,
            invoice_state: r.get(3)?,
            reason: match stored {
                Some(DeactivateReason::Operator) => DeactivateReason::Operator,
                _ if current => DeactivateReason::NotOpen,
                _ => DeactivateReason::Replaced,
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether invoice `i` needs a link created now: it is open, its current revision has no
/// link yet (or an unfinished intent, or only links that lapsed at their provisional
/// expiry), and it holds no live link of another revision.
const NEEDS_CREATE: &str = "i.state = 'open'
           AND NOT EXISTS (SELECT 1 FROM links l
                           WHERE l.invoice_id = i.id AND l.revision = i.revision
                             AND l.state <> 'creating'
                             AND coalesce(l.deactivation_reason, '') <> 'provisional_lapsed')
           AND NOT EXISTS (SELECT 1 FROM links l
                           WHERE l.invoice_id = i.id AND l.revision <> i.revision
                             AND l.state IN ('creating', 'active', 'deactivating'))";

/// Open invoices whose current revision needs a link (see `NEEDS_CREATE`), found through
/// the work queue (schema 6): invoices new since the last plan, and those a change has
/// queued since. Entries that need no create are dropped from the queue; the ones
/// returned stay until their link is recorded.
pub fn plan_creates(db: &Store) -> Result<Vec<ToCreate>> {
    let sp = db.savepoint()?;
    sp.conn.execute(
        "INSERT OR IGNORE INTO link_work
         SELECT id FROM invoices
         WHERE id > (SELECT invoice_id FROM link_work_mark) AND state = 'open'",
        [],
    )?;
    sp.conn.execute(
        "UPDATE link_work_mark SET invoice_id = (SELECT coalesce(max(id), 0) FROM invoices)",
        [],
    )?;
    sp.conn.execute(
        &format!(
            "DELETE FROM link_work WHERE NOT EXISTS
               (SELECT 1 FROM invoices i WHERE i.id = link_work.invoice_id AND {NEEDS_CREATE})"
        ),
        [],
    )?;
    let plan = {
        let mut stmt = sp.conn.prepare(&format!(
            "SELECT i.id, i.revision, i.reference,
                    {REVISION_COLUMNS},
                    (SELECT l.id FROM links l
                      WHERE l.invoice_id = i.id AND l.revision = i.revision AND l.state = 'creating'),
                    EXISTS (SELECT 1 FROM links l WHERE l.invoice_id = i.id AND l.revision < i.revision),
                    (SELECT count(*) FROM links l
                      WHERE l.invoice_id = i.id AND l.revision = i.revision
                        AND l.deactivation_reason = 'provisional_lapsed')
             FROM link_work w
             CROSS JOIN invoices i ON i.id = w.invoice_id  -- the queue drives: never a scan of invoices
             JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
             ORDER BY i.reference",
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(ToCreate {
                invoice_id: r.get(0)?,
                revision: r.get(1)?,
                reference: r.get(2)?,
                data: RevisionData::from_row(r, 3)?,
                link_id: r.get(3 + REVISION_WIDTH)?,
                replaces: r.get(4 + REVISION_WIDTH)?,
                lapsed: r.get(5 + REVISION_WIDTH)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    sp.commit()?;
    Ok(plan)
}

/// Create requests that a crash interrupted (intent written, no answer recorded): they
/// become possible orphans. Returns `(invoice reference, merchant reference)` of each.
pub fn recover_interrupted(db: &Store) -> Result<Vec<(InvoiceRef, MerchantRef)>> {
    let mut stmt = db.conn.prepare(
        "SELECT i.reference, l.merchant_reference
         FROM links l INDEXED BY links_in_flight JOIN invoices i ON i.id = l.invoice_id
         WHERE l.in_flight = 1 ORDER BY i.reference",
    )?;
    let found: Vec<(InvoiceRef, MerchantRef)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    db.conn.execute(
        "UPDATE links SET in_flight = 0, possible_orphan = 1,
                last_error = 'a create request was interrupted (crash or kill); CM may hold an unrecorded link with this merchant reference'
         WHERE in_flight = 1",
        [],
    )?;
    Ok(found)
}

/// Writes the intent to create (or retries an earlier one): state `creating`,
/// `in_flight = 1`. Committed by the caller before the request is sent.
pub fn record_intent(
    db: &Store,
    c: &ToCreate,
    expiry_date: Option<Timestamp>,
    now: Timestamp,
) -> Result<i64> {
    if let Some(id) = c.link_id {
        db.conn.execute(
            "UPDATE links SET in_flight = 1, attempts = attempts + 1, expiry_date = ?2 WHERE id = ?1",
            params![id, expiry_date],
        )?;
        return Ok(id);
    }
    db.conn.execute(
        "INSERT INTO links (invoice_id, revision, merchant_reference, state, in_flight,
                            amount_minor, currency, expiry_date, attempts, created_at)
         VALUES (?1, ?2, ?3, 'creating', 1, ?4, ?5, ?6, 1, ?7)",
        params![
            c.invoice_id,
            c.revision,
            c.merchant_reference(),
            c.data.due.minor,
            c.data.currency(),
            expiry_date,
            now
        ],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Records CM's answer to a create: the link is active with its provisional expiry (no
/// mail may announce it until [`record_extended`]), its first status check due at
/// `next_check`.
pub fn record_created(
    db: &Store,
    link_id: i64,
    link_ref: &LinkRef,
    uri: &str,
    now: Timestamp,
    next_check: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET state = 'active', in_flight = 0, link_ref = ?2, uri = ?3,
                cm_status = 'open', activated_at = ?4, last_error = NULL, next_check_at = ?5,
                provisional = 1
         WHERE id = ?1",
        params![link_id, link_ref, uri, now, next_check],
    )?;
    Ok(())
}

/// A recorded link still on its provisional expiry.
#[derive(Debug, Clone)]
pub struct ToExtend {
    /// The link's row id.
    pub link_id: i64,
    /// CM's reference of the link (`pml-…`).
    pub link_ref: LinkRef,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// The revision's due date (`YYYY-MM-DD`), from which the real expiry follows.
    pub due_date: chrono::NaiveDate,
}

/// Active links still on their provisional expiry (found through a partial index).
pub fn provisional_links(db: &Store) -> Result<Vec<ToExtend>> {
    let mut stmt = db.conn.prepare(
        "SELECT l.id, l.link_ref, i.reference, r.due_date
         FROM links l INDEXED BY links_provisional
         JOIN invoices i ON i.id = l.invoice_id
         JOIN revisions r ON r.invoice_id = l.invoice_id AND r.revision = l.revision
         WHERE l.provisional = 1 AND l.state = 'active' AND l.link_ref IS NOT NULL
         ORDER BY l.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ToExtend {
            link_id: r.get(0)?,
            link_ref: r.get(1)?,
            reference: r.get(2)?,
            due_date: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records that CM holds the link's real expiry: from now on a mail may announce it.
pub fn record_extended(db: &Store, link_id: i64, expiry_date: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET provisional = 0, expiry_date = ?2, last_error = NULL WHERE id = ?1",
        params![link_id, expiry_date],
    )?;
    Ok(())
}

/// A link whose payment status is to be fetched.
#[derive(Debug, Clone)]
pub struct ToCheck {
    /// The link's row id.
    pub link_id: i64,
    /// CM's reference of the link (`pml-…`).
    pub link_ref: LinkRef,
    /// The invoice's row id.
    pub invoice_id: i64,
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// How many status checks it has had (the back-off step).
    pub status_checks: i64,
    /// Past its expiry date: a last check, then `expired` unless paid.
    pub expired: bool,
}

/// Active links due for a status check (their back-off time has come, a callback named
/// them, or they expired), oldest due first, at most `limit`.
pub fn due_for_check(db: &Store, now: Timestamp, limit: usize) -> Result<Vec<ToCheck>> {
    let mut stmt = db.conn.prepare(
        "SELECT l.id, l.link_ref, l.invoice_id, i.reference, l.status_checks,
                l.expiry_date IS NOT NULL AND l.expiry_date < ?1
         FROM links l JOIN invoices i ON i.id = l.invoice_id
         WHERE l.state = 'active' AND l.link_ref IS NOT NULL
           AND (l.next_check_at <= ?1 OR (l.expiry_date IS NOT NULL AND l.expiry_date < ?1))
         ORDER BY l.next_check_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        Ok(ToCheck {
            link_id: r.get(0)?,
            link_ref: r.get(1)?,
            invoice_id: r.get(2)?,
            reference: r.get(3)?,
            status_checks: r.get(4)?,
            expired: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Makes the named links due for a check now (a callback named them). Unknown refs are
/// ignored; returns how many were known.
pub fn request_check(db: &Store, link_refs: &[LinkRef], now: Timestamp) -> Result<usize> {
    let mut stmt = db.conn.prepare_cached(
        "UPDATE links SET next_check_at = ?2 WHERE link_ref = ?1 AND state = 'active'",
    )?;
    let mut known = 0;
    for r in link_refs {
        known += stmt.execute(params![r, now])?;
    }
    Ok(known)
}

/// Records a status check that found the link still open.
pub fn record_checked(
    db: &Store,
    link_id: i64,
    now: Timestamp,
    next_check: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET status_checks = status_checks + 1, last_checked_at = ?2,
                next_check_at = ?3, cm_status = 'open'
         WHERE id = ?1",
        params![link_id, now, next_check],
    )?;
    Ok(())
}

/// Records that CM just said the link is unpaid (a read outside the back-off schedule:
/// before a reminder or a mail): its back-off is left as it was.
pub fn record_seen_open(db: &Store, link_id: i64, now: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET last_checked_at = ?2, cm_status = 'open' WHERE id = ?1",
        params![link_id, now],
    )?;
    Ok(())
}

/// Records a payment through the link: the link is `paid` and so is its invoice. When the
/// invoice was no longer open (settled elsewhere, replaced), the payment is still what
/// happened, and `last_error` says why the merchant must look. Returns true when the
/// invoice had already been paid (through its QR code): a double payment.
pub fn record_paid(db: &Store, link_id: i64, invoice_id: i64, now: Timestamp) -> Result<bool> {
    db.conn.execute(
        "UPDATE links SET state = 'paid', cm_status = 'paid', paid_at = ?2, last_checked_at = ?2,
                status_checks = status_checks + 1, next_check_at = NULL
         WHERE id = ?1",
        params![link_id, now],
    )?;
    let stale: bool = db.conn.query_row(
        "SELECT l.revision <> i.revision FROM links l JOIN invoices i ON i.id = l.invoice_id
         WHERE l.id = ?1",
        [link_id],
        |r| r.get(0),
    )?;
    let note = stale.then_some(
        "paid through the link of an earlier revision; the export now asks a different amount: check the balance",
    );
    let amount: i64 = db.conn.query_row(
        "SELECT amount_minor FROM links WHERE id = ?1",
        [link_id],
        |r| r.get(0),
    )?;
    super::invoices::to_paid(db, invoice_id, amount, super::bank::PaidBy::Link, now, note)
}

/// Records that an unpaid link passed its expiry date: the link is inactive and, when it
/// was the current revision's and the invoice still open, the invoice is `expired`.
pub fn record_expired(db: &Store, link_id: i64, now: Timestamp) -> Result<()> {
    // A link that lapsed at its provisional expiry was never announced: the invoice is
    // not expired, it needs a new link.
    let lapsed = db.conn.execute(
        "UPDATE links SET state = 'inactive', deactivation_reason = 'provisional_lapsed',
                deactivated_at = ?2, last_checked_at = ?2, next_check_at = NULL, cm_status = 'open',
                last_error = 'the link lapsed at its provisional expiry before its real expiry could be set; a new link is created'
         WHERE id = ?1 AND provisional = 1",
        params![link_id, now],
    )?;
    if lapsed > 0 {
        return Ok(());
    }
    db.conn.execute(
        "UPDATE links SET state = 'inactive', deactivation_reason = 'expired', deactivated_at = ?2,
                last_checked_at = ?2, next_check_at = NULL, cm_status = 'open'
         WHERE id = ?1",
        params![link_id, now],
    )?;
    let (invoice_id, revision): (i64, i64) = db.conn.query_row(
        "SELECT invoice_id, revision FROM links WHERE id = ?1",
        [link_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    super::invoices::to_expired(db, invoice_id, revision, now)
}

/// Records a link CM created with another amount than asked: it is never announced, it is
/// switched off (`deactivating`), and the invoice revision fails with `message`.
pub fn record_amount_mismatch(
    db: &Store,
    link_id: i64,
    invoice_id: i64,
    link_ref: &LinkRef,
    uri: &str,
    message: &str,
    now: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET state = 'deactivating', in_flight = 0, link_ref = ?2, uri = ?3,
                activated_at = ?4, deactivation_reason = 'amount_mismatch', last_error = ?5
         WHERE id = ?1",
        params![link_id, link_ref, uri, now, message],
    )?;
    super::invoices::to_failed(db, invoice_id, message, now)
}

/// Records a permanent refusal: the link intent failed and so did the invoice revision,
/// with CM's message, until a later export changes it.
pub fn record_create_refused(
    db: &Store,
    link_id: i64,
    invoice_id: i64,
    message: &str,
    now: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET state = 'failed', in_flight = 0, last_error = ?2 WHERE id = ?1",
        params![link_id, message],
    )?;
    super::invoices::to_failed(db, invoice_id, message, now)
}

/// Records a transient failure: the intent stays for the next cycle; when CM may have
/// carried the request out, the intent is marked a possible orphan.
pub fn record_create_deferred(
    db: &Store,
    link_id: i64,
    message: &str,
    maybe_applied: bool,
) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET in_flight = 0, last_error = ?2,
                possible_orphan = possible_orphan OR ?3
         WHERE id = ?1",
        params![link_id, message, maybe_applied],
    )?;
    Ok(())
}

/// Marks a link as being deactivated (so a crash mid-request retries it).
pub fn mark_deactivating(db: &Store, link_id: i64, reason: DeactivateReason) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET state = 'deactivating', deactivation_reason = ?2 WHERE id = ?1",
        params![link_id, reason],
    )?;
    Ok(())
}

/// Records a completed deactivation.
pub fn record_deactivated(
    db: &Store,
    link_id: i64,
    note: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET state = 'inactive', deactivated_at = ?2, last_error = ?3 WHERE id = ?1",
        params![link_id, now, note],
    )?;
    Ok(())
}

/// Notes what went wrong with a link (a deactivation left for the next cycle, a link CM
/// no longer knows); `status` shows it.
pub fn record_link_error(db: &Store, link_id: i64, message: &str) -> Result<()> {
    db.conn.execute(
        "UPDATE links SET last_error = ?2 WHERE id = ?1",
        params![link_id, message],
    )?;
    Ok(())
}

/// The live link of an invoice, for `deactivate INVOICE`.
pub fn live_link_of(db: &Store, reference: &InvoiceRef) -> Result<Option<ToDeactivate>> {
    Ok(db.conn.query_row(
        "SELECT l.id, l.link_ref, l.invoice_id, i.state FROM links l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.reference = ?1 AND l.state IN ('active', 'deactivating') AND l.link_ref IS NOT NULL",
        [reference],
        |r| {
            Ok(ToDeactivate {
                link_id: r.get(0)?,
                link_ref: r.get(1)?,
                invoice_id: r.get(2)?,
                reference: reference.clone(),
                reason: DeactivateReason::Operator,
                invoice_state: r.get(3)?,
            })
        },
    )
    .optional()?)
}
