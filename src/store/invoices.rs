//! Invoices and their revisions: the statements the ingest applies row by row and the
//! views `status` shows. Everything here runs inside the caller's transaction.

use super::links::LinkState;
use super::outbox::MailState;
use super::{Result, Store};
use crate::domain::InvoiceRef;
use crate::domain::Timestamp;
use rusqlite::{OptionalExtension, Statement, params};

use chrono::NaiveDate;

use crate::domain::money::{Currency, Money};
use crate::domain::text::{CustomerName, EmailAddress};
use crate::domain::{Country, CustomerType, Language};
use serde::Serialize;

/// The invoice lifecycle (ARCHITECTURE.md, *State machines*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Needs or has an active link.
    Open,
    /// Paid through a CM link.
    Paid,
    /// The export says it was paid some other way; its link is deactivated, no mail.
    SettledElsewhere,
    /// Its link passed its expiry date unpaid.
    Expired,
    /// The API refused this revision for good; waits for a changed export.
    Failed,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 5] = [
        State::Open,
        State::Paid,
        State::SettledElsewhere,
        State::Expired,
        State::Failed,
    ];

    /// The name stored in the database and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Paid => "paid",
            State::SettledElsewhere => "settled_elsewhere",
            State::Expired => "expired",
            State::Failed => "failed",
        }
    }

    /// The state of this name (the inverse of [`State::as_str`]), for the command line.
    pub fn named(s: &str) -> Option<State> {
        Some(match s {
            "open" => State::Open,
            "paid" => State::Paid,
            "settled_elsewhere" => State::SettledElsewhere,
            "expired" => State::Expired,
            "failed" => State::Failed,
            _ => return None,
        })
    }
}

/// What one revision asks of the customer, in validated domain values from ingest to
/// the API request and the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionData {
    /// Where the link is mailed.
    pub customer_email: EmailAddress,
    /// The greeting and the `To:` display name (may be empty).
    pub customer_name: CustomerName,
    /// The invoice total.
    pub amount: Money,
    /// What the link asks: the outstanding balance, else the total (same currency).
    pub due: Money,
    /// The due date.
    pub due_date: NaiveDate,
    /// The row's language, else `cm.default_language`.
    pub language: Option<Language>,
    /// The row's country, else `cm.default_country`.
    pub country: Option<Country>,
    /// The row's customer type, else `reminders.default_customer_type`.
    pub customer_type: Option<CustomerType>,
}

/// The revision columns, in the order [`RevisionData::from_row`] reads them; every query
/// that reads a revision selects exactly these (aliased `r`).
pub const REVISION_COLUMNS: &str = "r.customer_email, r.customer_name, r.amount_minor, r.due_minor, r.currency, r.due_date, r.language, r.country_code, r.customer_type";

/// How many columns [`REVISION_COLUMNS`] is: a query reads the columns after it from
/// `start + REVISION_WIDTH` on.
pub const REVISION_WIDTH: usize = 9;

impl RevisionData {
    /// Reads [`REVISION_COLUMNS`] starting at column `at`.
    pub fn from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RevisionData> {
        let currency: Currency = r.get(at + 4)?;
        Ok(RevisionData {
            customer_email: r.get(at)?,
            customer_name: r.get(at + 1)?,
            amount: Money {
                minor: r.get(at + 2)?,
                currency,
            },
            due: Money {
                minor: r.get(at + 3)?,
                currency,
            },
            due_date: r.get(at + 5)?,
            language: r.get(at + 6)?,
            country: r.get(at + 7)?,
            customer_type: r.get(at + 8)?,
        })
    }

    /// The currency of both amounts.
    pub fn currency(&self) -> Currency {
        self.due.currency
    }

    /// Whether `other` asks for a different payment: the fields that, when changed, make
    /// the old link wrong (amount due, currency, due date, address).
    pub fn payment_differs(&self, other: &RevisionData) -> bool {
        self.due != other.due
            || self.due_date != other.due_date
            || !self
                .customer_email
                .as_str()
                .eq_ignore_ascii_case(other.customer_email.as_str())
    }
}

/// Why a revision exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionReason {
    /// The first revision.
    New,
    /// The amount due, currency, due date or address changed.
    Changed,
    /// An outstanding balance below the amount: a partial payment elsewhere.
    PartialPayment,
    /// Settled elsewhere before, listed as open again.
    Reopened,
}

impl RevisionReason {
    /// Every reason.
    pub const ALL: [RevisionReason; 4] = [
        RevisionReason::New,
        RevisionReason::Changed,
        RevisionReason::PartialPayment,
        RevisionReason::Reopened,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionReason::New => "new",
            RevisionReason::Changed => "changed",
            RevisionReason::PartialPayment => "partial_payment",
            RevisionReason::Reopened => "reopened",
        }
    }
}

/// An invoice as the ingest needs it to decide what a row means.
#[derive(Debug, Clone)]
pub struct Current {
    /// The row id.
    pub id: i64,
    /// Its state.
    pub state: State,
    /// The invoice revision it belongs to.
    pub revision: i64,
    /// The last import that listed it.
    pub seen_import_id: Option<i64>,
    /// The line it was listed on.
    pub seen_line: Option<i64>,
    /// What the revision asks of the customer.
    pub data: RevisionData,
    /// What the export asked when transfers matched since made this revision ask less
    /// (README, *Bank transfers*); the amount due otherwise.
    pub export_due: i64,
}

/// Where a row came from, for the revision's provenance and duplicate detection.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The import the row came from.
    pub import_id: i64,
    /// The physical line the row starts on.
    pub line: i64,
    /// The time of the import.
    pub now: Timestamp,
}

/// The statements the ingest runs for every row, prepared once per file (a cached
/// statement would hash its SQL text on every call). Everything runs inside the caller's
/// transaction.
pub struct Writer<'c> {
    db: &'c Store,
    lookup: Statement<'c>,
    insert_invoice: Statement<'c>,
    insert_revision: Statement<'c>,
    new_revision: Statement<'c>,
    mark_seen: Statement<'c>,
    settle: Statement<'c>,
}

impl<'c> Writer<'c> {
    /// Prepares the statements on `db`.
    pub fn new(db: &'c Store) -> Result<Writer<'c>> {
        Ok(Writer {
            db,
            lookup: db.conn.prepare(&format!(
                "SELECT i.id, i.state, i.revision, i.seen_import_id, i.seen_line,
                        {REVISION_COLUMNS}, coalesce(r.export_due_minor, r.due_minor)
                 FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
                 WHERE i.reference = ?1",
            ))?,
            insert_invoice: db.conn.prepare(
                "INSERT INTO invoices (reference, state, revision, settled_at, seen_import_id,
                                       seen_line)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5)
                 ON CONFLICT (reference) DO NOTHING",
            )?,
            insert_revision: db.conn.prepare(
                "INSERT INTO revisions (invoice_id, revision, customer_email, customer_name,
                                        amount_minor, due_minor, currency, due_date, language,
                                        country_code, reason, import_id, source_line,
                                        customer_type, export_due_minor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?,
            new_revision: db.conn.prepare(
                "UPDATE invoices SET revision = ?2, state = 'open', last_error = NULL,
                        settled_at = NULL, seen_import_id = ?3, seen_line = ?4, updated_at = ?5
                 WHERE id = ?1",
            )?,
            mark_seen: db
                .conn
                .prepare("UPDATE invoices SET seen_import_id = ?2, seen_line = ?3 WHERE id = ?1")?,
            settle: db.conn.prepare(
                "UPDATE invoices SET state = 'settled_elsewhere', settled_at = ?2, updated_at = ?2,
                        seen_import_id = ?3, seen_line = ?4
                 WHERE id = ?1",
            )?,
        })
    }

    /// The invoice with this reference and its current revision, if known.
    pub fn lookup(&mut self, reference: &InvoiceRef) -> Result<Option<Current>> {
        Ok(self
            .lookup
            .query_row([reference], |r| {
                Ok(Current {
                    id: r.get(0)?,
                    state: r.get(1)?,
                    revision: r.get(2)?,
                    seen_import_id: r.get(3)?,
                    seen_line: r.get(4)?,
                    data: RevisionData::from_row(r, 5)?,
                    export_due: r.get(5 + REVISION_WIDTH)?,
                })
            })
            .optional()?)
    }

    /// Records a new invoice with revision 1, unless the reference is known: then
    /// `None` and nothing changes (so a new invoice costs no lookup).
    pub fn insert_new(
        &mut self,
        reference: &InvoiceRef,
        state: State,
        data: &RevisionData,
        src: Source,
    ) -> Result<Option<i64>> {
        let settled_at = (state == State::SettledElsewhere).then_some(src.now);
        let inserted = self.insert_invoice.execute(params![
            reference,
            state,
            settled_at,
            src.import_id,
            src.line
        ])?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = self.db.conn.last_insert_rowid();
        self.revision(id, 1, data, RevisionReason::New, src, None)?;
        Ok(Some(id))
    }

    fn revision(
        &mut self,
        invoice_id: i64,
        revision: i64,
        d: &RevisionData,
        reason: RevisionReason,
        src: Source,
        export_due: Option<i64>,
    ) -> Result<()> {
        self.insert_revision.execute(params![
            invoice_id,
            revision,
            d.customer_email,
            d.customer_name,
            d.amount.minor,
            d.due.minor,
            d.currency(),
            super::types::IsoDate(d.due_date),
            d.language,
            d.country,
            reason,
            src.import_id,
            src.line,
            d.customer_type,
            export_due
        ])?;
        Ok(())
    }

    /// Starts a new revision in state `open` (the link step replaces the old link).
    pub fn add_revision(
        &mut self,
        cur: &Current,
        data: &RevisionData,
        reason: RevisionReason,
        src: Source,
        export_due: Option<i64>,
    ) -> Result<i64> {
        let revision = cur.revision + 1;
        self.revision(cur.id, revision, data, reason, src, export_due)?;
        self.new_revision
            .execute(params![cur.id, revision, src.import_id, src.line, src.now])?;
        Ok(revision)
    }

    /// Notes that this import listed the invoice (for duplicates and snapshots).
    pub fn mark_seen(&mut self, id: i64, src: Source) -> Result<()> {
        self.mark_seen
            .execute(params![id, src.import_id, src.line])?;
        Ok(())
    }

    /// Notes that this import listed the invoice with another customer type than its
    /// current revision holds: not a change of payment (no new revision, no new link),
    /// so the revision takes the new type in place.
    pub fn set_customer_type(
        &mut self,
        cur: &Current,
        customer_type: Option<CustomerType>,
        src: Source,
    ) -> Result<()> {
        self.mark_seen(cur.id, src)?;
        self.db.conn.execute(
            "UPDATE revisions SET customer_type = ?3 WHERE invoice_id = ?1 AND revision = ?2",
            params![cur.id, cur.revision, customer_type],
        )?;
        Ok(())
    }

    /// Notes on a paid invoice that the export now asks something else: it stays paid,
    /// and `status` shows the difference.
    pub fn note_paid_changed(&mut self, id: i64, note: &str, src: Source) -> Result<()> {
        self.mark_seen(id, src)?;
        self.db.conn.execute(
            "UPDATE invoices SET last_error = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, note, src.now],
        )?;
        Ok(())
    }

    /// Marks an open invoice as settled elsewhere (its link is deactivated by the link
    /// step).
    pub fn settle(&mut self, id: i64, src: Source) -> Result<()> {
        self.settle
            .execute(params![id, src.now, src.import_id, src.line])?;
        Ok(())
    }
}

// The invoice state machine (ARCHITECTURE.md, *State machines*): every change of
// `invoices.state` after ingest is one of the transitions below. Ingest's own
// (`open` for new and changed revisions, `settled_elsewhere`) are the `Writer`'s.

/// `open` (or any state) → `paid`: a payment of `amount_minor` just seen through `by`
/// (link or QR). A second payment for an already paid invoice sets `double_payment`,
/// adds all of it to the invoice's surplus (`overpaid`) and says so; a payment above the
/// amount the current revision asks adds the difference; a payment for an invoice the
/// export settled elsewhere says it may be a double payment; otherwise `note` (if any)
/// becomes the last error. Returns true for a second payment.
pub fn to_paid(
    db: &Store,
    invoice_id: i64,
    amount_minor: i64,
    by: super::bank::PaidBy,
    now: Timestamp,
    note: Option<&str>,
) -> Result<bool> {
    let (state, due): (State, i64) = db.conn.query_row(
        "SELECT i.state, r.due_minor FROM invoices i
         JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
         WHERE i.id = ?1",
        [invoice_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let surplus = |minor: i64| -> Result<()> {
        if minor > 0 {
            db.conn.execute(
                "UPDATE invoices SET overpaid_minor = coalesce(overpaid_minor, 0) + ?2
                 WHERE id = ?1",
                params![invoice_id, minor],
            )?;
        }
        Ok(())
    };
    if state == State::Paid {
        db.conn.execute(
            "UPDATE invoices SET double_payment = 1, updated_at = ?2,
                    last_error = 'paid twice (' || coalesce(paid_by, 'link') || ' and ' || ?3 || '): the merchant must refund one'
             WHERE id = ?1",
            params![invoice_id, now, by.as_str()],
        )?;
        surplus(amount_minor)?;
        return Ok(true);
    }
    let error = if state == State::SettledElsewhere {
        Some(
            "paid through invoice-sync after the export settled it elsewhere: possible double payment, refund one",
        )
    } else {
        note
    };
    db.conn.execute(
        "UPDATE invoices SET state = 'paid', paid_at = coalesce(paid_at, ?2), updated_at = ?2,
                last_error = coalesce(?3, last_error), paid_by = ?4
         WHERE id = ?1",
        params![invoice_id, now, error, by],
    )?;
    if state != State::SettledElsewhere {
        surplus(amount_minor - due)?;
    }
    Ok(false)
}

/// `open` → `expired`: the announced link of the current `revision` expired unpaid. An
/// invoice that left `open` or moved to another revision meanwhile is left alone.
pub fn to_expired(db: &Store, invoice_id: i64, revision: i64, now: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE invoices SET state = 'expired', updated_at = ?3
         WHERE id = ?1 AND revision = ?2 AND state = 'open'",
        params![invoice_id, revision, now],
    )?;
    Ok(())
}

/// → `failed`: CM refused the current revision with its own answer (or holds another
/// amount than asked); `message` says why, until a later export changes the invoice.
pub fn to_failed(db: &Store, invoice_id: i64, message: &str, now: Timestamp) -> Result<()> {
    db.conn.execute(
        "UPDATE invoices SET state = 'failed', last_error = ?2, updated_at = ?3 WHERE id = ?1",
        params![invoice_id, message, now],
    )?;
    Ok(())
}

/// Whether an invoice with this reference is known (a look-up through its index).
pub fn exists(db: &Store, reference: &InvoiceRef) -> Result<bool> {
    Ok(db.conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE reference = ?1)",
        [reference],
        |r| r.get(0),
    )?)
}

/// The number of invoices in each state, every state named (zero when none), in
/// lifecycle order.
pub fn count_by_state(db: &Store) -> Result<Vec<(State, i64)>> {
    let mut counts: Vec<(State, i64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
    let mut stmt = db
        .conn
        .prepare_cached("SELECT state, count(*) FROM invoices GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, State>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (state, n) = row?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

/// Number of invoices, whatever their state.
pub fn count_all(db: &Store) -> Result<i64> {
    Ok(db
        .conn
        .query_row("SELECT count(*) FROM invoices", [], |r| r.get(0))?)
}

/// Number of invoices in state `open`.
pub fn count_open(db: &Store) -> Result<i64> {
    Ok(db.conn.query_row(
        "SELECT count(*) FROM invoices WHERE state = 'open'",
        [],
        |r| r.get(0),
    )?)
}

/// Open invoices that the given import did not list (the snapshot's missing ones).
pub fn count_open_unseen(db: &Store, import_id: i64) -> Result<i64> {
    Ok(db.conn.query_row(
        "SELECT count(*) FROM invoices WHERE state = 'open' AND seen_import_id IS NOT ?1",
        [import_id],
        |r| r.get(0),
    )?)
}

/// Settles every open invoice the given import did not list; returns how many.
pub fn settle_open_unseen(db: &Store, import_id: i64, now: Timestamp) -> Result<usize> {
    Ok(db.conn.execute(
        "UPDATE invoices SET state = 'settled_elsewhere', settled_at = ?2, updated_at = ?2
         WHERE state = 'open' AND seen_import_id IS NOT ?1",
        params![import_id, now],
    )?)
}

/// One invoice as `status` shows it. Field names are the `status --json` contract.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InvoiceView {
    /// The invoice reference.
    pub invoice_reference: InvoiceRef,
    /// The customer's address.
    pub customer_email: String,
    /// The customer's name.
    pub customer_name: String,
    /// A decimal string, e.g. `"1234.56"`: what the link asks (the outstanding balance
    /// when the export gives one); for an invoice settled elsewhere, its total.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// `YYYY-MM-DD`.
    pub due_date: NaiveDate,
    /// Its state.
    pub state: State,
    /// CM's reference of the link (`pml-…`).
    pub link_ref: Option<crate::domain::LinkRef>,
    /// The payment page address the mail carries.
    pub link_uri: Option<String>,
    /// Whether its newest link is live (`active` or `deactivating`); none when it has none.
    pub link_active: Option<bool>,
    /// Its newest link's state: `creating`, `active`, `deactivating`, `inactive`, `paid`
    /// or `failed`; none when it has none.
    pub link_state: Option<LinkState>,
    /// The QR image of its offered iDEAL QR transaction.
    pub qr_url: Option<String>,
    /// `none` | `queued` | `sent` | `failed`.
    pub mail_state: String,
    /// What went wrong last, for the operator.
    pub last_error: Option<String>,
    /// When it was paid (RFC 3339 UTC).
    pub paid_at: Option<Timestamp>,
    /// Reminder mails the relay accepted for it.
    pub reminders_sent: i64,
    /// The (local) date its next reminder may go (`YYYY-MM-DD`), when one is planned.
    pub next_reminder_on: Option<NaiveDate>,
    /// The ISO 11649 creditor reference a transfer quotes.
    pub creditor_reference: Option<String>,
    /// What paid it: `link`, `ideal_qr`, `transfer` or `elsewhere` (null while unpaid).
    pub paid_by: Option<String>,
    /// What links, QR codes and transfers brought in (a decimal string; null: nothing).
    pub amount_received: Option<String>,
    /// The surplus to refund (a decimal string), or null.
    pub overpaid: Option<String>,
    /// What needs a look for money: `overpaid`, `reversed` (empty when none).
    pub flags: Vec<&'static str>,
    /// The current revision number (not part of the JSON contract's required keys).
    #[serde(skip)]
    pub revision: i64,
}

/// Calls `each` for the invoices `status` lists, in reference order, streaming: memory
/// does not grow with the number of invoices. One reference is a look-up through the
/// reference index, whatever the size of the database.
pub fn for_each_view(
    db: &Store,
    reference: Option<&str>,
    state: Option<State>,
    mut each: impl FnMut(InvoiceView) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // Two statements, not `?1 IS NULL OR i.reference = ?1`: SQLite cannot use the
    // reference index through the OR, and a look-up would scan every invoice.
    let filter = if reference.is_some() {
        "WHERE i.reference = ?1 AND (?2 IS NULL OR i.state = ?2)"
    } else {
        "WHERE ?1 IS NULL AND (?2 IS NULL OR i.state = ?2)"
    };
    let mut stmt = db.conn.prepare(&format!(
        "SELECT i.reference, r.customer_email, r.customer_name,
                CASE WHEN i.state = 'settled_elsewhere' THEN r.amount_minor ELSE r.due_minor END,
                r.currency,
                r.due_date, i.state, i.last_error, i.paid_at, i.revision,
                l.link_ref, l.uri, l.state, l.last_error, l.possible_orphan,
                o.state, o.last_error,
                (SELECT q.qr_url FROM qr_transactions q
                  WHERE q.invoice_id = i.id AND q.revision = i.revision AND q.state = 'open'
                    AND q.withdrawn = 0),
                (SELECT group_concat(x.merchant_reference, ', ') FROM links x
                  WHERE x.invoice_id = i.id AND x.possible_orphan = 1),
                (SELECT count(*) FROM reminders rm JOIN outbox z ON z.id = rm.outbox_id
                  WHERE rm.invoice_id = i.id AND z.state = 'sent'),
                i.next_reminder_on,
                NULL,
                CASE WHEN i.state = 'settled_elsewhere' THEN 'elsewhere'
                     WHEN i.state = 'paid' THEN coalesce(i.paid_by,
                         CASE WHEN EXISTS (SELECT 1 FROM qr_transactions q
                                           WHERE q.invoice_id = i.id AND q.state = 'success')
                              THEN 'ideal_qr' ELSE 'link' END)
                END,
                coalesce((SELECT sum(x.amount_minor) FROM links x
                           WHERE x.invoice_id = i.id AND x.state = 'paid'), 0)
                + coalesce((SELECT sum(q.amount_cents) FROM qr_transactions q
                            WHERE q.invoice_id = i.id AND q.state = 'success'), 0)
                + coalesce((SELECT sum(b.amount_minor) FROM bank_entries b
                            WHERE b.invoice_id = i.id AND b.outcome = 'matched'), 0),
                i.overpaid_minor, i.reversed
         FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
         LEFT JOIN links l ON l.id = (SELECT max(x.id) FROM links x WHERE x.invoice_id = i.id)
         LEFT JOIN outbox o ON o.id = (SELECT max(y.id) FROM outbox y
                                       WHERE y.invoice_id = i.id AND y.state <> 'cancelled')
         {filter}
         ORDER BY i.reference"
    ))?;
    let mut rows = stmt.query(params![reference, state])?;
    while let Some(r) = rows.next()? {
        let currency: Currency = r.get(4)?;
        let link_state: Option<LinkState> = r.get(12)?;
        let mail_state: Option<MailState> = r.get(15)?;
        each(InvoiceView {
            invoice_reference: r.get(0)?,
            customer_email: r.get(1)?,
            customer_name: r.get(2)?,
            amount: crate::domain::money::format_minor(r.get(3)?, currency.exponent()),
            currency: currency.code().to_string(),
            due_date: r.get(5)?,
            state: r.get(6)?,
            link_ref: r.get(10)?,
            link_uri: r.get(11)?,
            link_active: link_state.map(LinkState::is_live),
            link_state,
            qr_url: r.get(17)?,
            mail_state: match mail_state {
                Some(MailState::Queued | MailState::Sending) => "queued",
                Some(MailState::Sent) => "sent",
                Some(MailState::Failed) => "failed",
                Some(MailState::Cancelled) | None => "none",
            }
            .into(),
            last_error: last_error(
                r.get(7)?,
                r.get(13)?,
                r.get::<_, Option<String>>(18)?,
                mail_state,
                r.get(16)?,
            ),
            paid_at: r.get(8)?,
            reminders_sent: r.get(19)?,
            next_reminder_on: r.get(20)?,
            creditor_reference: {
                let reference: InvoiceRef = r.get(0)?;
                Some(
                    crate::domain::CreditorRef::of_invoice(reference.as_str())
                        .as_str()
                        .to_string(),
                )
            },
            paid_by: r.get(22)?,
            amount_received: {
                let received: i64 = r.get(23)?;
                (received > 0)
                    .then(|| crate::domain::money::format_minor(received, currency.exponent()))
            },
            overpaid: r
                .get::<_, Option<i64>>(24)?
                .map(|m| crate::domain::money::format_minor(m, currency.exponent())),
            flags: {
                let mut flags = Vec::new();
                if r.get::<_, Option<i64>>(24)?.is_some() {
                    flags.push("overpaid");
                }
                if r.get::<_, bool>(25)? {
                    flags.push("reversed");
                }
                flags
            },
            revision: r.get(9)?,
        })?;
    }
    Ok(())
}

/// What `status` shows as the last error: the invoice's own, else its newest link's; a
/// failed mail's reply and a possible orphan at CM always.
fn last_error(
    invoice: Option<String>,
    link: Option<String>,
    possible_orphans: Option<String>,
    mail_state: Option<MailState>,
    mail_error: Option<String>,
) -> Option<String> {
    let base = match (mail_state, mail_error) {
        (Some(MailState::Failed), Some(m)) => Some(match invoice.or(link) {
            Some(b) => format!("{b}; mail: {m}"),
            None => format!("mail: {m}"),
        }),
        _ => invoice.or(link),
    };
    if let Some(refs) = possible_orphans {
        let note = format!(
            "possible orphan link at CM under merchant reference {refs} from an interrupted or unanswered create (never mailed; it stops being payable at its provisional expiry)"
        );
        return Some(match base {
            Some(b) if !b.contains("CM may hold") => format!("{b}; {note}"),
            Some(b) => b,
            None => note,
        });
    }
    base
}
