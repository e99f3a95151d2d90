//! Bank statements and their entries (schema 11): what was read, what each credit was
//! matched to, and the effects of a transfer on its invoice. Everything here runs inside
//! the caller's unit of work, so an entry, its match and its effects are one fact.

use super::invoices::{REVISION_COLUMNS, RevisionData, State};
use super::{Result, Store};
use crate::domain::statement::{Booking, Direction, Entry};
use crate::domain::{CreditorRef, Currency, InvoiceRef, Money, Timestamp};
use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// What became of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied to an invoice.
    Matched,
    /// Not applied; one open invoice fits its amount and name, for `bank match`.
    Suggested,
    /// Not applied, with its reason.
    Unmatched,
    /// A reversal, or an entry a reversal undid.
    Reversed,
    /// Not a booked credit in a known shape (a debit, a pending entry, information).
    Ignored,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 5] = [
        Outcome::Matched,
        Outcome::Suggested,
        Outcome::Unmatched,
        Outcome::Reversed,
        Outcome::Ignored,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Suggested => "suggested",
            Outcome::Unmatched => "unmatched",
            Outcome::Reversed => "reversed",
            Outcome::Ignored => "ignored",
        }
    }
}

/// How a match was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The structured creditor reference.
    Reference,
    /// The invoice reference named in the remittance text.
    Remittance,
    /// An operator's `bank match`.
    Operator,
}

impl MatchedBy {
    /// Every way.
    pub const ALL: [MatchedBy; 3] = [
        MatchedBy::Reference,
        MatchedBy::Remittance,
        MatchedBy::Operator,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Reference => "reference",
            MatchedBy::Remittance => "remittance",
            MatchedBy::Operator => "operator",
        }
    }
}

/// What paid an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaidBy {
    /// Its CM payment link.
    Link,
    /// Its iDEAL QR code.
    IdealQr,
    /// A bank transfer read from a statement.
    Transfer,
}

impl PaidBy {
    /// Every way.
    pub const ALL: [PaidBy; 3] = [PaidBy::Link, PaidBy::IdealQr, PaidBy::Transfer];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaidBy::Link => "link",
            PaidBy::IdealQr => "ideal_qr",
            PaidBy::Transfer => "transfer",
        }
    }
}

/// Runs one statement through the connection's statement cache: the matching runs these
/// once per entry of statements of a million entries.
fn exec(db: &Store, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
    Ok(db.conn.prepare_cached(sql)?.execute(p)?)
}

/// Whether the bytes of a statement file were applied before.
pub fn file_known(db: &Store, sha256: &str) -> Result<bool> {
    Ok(db.conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM bank_files WHERE sha256 = ?1)",
        [sha256],
        |r| r.get(0),
    )?)
}

/// Records a statement file being applied; its counts are written by [`finish_file`].
pub fn insert_file(
    db: &Store,
    file_name: &str,
    sha256: &str,
    format: &str,
    now: Timestamp,
) -> Result<i64> {
    exec(
        db,
        "INSERT INTO bank_files (file_name, sha256, format, imported_at) VALUES (?1, ?2, ?3, ?4)",
        params![file_name, sha256, format, now],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Records the format the reader detected.
pub fn set_file_format(db: &Store, file_id: i64, format: &str) -> Result<()> {
    exec(
        db,
        "UPDATE bank_files SET format = ?2 WHERE id = ?1",
        params![file_id, format],
    )?;
    Ok(())
}

/// The reference of invoice `id`.
pub fn invoice_reference(db: &Store, id: i64) -> Result<InvoiceRef> {
    Ok(db
        .conn
        .query_row("SELECT reference FROM invoices WHERE id = ?1", [id], |r| {
            r.get(0)
        })?)
}

/// Writes a file's counts.
pub fn finish_file(db: &Store, file_id: i64, entries: u64, new_entries: u64) -> Result<()> {
    exec(
        db,
        "UPDATE bank_files SET entries = ?2, new_entries = ?3 WHERE id = ?1",
        params![file_id, entries as i64, new_entries as i64],
    )?;
    Ok(())
}

/// Writes the creditor key of every invoice above `creditor_key_mark` and moves the mark
/// (schema 11): run before a statement is matched, so that every invoice is found by its
/// creditor reference; costs what was imported since the last statement. Returns how
/// many keys were written.
pub fn fill_creditor_keys(db: &Store) -> Result<usize> {
    let mut read = db.conn.prepare_cached(
        "SELECT id, reference FROM invoices
         WHERE id > (SELECT invoice_id FROM creditor_key_mark) ORDER BY id",
    )?;
    let mut write = db
        .conn
        .prepare_cached("UPDATE invoices SET creditor_key = ?2 WHERE id = ?1")?;
    let mut rows = read.query([])?;
    let mut last = None;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let reference: String = r.get(1)?;
        write.execute(params![
            id,
            crate::domain::creditor::CreditorKey::of_invoice(&reference).as_str()
        ])?;
        last = Some(id);
        n += 1;
    }
    if let Some(id) = last {
        exec(db, "UPDATE creditor_key_mark SET invoice_id = ?1", [id])?;
    }
    Ok(n)
}

/// Empties the working tables of one statement file (see schema 11): the tally of
/// entries without a bank reference by content (the n-th identical entry of a file is
/// known as the n-th, so two identical transfers on one day count twice and the same
/// one in an overlapping file counts once) and the open invoices by amount. Regular
/// tables, in the file's unit of work: memory stays flat at any statement size.
pub fn start_file(db: &Store) -> Result<()> {
    db.conn.execute_batch(
        "DELETE FROM bank_seen; DELETE FROM bank_open_due; DELETE FROM bank_open_due_made;",
    )?;
    Ok(())
}

/// The occurrence (1, 2, …) of an entry of this `content` in the file being read.
pub fn next_occurrence(db: &Store, content: &str) -> Result<i64> {
    Ok(db
        .conn
        .prepare_cached(
            "INSERT INTO bank_seen VALUES (?1, 1)
             ON CONFLICT (content) DO UPDATE SET n = n + 1
             RETURNING n",
        )?
        .query_row([content], |r| r.get(0))?)
}

/// An entry known before, by its key.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its id.
    pub id: i64,
    /// Its booking status when last read.
    pub booking: Booking,
}

/// The entry known by `key`, if any.
pub fn known_entry(db: &Store, key: &str) -> Result<Option<Known>> {
    Ok(db
        .conn
        .prepare_cached("SELECT id, status FROM bank_entries WHERE entry_key = ?1")?
        .query_row([key], |r| {
            Ok(Known {
                id: r.get(0)?,
                booking: r.get(1)?,
            })
        })
        .optional()?)
}

/// What an entry is recorded with: its outcome and what it names.
#[derive(Debug, Clone)]
pub struct Fate<'a> {
    /// Its outcome.
    pub outcome: Outcome,
    /// Why it was not applied (or what it undid).
    pub reason: Option<&'a str>,
    /// The invoice it paid (matched), or the one a reversal reopened.
    pub invoice_id: Option<i64>,
    /// The invoice suggested for `bank match`.
    pub suggested_invoice_id: Option<i64>,
    /// How it was matched.
    pub matched_by: Option<MatchedBy>,
    /// The entry a reversal undoes.
    pub reverses_entry_id: Option<i64>,
}

/// Records a new entry with its outcome, in one insert; `None` when an entry of this key
/// is known (the unique index refuses it, nothing is written). A plain insert: an upsert
/// would make SQLite copy every page it touches to a statement journal first.
pub fn insert_entry(
    db: &Store,
    key: &str,
    file_id: i64,
    e: &Entry,
    fate: &Fate<'_>,
    now: Timestamp,
) -> Result<Option<i64>> {
    let matched_at = fate.matched_by.map(|_| now);
    let inserted = db
        .conn
        .prepare_cached(
            "INSERT INTO bank_entries (entry_key, file_id, line, account, booking_date,
                 value_date, amount_minor, currency, direction, status, reversal,
                 return_reason, counterparty_name, counterparty_iban, remittance,
                 structured_reference, bank_reference, end_to_end_id, outcome, reason,
                 invoice_id, suggested_invoice_id, matched_by, matched_at, reverses_entry_id,
                 seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
        )?
        .execute(params![
            key,
            file_id,
            e.line as i64,
            e.account,
            e.booking_date.map(super::types::IsoDate),
            e.value_date.map(super::types::IsoDate),
            e.amount.minor,
            e.amount.currency,
            e.direction,
            e.booking,
            e.reversal,
            e.return_reason,
            e.counterparty_name,
            e.counterparty_iban,
            e.remittance,
            e.structured_reference,
            e.bank_reference,
            e.end_to_end_id,
            fate.outcome,
            fate.reason,
            fate.invoice_id,
            fate.suggested_invoice_id,
            fate.matched_by,
            matched_at,
            fate.reverses_entry_id,
            now
        ]);
    match inserted {
        Ok(_) => Ok(Some(db.conn.last_insert_rowid())),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A pending entry read again as booked: its booking date, status and outcome are
/// written; the caller applies it as if new.
pub fn mark_booked(db: &Store, id: i64, e: &Entry, fate: &Fate<'_>, now: Timestamp) -> Result<()> {
    exec(
        db,
        "UPDATE bank_entries SET status = 'BOOK', booking_date = ?2, value_date = ?3,
                outcome = ?4, reason = ?5, invoice_id = ?6, suggested_invoice_id = ?7,
                matched_by = ?8, matched_at = CASE WHEN ?8 IS NULL THEN NULL ELSE ?10 END,
                reverses_entry_id = ?9
         WHERE id = ?1",
        params![
            id,
            e.booking_date.map(super::types::IsoDate),
            e.value_date.map(super::types::IsoDate),
            fate.outcome,
            fate.reason,
            fate.invoice_id,
            fate.suggested_invoice_id,
            fate.matched_by,
            fate.reverses_entry_id,
            now
        ],
    )?;
    Ok(())
}

/// An invoice as the matching sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its row id.
    pub id: i64,
    /// Its reference.
    pub reference: InvoiceRef,
    /// Its state.
    pub state: State,
    /// Its current revision.
    pub revision: i64,
    /// What the current revision asks.
    pub data: RevisionData,
}

const CANDIDATE: &str = "SELECT i.id, i.reference, i.state, i.revision, {REV}
     FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision";

fn candidate(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        id: r.get(0)?,
        reference: r.get(1)?,
        state: r.get(2)?,
        revision: r.get(3)?,
        data: RevisionData::from_row(r, 4)?,
    })
}

fn candidates_where(
    db: &Store,
    sql: &std::sync::LazyLock<String>,
    p: impl rusqlite::Params,
) -> Result<Vec<Candidate>> {
    let mut stmt = db.conn.prepare_cached(sql)?;
    let rows = stmt.query_map(p, candidate)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The candidate query with this condition, written out once (the matching runs it per
/// entry).
macro_rules! candidate_sql {
    ($name:ident, $condition:literal) => {
        static $name: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "{} {}",
                CANDIDATE.replace("{REV}", REVISION_COLUMNS),
                $condition
            )
        });
    };
}

candidate_sql!(BY_CREDITOR_KEY, "WHERE i.creditor_key = ?1 ORDER BY i.id");
candidate_sql!(BY_REFERENCE, "WHERE i.reference = ?1");
candidate_sql!(BY_ID, "WHERE i.id = ?1");
static OPEN_ASKING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // From the working table's key to the invoice, never the other way round (CROSS JOIN
    // keeps SQLite from scanning the invoices in id order).
    format!(
        "SELECT i.id, i.reference, i.state, i.revision, {REVISION_COLUMNS}
         FROM bank_open_due o CROSS JOIN invoices i ON i.id = o.invoice_id
         JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
         WHERE o.currency = ?1 AND o.due_minor = ?2 AND i.state = 'open' AND r.due_minor = ?2
         ORDER BY o.invoice_id LIMIT ?3"
    )
});
/// The invoices whose creditor reference is `reference` (two only when their references
/// differ in letter case alone).
pub fn by_creditor_ref(db: &Store, reference: &CreditorRef) -> Result<Vec<Candidate>> {
    candidates_where(db, &BY_CREDITOR_KEY, [reference.body()])
}

/// The invoice of this reference.
pub fn by_reference(db: &Store, reference: &InvoiceRef) -> Result<Option<Candidate>> {
    Ok(candidates_where(db, &BY_REFERENCE, [reference])?
        .into_iter()
        .next())
}

/// Up to `limit` open invoices whose current revision asks exactly `amount`: through
/// `bank_open_due`, made from the open invoices when the file first asks (once per
/// file), each candidate checked against its invoice as it is now (one paid or changed
/// earlier in the file drops out; one that got a new amount in the file is not seen).
pub fn open_asking(db: &Store, amount: Money, limit: usize) -> Result<Vec<Candidate>> {
    let made: bool = db
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM bank_open_due_made)")?
        .query_row([], |r| r.get(0))?;
    if !made {
        db.conn.execute_batch(
            "INSERT INTO bank_open_due (currency, due_minor, invoice_id)
                 SELECT r.currency, r.due_minor, i.id
                 FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
                 WHERE i.state = 'open';
             INSERT INTO bank_open_due_made VALUES (1);",
        )?;
    }
    candidates_where(
        db,
        &OPEN_ASKING,
        params![amount.currency, amount.minor, limit as i64],
    )
}

/// What a transfer did to its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Paid in full: the invoice is `paid`.
    Paid,
    /// Less than due: a new revision asks for the rest.
    Partial {
        /// What the new revision asks.
        rest: Money,
    },
    /// More than due, or a second payment: `paid`, flagged `overpaid`.
    Overpaid {
        /// The surplus to refund (all of it so far).
        surplus: Money,
    },
}

/// Applies a matched credit to its invoice, with every effect, in the caller's unit of
/// work: the entry is marked matched; the invoice is paid (by transfer, at the booking
/// date), or gets a new revision for the rest, or is flagged overpaid; its queued link
/// mails and reminders are cancelled when it no longer asks for money. The link itself
/// is deactivated by the next cycle (the invoice is no longer open, or its revision
/// changed).
pub fn apply_transfer(
    db: &Store,
    entry_id: i64,
    invoice: &Candidate,
    amount: Money,
    booking_date: NaiveDate,
    by: MatchedBy,
    now: Timestamp,
) -> Result<Effect> {
    exec(
        db,
        "UPDATE bank_entries SET outcome = 'matched', invoice_id = ?2, matched_by = ?3,
                matched_at = ?4, reason = NULL, suggested_invoice_id = NULL
         WHERE id = ?1",
        params![entry_id, invoice.id, by, now],
    )?;
    transfer_effects(db, entry_id, invoice, amount, booking_date, now)
}

/// The effects of a matched credit on its invoice, for an entry recorded as matched
/// already (see [`apply_transfer`]).
pub fn transfer_effects(
    db: &Store,
    entry_id: i64,
    invoice: &Candidate,
    amount: Money,
    booking_date: NaiveDate,
    now: Timestamp,
) -> Result<Effect> {
    let paid_at = Timestamp::at(booking_date.and_time(chrono::NaiveTime::MIN).and_utc());
    let due = invoice.data.due;
    let asks_money = matches!(invoice.state, State::Open | State::Expired | State::Failed);
    let effect = if !asks_money && invoice.state != State::SettledElsewhere {
        // Paid before (link, QR code or another transfer): all of it is surplus.
        add_surplus(db, invoice.id, amount.minor, now)?
    } else if amount.minor >= due.minor || invoice.state == State::SettledElsewhere {
        // The export's "paid elsewhere" was most likely this transfer: it stays its
        // payment; only what exceeds the amount due is surplus.
        exec(
            db,
            "UPDATE invoices SET state = 'paid', paid_by = 'transfer', paid_at = ?2,
                    updated_at = ?3, settled_at = NULL
             WHERE id = ?1",
            params![invoice.id, paid_at, now],
        )?;
        let surplus = if invoice.state == State::SettledElsewhere {
            0
        } else {
            amount.minor - due.minor
        };
        if surplus > 0 {
            add_surplus(db, invoice.id, surplus, now)?
        } else {
            Effect::Paid
        }
    } else {
        let rest = Money {
            minor: due.minor - amount.minor,
            currency: due.currency,
        };
        let mut data = invoice.data.clone();
        data.due = rest;
        new_revision(db, invoice, &data, Some(entry_id), "partial_payment", now)?;
        Effect::Partial { rest }
    };
    cancel_queued(db, invoice.id, entry_id, &effect)?;
    // The file's working table of open invoices by amount follows (when it was made).
    if asks_money {
        let now_asks = match effect {
            Effect::Partial { rest } => Some(rest),
            _ => None,
        };
        open_due_changed(db, invoice.id, Some(due), now_asks)?;
    }
    Ok(effect)
}

/// Keeps `bank_open_due` true within a file: the invoice no longer asks `was`, and asks
/// `asks` now (by the table's key; nothing to do while it is not made).
fn open_due_changed(
    db: &Store,
    invoice_id: i64,
    was: Option<Money>,
    asks: Option<Money>,
) -> Result<()> {
    if let Some(m) = was {
        exec(
            db,
            "DELETE FROM bank_open_due WHERE currency = ?1 AND due_minor = ?2 AND invoice_id = ?3",
            params![m.currency, m.minor, invoice_id],
        )?;
    }
    if let Some(m) = asks {
        exec(
            db,
            "INSERT OR IGNORE INTO bank_open_due (currency, due_minor, invoice_id)
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM bank_open_due_made)",
            params![m.currency, m.minor, invoice_id],
        )?;
    }
    Ok(())
}

/// Adds to an invoice's surplus; returns the whole surplus.
fn add_surplus(db: &Store, invoice_id: i64, minor: i64, now: Timestamp) -> Result<Effect> {
    let (total, currency): (i64, Currency) = db.conn.query_row(
        "UPDATE invoices SET overpaid_minor = coalesce(overpaid_minor, 0) + ?2, updated_at = ?3
         WHERE id = ?1
         RETURNING overpaid_minor,
                   (SELECT currency FROM revisions r WHERE r.invoice_id = invoices.id
                                                       AND r.revision = invoices.revision)",
        params![invoice_id, minor, now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Effect::Overpaid {
        surplus: Money {
            minor: total,
            currency,
        },
    })
}

/// A revision made by the bank side (a partial payment or its undoing): the same as the
/// current one but for what it asks; `export_due_minor` keeps what the export asked, so
/// that the export's next identical row changes nothing.
fn new_revision(
    db: &Store,
    invoice: &Candidate,
    data: &RevisionData,
    entry_id: Option<i64>,
    reason: &str,
    now: Timestamp,
) -> Result<i64> {
    let revision = invoice.revision + 1;
    exec(
        db,
        "INSERT INTO revisions (invoice_id, revision, customer_email, customer_name,
                               amount_minor, due_minor, currency, due_date, language,
                               country_code, reason, import_id, source_line, customer_type,
                               bank_entry_id, export_due_minor)
         SELECT invoice_id, ?2, customer_email, customer_name, amount_minor, ?3, currency,
                due_date, language, country_code, ?4, import_id, source_line, customer_type,
                ?5, coalesce(export_due_minor, due_minor)
         FROM revisions WHERE invoice_id = ?1 AND revision = ?6",
        params![
            invoice.id,
            revision,
            data.due.minor,
            reason,
            entry_id,
            invoice.revision
        ],
    )?;
    exec(
        db,
        "UPDATE invoices SET revision = ?2, state = 'open', last_error = NULL, paid_at = NULL,
                paid_by = NULL, settled_at = NULL, updated_at = ?3
         WHERE id = ?1",
        params![invoice.id, revision, now],
    )?;
    Ok(revision)
}

/// Cancels the invoice's queued mails that ask for money it no longer asks.
fn cancel_queued(db: &Store, invoice_id: i64, entry_id: i64, effect: &Effect) -> Result<()> {
    let why = match effect {
        Effect::Partial { .. } => format!(
            "part paid by bank transfer (bank entry {entry_id}): a new link asks for the rest"
        ),
        _ => format!("paid by bank transfer (bank entry {entry_id})"),
    };
    exec(
        db,
        "UPDATE outbox SET state = 'cancelled', last_error = ?2
         WHERE invoice_id = ?1 AND state = 'queued'",
        params![invoice_id, why],
    )?;
    Ok(())
}

/// A matched credit, as a reversal or `bank unmatch` sees it.
#[derive(Debug, Clone)]
pub struct MatchedCredit {
    /// The entry.
    pub entry_id: i64,
    /// Its invoice.
    pub invoice_id: i64,
    /// Its amount.
    pub amount: Money,
}

/// The matched credit a reversal or return undoes: one of the same account and amount,
/// the same end-to-end id, bank reference or remittance where the reversal gives one,
/// else the latest such credit from the same counterparty account.
pub fn reversed_credit(db: &Store, e: &Entry) -> Result<Option<MatchedCredit>> {
    Ok(db
        .conn
        .prepare_cached(
            "SELECT id, invoice_id, amount_minor, currency FROM bank_entries
             WHERE direction = 'CRDT' AND outcome = 'matched'
               AND account = ?1 AND amount_minor = ?2 AND currency = ?3
               AND ((?4 IS NOT NULL AND end_to_end_id = ?4)
                    OR (?5 IS NOT NULL AND bank_reference = ?5)
                    OR (?6 IS NOT NULL AND structured_reference = ?6)
                    OR (?7 IS NOT NULL AND counterparty_iban = ?7)
                    OR (?8 IS NOT NULL AND remittance = ?8))
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(
            params![
                e.account,
                e.amount.minor,
                e.amount.currency,
                e.end_to_end_id,
                e.bank_reference,
                e.structured_reference,
                e.counterparty_iban,
                e.remittance
            ],
            |r| {
                Ok(MatchedCredit {
                    entry_id: r.get(0)?,
                    invoice_id: r.get(1)?,
                    amount: Money {
                        minor: r.get(2)?,
                        currency: r.get(3)?,
                    },
                })
            },
        )
        .optional()?)
}

/// The matched credit `entry_id`, if it is one.
pub fn matched_credit(db: &Store, entry_id: i64) -> Result<Option<MatchedCredit>> {
    Ok(db
        .conn
        .query_row(
            "SELECT id, invoice_id, amount_minor, currency FROM bank_entries
             WHERE id = ?1 AND outcome = 'matched'",
            [entry_id],
            |r| {
                Ok(MatchedCredit {
                    entry_id: r.get(0)?,
                    invoice_id: r.get(1)?,
                    amount: Money {
                        minor: r.get(2)?,
                        currency: r.get(3)?,
                    },
                })
            },
        )
        .optional()?)
}

/// Takes a matched credit back from its invoice (a reversal, a return, `bank unmatch`):
/// what it paid is owed again. A surplus absorbs it first; otherwise the invoice reopens
/// asking for it again (a new revision when the amount asked changes). `flag` marks the
/// invoice `reversed` for the operator. The entry's own outcome is the caller's.
pub fn undo_transfer(db: &Store, credit: &MatchedCredit, flag: bool, now: Timestamp) -> Result<()> {
    let (state, surplus, paid_by): (State, Option<i64>, Option<String>) = db.conn.query_row(
        "SELECT state, overpaid_minor, paid_by FROM invoices WHERE id = ?1",
        [credit.invoice_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if flag {
        exec(
            db,
            "UPDATE invoices SET reversed = 1, updated_at = ?2 WHERE id = ?1",
            params![credit.invoice_id, now],
        )?;
    }
    let surplus = surplus.unwrap_or(0);
    if surplus >= credit.amount.minor {
        let left = surplus - credit.amount.minor;
        exec(
            db,
            "UPDATE invoices SET overpaid_minor = ?2, updated_at = ?3 WHERE id = ?1",
            params![credit.invoice_id, (left > 0).then_some(left), now],
        )?;
        return Ok(());
    }
    let owed_again = credit.amount.minor - surplus;
    exec(
        db,
        "UPDATE invoices SET overpaid_minor = NULL WHERE id = ?1",
        [credit.invoice_id],
    )?;
    let cur = candidates_where(db, &BY_ID, [credit.invoice_id])?
        .into_iter()
        .next()
        .ok_or_else(|| super::Error::from(rusqlite::Error::QueryReturnedNoRows))?;
    let paid_by_this = state == State::Paid && paid_by.as_deref() == Some("transfer");
    let mut data = cur.data.clone();
    if paid_by_this {
        // It paid the invoice: the revision still asks what it asked; reopen it.
        if data.due.minor == owed_again {
            exec(
                db,
                "UPDATE invoices SET state = 'open', paid_at = NULL, paid_by = NULL,
                        updated_at = ?2
                 WHERE id = ?1",
                params![credit.invoice_id, now],
            )?;
        } else {
            data.due.minor = owed_again;
            new_revision(db, &cur, &data, None, "reopened", now)?;
        }
    } else if matches!(state, State::Open | State::Expired | State::Failed) {
        // It paid part: the rest asked grows by it again.
        data.due.minor += owed_again;
        new_revision(db, &cur, &data, None, "reopened", now)?;
    } else {
        // Paid another way since (or settled elsewhere): nothing is asked again; the
        // flag tells the operator to look.
        exec(
            db,
            "UPDATE invoices SET reversed = 1, updated_at = ?2 WHERE id = ?1",
            params![credit.invoice_id, now],
        )?;
    }
    Ok(())
}

/// Marks an entry as undone or undoing (`reversed`), naming the other entry.
pub fn mark_reversed(
    db: &Store,
    id: i64,
    reverses: Option<i64>,
    invoice_id: Option<i64>,
    reason: &str,
) -> Result<()> {
    exec(
        db,
        "UPDATE bank_entries SET outcome = 'reversed', reason = ?2,
                reverses_entry_id = coalesce(?3, reverses_entry_id),
                invoice_id = coalesce(?4, invoice_id)
         WHERE id = ?1",
        params![id, reason, reverses, invoice_id],
    )?;
    Ok(())
}

/// `bank unmatch`: the entry is unmatched again, recorded with the time.
pub fn mark_unmatched_by_operator(db: &Store, id: i64, now: Timestamp) -> Result<()> {
    exec(
        db,
        "UPDATE bank_entries SET outcome = 'unmatched', invoice_id = NULL, matched_by = NULL,
                matched_at = NULL, reason = ?2
         WHERE id = ?1",
        params![id, format!("unmatched by the operator at {now}")],
    )?;
    Ok(())
}

/// One entry as `bank status` shows it (the keys of `bank status --json`).
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// The ENTRY of `bank match`.
    pub entry_id: i64,
    /// The account.
    pub account: String,
    /// The booking date.
    pub booking_date: Option<NaiveDate>,
    /// The value date.
    pub value_date: Option<NaiveDate>,
    /// The amount, a decimal string.
    pub amount: String,
    /// The currency.
    pub currency: &'static str,
    /// `CRDT` or `DBIT`.
    pub credit_debit: &'static str,
    /// `BOOK`, `PDNG` or `INFO`.
    pub status: &'static str,
    /// The other party's name.
    pub counterparty_name: Option<String>,
    /// The other party's IBAN.
    pub counterparty_iban: Option<String>,
    /// The remittance text.
    pub remittance: Option<String>,
    /// The structured reference as the bank gave it.
    pub structured_reference: Option<String>,
    /// The bank's reference.
    pub bank_reference: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// The invoice it paid (or a reversal reopened).
    pub invoice_reference: Option<InvoiceRef>,
    /// The invoice suggested for `bank match`.
    pub suggested_invoice: Option<InvoiceRef>,
    /// Why it was not applied, or what undid it.
    pub reason: Option<String>,
}

impl EntryView {
    /// The outcome's name.
    pub fn outcome_name(&self) -> &'static str {
        self.outcome.as_str()
    }
}

/// Calls `each` for every entry read (only those needing a look when `unmatched`), in
/// the order read, streaming.
pub fn for_each_entry(
    db: &Store,
    unmatched: bool,
    mut each: impl FnMut(EntryView) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let filter = if unmatched {
        "WHERE (e.outcome = 'unmatched' OR e.outcome = 'suggested')"
    } else {
        ""
    };
    let mut stmt = db.conn.prepare(&format!(
        "SELECT e.id, e.account, e.booking_date, e.value_date, e.amount_minor, e.currency,
                e.direction, e.status, e.counterparty_name, e.counterparty_iban, e.remittance,
                e.structured_reference, e.bank_reference, e.outcome, i.reference, s.reference,
                e.reason
         FROM bank_entries e
         LEFT JOIN invoices i ON i.id = e.invoice_id
         LEFT JOIN invoices s ON s.id = e.suggested_invoice_id
         {filter} ORDER BY e.id"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let currency: Currency = r.get(5)?;
        let direction: Direction = r.get(6)?;
        let booking: Booking = r.get(7)?;
        each(EntryView {
            entry_id: r.get(0)?,
            account: r.get(1)?,
            booking_date: r.get(2)?,
            value_date: r.get(3)?,
            amount: Money {
                minor: r.get(4)?,
                currency,
            }
            .to_decimal_string(),
            currency: currency.code(),
            credit_debit: direction.code(),
            status: booking.code(),
            counterparty_name: r.get(8)?,
            counterparty_iban: r.get(9)?,
            remittance: r.get(10)?,
            structured_reference: r.get(11)?,
            bank_reference: r.get(12)?,
            outcome: r.get(13)?,
            invoice_reference: r.get(14)?,
            suggested_invoice: r.get(15)?,
            reason: r.get(16)?,
        })?;
    }
    Ok(())
}

/// The entry `id` as [`EntryView`] needs it for `bank match`: its amount, direction,
/// status and outcome.
#[derive(Debug, Clone)]
pub struct EntryFacts {
    /// The amount.
    pub amount: Money,
    /// Credit or debit.
    pub direction: Direction,
    /// Booked or not.
    pub booking: Booking,
    /// Its outcome.
    pub outcome: Outcome,
    /// Its booking date.
    pub booking_date: Option<NaiveDate>,
    /// A reversal.
    pub reversal: bool,
}

/// The facts of entry `id`, if it exists.
pub fn entry_facts(db: &Store, id: i64) -> Result<Option<EntryFacts>> {
    Ok(db
        .conn
        .query_row(
            "SELECT amount_minor, currency, direction, status, outcome, booking_date, reversal
             FROM bank_entries WHERE id = ?1",
            [id],
            |r| {
                Ok(EntryFacts {
                    amount: Money {
                        minor: r.get(0)?,
                        currency: r.get(1)?,
                    },
                    direction: r.get(2)?,
                    booking: r.get(3)?,
                    outcome: r.get(4)?,
                    booking_date: r.get(5)?,
                    reversal: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// How many entries have each outcome.
pub fn count_by_outcome(db: &Store) -> Result<Vec<(Outcome, i64)>> {
    let mut counts: Vec<(Outcome, i64)> = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
    let mut stmt = db
        .conn
        .prepare_cached("SELECT outcome, count(*) FROM bank_entries GROUP BY outcome")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, Outcome>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (outcome, n) = row?;
        if let Some(slot) = counts.iter_mut().find(|(o, _)| *o == outcome) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

/// The invoices that need a look for money (overpaid, or reopened by a reversal), found
/// through their partial index: `(reference, surplus, reversed)`.
pub fn flagged(db: &Store) -> Result<Vec<(InvoiceRef, Option<Money>, bool)>> {
    let mut stmt = db.conn.prepare_cached(
        "SELECT i.reference, i.overpaid_minor, r.currency, i.reversed
         FROM invoices i JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
         WHERE i.overpaid_minor IS NOT NULL OR i.reversed = 1
         ORDER BY i.reference",
    )?;
    let rows = stmt.query_map([], |r| {
        let minor: Option<i64> = r.get(1)?;
        let currency: Currency = r.get(2)?;
        Ok((
            r.get(0)?,
            minor.map(|minor| Money { minor, currency }),
            r.get(3)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many invoices carry a surplus to refund (through the partial index).
pub fn count_overpaid(db: &Store) -> Result<i64> {
    Ok(db.conn.query_row(
        "SELECT count(*) FROM invoices
         WHERE (overpaid_minor IS NOT NULL OR reversed = 1) AND overpaid_minor IS NOT NULL",
        [],
        |r| r.get(0),
    )?)
}

/// What matched transfers brought in for an invoice (minor units), for its mail after a
/// partial payment; `None` when nothing.
pub fn received_by_transfer(db: &Store, invoice_id: i64) -> Result<Option<i64>> {
    let sum: Option<i64> = db
        .conn
        .prepare_cached(
            "SELECT sum(amount_minor) FROM bank_entries
             WHERE invoice_id = ?1 AND outcome = 'matched'",
        )?
        .query_row([invoice_id], |r| r.get(0))?;
    Ok(sum.filter(|&s| s > 0))
}
