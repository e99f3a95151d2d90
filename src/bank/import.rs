//! `bank import` and the cycle's bank step: statement files from `bank.inbox` (moved to
//! `bank.archive_dir` once applied, or set aside in `bank.rejected_dir` with a
//! `.reason.txt`) and files named on the command line (never moved).
//!
//! A file is applied whole or not at all: its entries, their matches and every effect on
//! invoices are one unit of work, kept only when the whole file was read. A file whose
//! bytes were applied before changes nothing; an entry known from another file (an
//! overlapping download, camt.052 then camt.053) is a duplicate and changes nothing. A
//! kill at any moment leaves either nothing of the file or all of it; the file itself is
//! moved only after, so a rerun finds it again and, knowing its bytes, archives it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::matching::{self, Decision};
use super::read::{Failure, read_statements};
use crate::config::Config;
use crate::domain::statement::{Booking, Direction, Entry, Item};
use crate::domain::{InvoiceRef, Money, Timestamp};
use crate::ingest::files;
use crate::store::Store;
use crate::store::bank::{self as stored, Effect, MatchedBy, Outcome};

/// What one entry came to, for the report and the dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryNote {
    /// The file and line.
    pub at: String,
    /// The amount, direction and payer, in words.
    pub what: String,
    /// What became of it.
    pub outcome: String,
}

/// How many invoices a report names in each list (the counts go on): a statement of a
/// million entries must not hold a million references in memory.
pub const NAMED: usize = 50;

/// What a bank import did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Files applied.
    pub files_read: usize,
    /// Files whose bytes were applied before (archived, nothing changed).
    pub files_known: usize,
    /// Files set aside: `(name, reason)`.
    pub files_refused: Vec<(String, String)>,
    /// Inbox entries still being written, or not files.
    pub files_waiting: Vec<String>,
    /// Entries matched to an invoice.
    pub matched: usize,
    /// Entries left for the operator with a suggestion.
    pub suggested: usize,
    /// Credits left unmatched.
    pub unmatched: usize,
    /// Reversals and returns that undid a match.
    pub reversed: usize,
    /// Entries known from an earlier statement.
    pub duplicate: usize,
    /// Entries never matched (debits, pending, information).
    pub ignored: usize,
    /// Invoices paid in full by transfer.
    pub paid: usize,
    /// Invoices paid in part (a new revision asks for the rest).
    pub partial: usize,
    /// Invoices paid more than asked (or twice): `(invoice, surplus)`, the first
    /// [`NAMED`] of them (the count is `overpaid_count`).
    pub overpaid: Vec<(InvoiceRef, Money)>,
    /// How many invoices were paid more than asked.
    pub overpaid_count: usize,
    /// Invoices a reversal reopened or flagged, the first [`NAMED`] of them.
    pub reopened: Vec<InvoiceRef>,
    /// How many invoices a reversal reopened or flagged.
    pub reopened_count: usize,
    /// Per entry, what happened (kept only when asked: dry runs).
    pub notes: Vec<EntryNote>,
}

impl Report {
    /// Whether the operator must look (a file set aside, an overpayment, a reversal).
    pub fn needs_attention(&self) -> bool {
        !self.files_refused.is_empty() || !self.overpaid.is_empty() || !self.reopened.is_empty()
    }

    /// One line for the summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "bank: {} file(s) read, {} matched, {} suggested, {} unmatched, {} reversed, {} duplicate, {} ignored",
            self.files_read,
            self.matched,
            self.suggested,
            self.unmatched,
            self.reversed,
            self.duplicate,
            self.ignored
        );
        if self.files_known > 0 {
            s.push_str(&format!(", {} file(s) already read", self.files_known));
        }
        if !self.files_refused.is_empty() {
            s.push_str(&format!(", {} file(s) set aside", self.files_refused.len()));
        }
        s
    }

    /// The sentences that need the operator's attention.
    pub fn attention(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, reason) in &self.files_refused {
            out.push(format!("bank statement {name} was set aside: {reason}"));
        }
        for (invoice, surplus) in &self.overpaid {
            out.push(format!(
                "invoice {invoice} was paid {} {} more than it asked: refund it",
                surplus.currency.code(),
                surplus.to_decimal_string()
            ));
        }
        if self.overpaid_count > self.overpaid.len() {
            out.push(format!(
                "{} more invoice(s) were overpaid (`bank status` lists them)",
                self.overpaid_count - self.overpaid.len()
            ));
        }
        if !self.reopened.is_empty() {
            let more = self.reopened_count - self.reopened.len();
            out.push(format!(
                "a bank reversal took back the payment of {}{}: look at it",
                InvoiceRef::list(&self.reopened),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        out
    }

    fn add(&mut self, other: Report) {
        self.files_read += other.files_read;
        self.files_known += other.files_known;
        self.files_refused.extend(other.files_refused);
        self.files_waiting.extend(other.files_waiting);
        self.matched += other.matched;
        self.suggested += other.suggested;
        self.unmatched += other.unmatched;
        self.reversed += other.reversed;
        self.duplicate += other.duplicate;
        self.ignored += other.ignored;
        self.paid += other.paid;
        self.partial += other.partial;
        self.overpaid_count += other.overpaid_count;
        self.reopened_count += other.reopened_count;
        self.overpaid.extend(other.overpaid);
        self.overpaid.truncate(NAMED);
        self.reopened.extend(other.reopened);
        self.reopened.truncate(NAMED);
        self.notes.extend(other.notes);
    }
}

/// How an import runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep a note per entry (dry runs print them).
    pub notes: bool,
    /// Leave the files where they are and write no reason file (dry runs).
    pub dry_run: bool,
}

/// Reads `bank.inbox` (when `inbox`) and the named `files`, each file as one unit of work
/// nested in the caller's (so a dry run's rehearsal rolls it all back).
pub fn import(
    db: &Store,
    cfg: &Config,
    inbox: bool,
    named: &[PathBuf],
    opts: Options,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    if inbox {
        let any = glob::Pattern::new("*").expect("a glob");
        let found = files::ready_files(
            &cfg.bank.inbox,
            &any,
            Duration::from_secs(cfg.inbox.settle_seconds),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the bank inbox {}: {e}",
                cfg.bank.inbox.display()
            )
        })?;
        report.files_waiting.extend(found.settling);
        report.files_waiting.extend(found.skipped);
        for path in found.ready {
            if path.to_string_lossy().ends_with(".reason.txt") {
                continue;
            }
            report.add(import_file(db, cfg, &path, !opts.dry_run, opts)?);
        }
    }
    for path in named {
        report.add(import_file(db, cfg, path, false, opts)?);
    }
    Ok(report)
}

/// Reads and applies one file; moves it (inbox files) once its fate is recorded.
fn import_file(
    db: &Store,
    cfg: &Config,
    path: &Path,
    move_file: bool,
    opts: Options,
) -> anyhow::Result<Report> {
    let name = files::display_name(path);
    let mut report = Report::default();
    let sha = match hash(path) {
        Ok(sha) => sha,
        Err(e) => {
            let reason = format!("cannot be read: {e}");
            refuse(cfg, path, &name, &reason, move_file, opts, &mut report)?;
            return Ok(report);
        }
    };
    if stored::file_known(db, &sha)? {
        report.files_known += 1;
        tracing::info!(file = %name, "bank statement read before: nothing changes");
        if move_file {
            files::move_into(path, &cfg.bank.archive_dir, true)?;
        }
        return Ok(report);
    }
    let now = crate::clock::timestamp();
    let applied: Result<Report, Refusal> = db.nested(|tx| {
        let mut r = Report {
            files_read: 1,
            ..Report::default()
        };
        let file_id = stored::insert_file(tx, &name, &sha, "unknown", now)?;
        stored::start_file(tx)?;
        stored::fill_creditor_keys(tx)?;
        let mut entries = 0u64;
        let mut fresh = 0u64;
        let input = File::open(path).map_err(|e| Refusal::Aside(format!("cannot be read: {e}")))?;
        let read = read_statements(BufReader::with_capacity(1 << 16, input), |item| {
            match item {
                Item::Statement(h) => {
                    if !cfg.bank.knows(&h.account) {
                        anyhow::bail!(Stop(format!(
                            "line {}: it is a statement of account {}, which is not in bank.accounts ({})",
                            h.line,
                            h.account,
                            cfg.bank.accounts.join(", ")
                        )));
                    }
                }
                Item::Entry(e) => {
                    entries += 1;
                    if apply_entry(tx, cfg, &name, file_id, &e, now, opts, &mut r)? {
                        fresh += 1;
                    }
                    crate::failpoint("bank-entry");
                }
            }
            Ok(())
        });
        match read {
            Ok(format) => {
                stored::set_file_format(tx, file_id, format.name())?;
                stored::finish_file(tx, file_id, entries, fresh)?;
                Ok(r)
            }
            Err(Failure::Unreadable(e)) => Err(Refusal::Aside(e.to_string())),
            Err(Failure::Stopped(e)) => match e.downcast::<Stop>() {
                Ok(Stop(reason)) => Err(Refusal::Aside(reason)),
                Err(e) => Err(Refusal::Fault(e)),
            },
        }
    });
    crate::failpoint("bank-file-applied");
    match applied {
        Ok(r) => {
            report.add(r);
            if move_file {
                files::move_into(path, &cfg.bank.archive_dir, true)?;
            }
            tracing::info!(file = %name, "{}", report.summary());
        }
        Err(Refusal::Aside(reason)) => {
            refuse(cfg, path, &name, &reason, move_file, opts, &mut report)?;
        }
        Err(Refusal::Fault(e)) => return Err(e),
    }
    Ok(report)
}

/// A reader's caller stopping the read: the file is set aside for this reason.
#[derive(Debug)]
struct Stop(String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

/// Whether a file looks like a bank statement (camt XML or MT940) from its first bytes:
/// `run FILE...` hands such files to the bank step and the others to the CSV ingest.
pub fn looks_like_statement(path: &Path) -> bool {
    let mut head = [0u8; 4096];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = &head[start..];
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    (head.starts_with(b"<") && (has(b"camt.05") || has(b"BkToCstmr")))
        || head.starts_with(b":20:")
        || head.starts_with(b"{1:")
        || (head.starts_with(b":940:") || has(b"\n:20:") && has(b":25:") && has(b":61:"))
}

/// Why a file's unit of work was rolled back.
enum Refusal {
    /// The file is set aside for this reason.
    Aside(String),
    /// Something else failed (the database): the cycle fails, the file stays.
    Fault(anyhow::Error),
}

impl From<crate::store::Error> for Refusal {
    fn from(e: crate::store::Error) -> Self {
        Refusal::Fault(e.into())
    }
}

fn refuse(
    cfg: &Config,
    path: &Path,
    name: &str,
    reason: &str,
    move_file: bool,
    opts: Options,
    report: &mut Report,
) -> anyhow::Result<()> {
    tracing::warn!(file = %name, "bank statement set aside: {reason}");
    if !opts.dry_run {
        files::set_aside(path, &cfg.bank.rejected_dir, reason, move_file)?;
    }
    report
        .files_refused
        .push((name.to_string(), reason.to_string()));
    Ok(())
}

/// The SHA-256 of a file, read in blocks.
fn hash(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// How an entry is known across statements (README, *Bank transfers*): the bank's
/// reference where it gives one (with the account, part, direction and amount, as
/// written: a bank's references mostly rise, so new keys land at the end of the index),
/// else the hash of its content and its occurrence among identical entries of this file.
fn entry_key(db: &Store, e: &Entry) -> crate::store::Result<String> {
    if let Some(bank_ref) = &e.bank_reference {
        return Ok(format!(
            "r{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            e.account,
            bank_ref,
            e.part,
            e.direction.code(),
            e.amount.minor,
            e.amount.currency.code()
        ));
    }
    let field = |s: &Option<String>| s.as_deref().unwrap_or("").to_string();
    let content = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        e.account,
        e.booking_date
            .or(e.value_date)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        e.direction.code(),
        e.amount.minor,
        e.amount.currency.code(),
        field(&e.counterparty_name),
        field(&e.counterparty_iban),
        field(&e.remittance),
        field(&e.structured_reference),
        field(&e.end_to_end_id),
        e.part
    );
    let digest = hex::encode(&Sha256::digest(content.as_bytes())[..16]);
    let n = stored::next_occurrence(db, &digest)?;
    Ok(format!("c{digest}#{n}"))
}

/// What an entry will come to, decided before it is recorded (reads only), so that it is
/// written once with its outcome.
enum Plan {
    /// Never applied, for this reason.
    Ignore(&'static str),
    /// A reversal or return of this matched credit.
    Reverse(stored::MatchedCredit),
    /// A credit that pays this invoice.
    Match(Box<stored::Candidate>, MatchedBy),
    /// Not applied; this invoice fits by amount and name.
    Suggest(Box<stored::Candidate>, String),
    /// Not applied, for this reason.
    Unmatched(String),
}

impl Plan {
    /// The entry's row as it is recorded.
    fn fate(&self) -> stored::Fate<'_> {
        let mut f = stored::Fate {
            outcome: Outcome::Unmatched,
            reason: None,
            invoice_id: None,
            suggested_invoice_id: None,
            matched_by: None,
            reverses_entry_id: None,
        };
        match self {
            Plan::Ignore(why) => {
                f.outcome = Outcome::Ignored;
                f.reason = Some(why);
            }
            Plan::Reverse(credit) => {
                f.outcome = Outcome::Reversed;
                f.invoice_id = Some(credit.invoice_id);
                f.reverses_entry_id = Some(credit.entry_id);
            }
            Plan::Match(invoice, by) => {
                f.outcome = Outcome::Matched;
                f.invoice_id = Some(invoice.id);
                f.matched_by = Some(*by);
            }
            Plan::Suggest(invoice, why) => {
                f.outcome = Outcome::Suggested;
                f.reason = Some(why);
                f.suggested_invoice_id = Some(invoice.id);
            }
            Plan::Unmatched(why) => f.reason = Some(why),
        }
        f
    }
}

/// Decides what an entry is (reads only).
fn plan(db: &Store, cfg: &Config, e: &Entry) -> crate::store::Result<Plan> {
    match e.booking {
        Booking::Pending => {
            return Ok(Plan::Ignore(
                "pending: applied once, when the bank books it",
            ));
        }
        Booking::Information => return Ok(Plan::Ignore("information only, not booked")),
        Booking::Booked => {}
    }
    if e.reversal || e.return_reason.is_some() {
        if e.direction == Direction::Credit {
            return Ok(Plan::Ignore(
                "a reversal of a debit: money paid out came back",
            ));
        }
        return Ok(match stored::reversed_credit(db, e)? {
            Some(credit) => Plan::Reverse(credit),
            None => Plan::Ignore("a reversal or return of no credit matched here"),
        });
    }
    if e.direction == Direction::Debit {
        return Ok(Plan::Ignore(
            "a debit (money paid out) never pays an invoice",
        ));
    }
    Ok(match matching::decide(db, e, cfg.bank.suggest)? {
        Decision::Match { invoice, by } => Plan::Match(invoice, by),
        Decision::Suggest { invoice, reason } => Plan::Suggest(invoice, reason),
        Decision::Unmatched { reason } => Plan::Unmatched(reason),
    })
}

/// Records one entry with its outcome and applies it; returns whether it was new.
#[allow(clippy::too_many_arguments)]
fn apply_entry(
    db: &Store,
    cfg: &Config,
    file: &str,
    file_id: i64,
    e: &Entry,
    now: Timestamp,
    opts: Options,
    r: &mut Report,
) -> crate::store::Result<bool> {
    let key = entry_key(db, e)?;
    let plan = plan(db, cfg, e)?;
    let id = match stored::insert_entry(db, &key, file_id, e, &plan.fate(), now)? {
        Some(id) => id,
        None => match stored::known_entry(db, &key)? {
            // Pending before, booked now: decided and applied now, once.
            Some(k) if k.booking == Booking::Pending && e.booking == Booking::Booked => {
                stored::mark_booked(db, k.id, e, &plan.fate(), now)?;
                k.id
            }
            _ => {
                r.duplicate += 1;
                let said = "duplicate: read before in another statement";
                note(r, opts, file, e, said.into());
                return Ok(false);
            }
        },
    };
    let outcome = carry_out(db, id, e, plan, now, r)?;
    note(r, opts, file, e, outcome);
    Ok(true)
}

fn note(r: &mut Report, opts: Options, file: &str, e: &Entry, outcome: String) {
    // A dry run shows the first thousand entries; the counts cover the rest.
    if opts.notes && r.notes.len() < 20 * NAMED {
        r.notes.push(EntryNote {
            at: format!("{file}:{}", e.line),
            what: format!(
                "{} {} {} from {}",
                e.direction.code(),
                e.amount.currency.code(),
                e.amount.to_decimal_string(),
                e.counterparty_name.as_deref().unwrap_or("(no name)")
            ),
            outcome,
        });
    }
}

/// Applies what the plan decided to the invoice it names (the entry is recorded with its
/// outcome already); returns the outcome in words.
fn carry_out(
    db: &Store,
    id: i64,
    e: &Entry,
    plan: Plan,
    now: Timestamp,
    r: &mut Report,
) -> crate::store::Result<String> {
    match plan {
        Plan::Ignore(why) => {
            r.ignored += 1;
            Ok(format!("ignored: {why}"))
        }
        Plan::Reverse(credit) => {
            stored::undo_transfer(db, &credit, true, now)?;
            let invoice = stored::invoice_reference(db, credit.invoice_id)?;
            stored::mark_reversed(
                db,
                credit.entry_id,
                None,
                None,
                &format!("reversed by bank entry {id}"),
            )?;
            stored::mark_reversed(
                db,
                id,
                Some(credit.entry_id),
                Some(credit.invoice_id),
                &format!(
                    "reverses bank entry {} (invoice {invoice})",
                    credit.entry_id
                ),
            )?;
            r.reversed += 1;
            r.reopened_count += 1;
            if r.reopened.len() < NAMED {
                r.reopened.push(invoice.clone());
            }
            Ok(format!(
                "reverses bank entry {}: invoice {invoice} reopened",
                credit.entry_id
            ))
        }
        Plan::Match(invoice, _) => {
            let date = e
                .booking_date
                .or(e.value_date)
                .unwrap_or(now.instant().date_naive());
            let effect = stored::transfer_effects(db, id, &invoice, e.amount, date, now)?;
            r.matched += 1;
            let reference = invoice.reference.clone();
            Ok(match effect {
                Effect::Paid => {
                    r.paid += 1;
                    format!("matched: invoice {reference} paid")
                }
                Effect::Partial { rest } => {
                    r.partial += 1;
                    format!(
                        "matched: invoice {reference} paid in part, {} {} still to pay",
                        rest.currency.code(),
                        rest.to_decimal_string()
                    )
                }
                Effect::Overpaid { surplus } => {
                    r.overpaid_count += 1;
                    if r.overpaid.len() < NAMED {
                        r.overpaid.push((reference.clone(), surplus));
                    }
                    format!(
                        "matched: invoice {reference} overpaid by {} {}",
                        surplus.currency.code(),
                        surplus.to_decimal_string()
                    )
                }
            })
        }
        Plan::Suggest(invoice, reason) => {
            r.suggested += 1;
            Ok(format!(
                "not applied ({reason}); suggested: invoice {} (`bank match {id} {}`)",
                invoice.reference, invoice.reference
            ))
        }
        Plan::Unmatched(reason) => {
            r.unmatched += 1;
            Ok(format!("unmatched: {reason}"))
        }
    }
}

/// `bank match ENTRY INVOICE`: the operator assigns a booked credit to an invoice, with
/// the same effects as a match the statement made.
pub fn match_by_hand(db: &Store, entry: i64, invoice: &InvoiceRef) -> anyhow::Result<Effect> {
    db.write(|tx| {
        let Some(facts) = stored::entry_facts(tx, entry)? else {
            anyhow::bail!("there is no bank entry {entry} (see `bank status`)");
        };
        if facts.direction != Direction::Credit || facts.reversal {
            anyhow::bail!(
                "bank entry {entry} is not a credit: only money received pays an invoice"
            );
        }
        if facts.booking != Booking::Booked {
            anyhow::bail!(
                "bank entry {entry} is not booked yet: it can be matched once the bank books it"
            );
        }
        match facts.outcome {
            Outcome::Unmatched | Outcome::Suggested => {}
            Outcome::Matched => {
                anyhow::bail!("bank entry {entry} is already matched; `bank unmatch {entry}` first")
            }
            other => anyhow::bail!(
                "bank entry {entry} is {} and cannot be matched",
                other.as_str()
            ),
        }
        let Some(candidate) = stored::by_reference(tx, invoice)? else {
            anyhow::bail!("there is no invoice {invoice}");
        };
        if candidate.data.currency() != facts.amount.currency {
            anyhow::bail!(
                "bank entry {entry} is in {}, invoice {invoice} in {}",
                facts.amount.currency.code(),
                candidate.data.currency().code()
            );
        }
        let now = crate::clock::timestamp();
        let date = facts.booking_date.unwrap_or(now.instant().date_naive());
        Ok(stored::apply_transfer(
            tx,
            entry,
            &candidate,
            facts.amount,
            date,
            MatchedBy::Operator,
            now,
        )?)
    })
}

/// `bank unmatch ENTRY`: takes a match back; the invoice asks for that money again.
pub fn unmatch_by_hand(db: &Store, entry: i64) -> anyhow::Result<InvoiceRef> {
    db.write(|tx| {
        let Some(credit) = stored::matched_credit(tx, entry)? else {
            anyhow::bail!("bank entry {entry} is not matched (see `bank status`)");
        };
        let now = crate::clock::timestamp();
        stored::undo_transfer(tx, &credit, false, now)?;
        stored::mark_unmatched_by_operator(tx, entry, now)?;
        Ok(stored::invoice_reference(tx, credit.invoice_id)?)
    })
}
