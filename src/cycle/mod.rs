//! One cycle (ARCHITECTURE.md, *The flow of a cycle*): recover → ingest → payment status →
//! deactivate what must go → create the missing links → give them their real expiry →
//! iDEAL QR → one summary line and an exit code; the mail loop runs beside create,
//! extend and QR and sends each link's mail once the link is extended.
//!
//! - `status`: links and QR transactions due for a check, read from the API;
//! - `links_step`: deactivations, then creations (each intent committed first), then the
//!   `PATCH` that replaces a new link's provisional expiry with its real one;
//! - `qr_step`: QR transactions for EUR revisions with an extended active link;
//! - `mail_step`: the outbox, one [`send_one`] at a time, each mail once everything it
//!   announces is recorded.
//!
//! Every CM step fans its requests out through one helper (at most `max_in_flight` at a
//! time) and records the answers as they arrive; the database file's identity is checked
//! before each step that talks to CM or the mail server.
//!
//! Ordering is the safety argument: links that must go are deactivated first, and an
//! invoice gets a new link only when it holds no live one (the database refuses two).
//! The intent to create is committed before each request, so a crash in between is found
//! by the next cycle and reported as a possible orphan at CM, which lapses at its
//! provisional expiry; a link is recorded, and given its real expiry, before anything
//! announces it. A dry run does the same work inside one transaction that is
//! rolled back, and sends nothing.

mod links_step;
mod mail_step;
mod qr_step;
mod reminder_step;
mod status;

pub use crate::policy::ladder::Planned as PlannedReminder;
pub use links_step::{Deactivated, create_request, deactivate_one};
use links_step::{create_step, deactivate_step, extend_step};
use mail_step::mail_step;
pub use mail_step::{MailOutcome, send_one};
use qr_step::qr_step;
pub use reminder_step::REMINDERS_PER_CYCLE;
pub use status::{STATUS_CHECKS_PER_CYCLE, check_statuses};

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::PathBuf;

use crate::domain::{InvoiceRef, MerchantRef};
use crate::store::Store;
use anyhow::Context;

use crate::cm::idealqr::IdealQrClient;
use crate::cm::{CmClient, CmError};
use crate::config::Config;
use crate::ingest;
use crate::mail::Postman;
use crate::policy::Leave;
use crate::store::links::{self, ToCreate, ToDeactivate};
use crate::store::outbox::{self};

/// How a cycle runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files named on the command line, ingested (never moved) besides the inbox.
    pub files: Vec<PathBuf>,
    /// Plan only: no API write, no mail, no state change, no file moved.
    pub dry_run: bool,
    /// Progress bars for large files.
    pub progress: bool,
    /// The database file the cycle works on; checked before each step that talks to CM
    /// or the mail server, so a database removed or replaced underneath stops the work.
    pub database: Option<crate::store::FileIdentity>,
}

impl Options {
    /// Fails when the database file is no longer the one that was opened.
    fn check_database(&self) -> anyhow::Result<()> {
        match &self.database {
            Some(identity) => identity.check(),
            None => Ok(()),
        }
    }
}

/// What a dry run would do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Links that would be deactivated.
    pub deactivate: Vec<ToDeactivate>,
    /// Links that would be created (or replaced).
    pub create: Vec<ToCreate>,
    /// Mails already queued whose time has come and that pass their send-time checks as
    /// far as the database can tell (each create above adds one more; each is still read
    /// from CM first unless CM spoke of its link in this cycle).
    pub mails_due: usize,
    /// Queued mails that would be cancelled (their invoice moved on) or skipped (a
    /// reminder overtaken by a later step, or a before-due reminder after the due date).
    pub mails_dropped: usize,
    /// Queued mails that would wait (outside the send window, too soon after the last mail).
    pub mails_held: usize,
    /// Reminders whose date has come (each still checked with CM before it is queued);
    /// empty outside the send window.
    pub reminders: Vec<PlannedReminder>,
    /// Reminders due that wait for the send window.
    pub reminders_waiting: u64,
}

/// What a cycle did, for the summary line and the exit code.
#[derive(Debug, Default)]
pub struct Report {
    /// What ingest did.
    pub ingest: ingest::Report,
    /// What the bank step did (`None`: `bank.enabled` is off).
    pub bank: Option<crate::bank::import::Report>,
    /// The bank inbox could not be read: no statement was read this cycle.
    pub bank_error: Option<String>,
    /// Links created.
    pub links_created: u64,
    /// Links created to replace an earlier revision's.
    pub links_replaced: u64,
    /// Links CM confirmed inactive.
    pub links_deactivated: u64,
    /// Links CM refused for good.
    pub links_failed: u64,
    /// Requests that failed transiently and are left for the next cycle.
    pub deferred: u64,
    /// Create intents a crash interrupted, found at the start of this cycle.
    pub interrupted: Vec<(InvoiceRef, MerchantRef)>,
    /// Creates in this cycle whose answer was lost (timeout, cut connection) although CM
    /// may have carried them out: `(invoice reference, merchant reference)`.
    pub unanswered: Vec<(InvoiceRef, MerchantRef)>,
    /// iDEAL QR create intents a crash interrupted (purchase ids).
    pub interrupted_qr: Vec<String>,
    /// CM refused the credentials: nothing can work until the config changes.
    pub auth_error: Option<String>,
    /// No token could be had for another reason (the token endpoint failed): this
    /// cycle's CM work was deferred, nothing was decided.
    pub cm_deferred: Option<String>,
    /// Payments seen (links and QR codes).
    pub payments_seen: u64,
    /// Mails the relay accepted.
    pub mails_sent: u64,
    /// Mails waiting in the outbox when the cycle ended (counted after every step).
    pub mails_queued: u64,
    /// Mails held back by their send-time checks (outside the send window, too soon
    /// after the last mail to their invoice).
    pub mails_held: u64,
    /// Mails held back because CM could not say their link is unpaid, or could not
    /// extend it: never sent on a guess.
    pub mails_waiting_for_cm: u64,
    /// Mails refused for good.
    pub mails_failed: u64,
    /// Mails that failed for now (server down, 4xx) and stay queued.
    pub mails_deferred: u64,
    /// The mail server was unavailable: the queue waits for the next cycle, no mail
    /// backs off for it.
    pub mail_server_down: Option<String>,
    /// Invoices paid twice (link and QR) seen in this cycle: the merchant must refund one.
    pub double_payments: Vec<InvoiceRef>,
    /// QR transactions created, and revisions that get none (another currency, an amount
    /// out of range), in this cycle.
    pub qr_created: u64,
    /// Revisions that get no QR code (another currency, an amount out of range, a refusal).
    pub qr_skipped: u64,
    /// Reminder mails the relay accepted.
    pub reminders_sent: u64,
    /// Reminder steps recorded as skipped (a later step was due at the same time).
    pub reminders_skipped: u64,
    /// Reminders left for the next cycle (CM could not confirm the link, or its expiry
    /// could not be extended).
    pub reminders_deferred: u64,
    /// Reminders due that wait for the send window.
    pub reminders_waiting: u64,
    /// Whether reminders are on (the summary counts them then).
    pub reminders_on: bool,
    /// Set for dry runs.
    pub plan: Option<Plan>,
    /// Links CM said in this cycle are unpaid (it made them, or a status read said
    /// `open`): their mails need no second read before they leave.
    pub links_seen_open: HashSet<i64>,
}

impl Report {
    /// The counts the daemon's metrics add up.
    pub fn counts(&self) -> crate::metrics::CycleCounts {
        crate::metrics::CycleCounts {
            links_created: self.links_created,
            links_deactivated: self.links_deactivated,
            links_failed: self.links_failed,
            mails_sent: self.mails_sent,
            mails_failed: self.mails_failed,
            reminders_sent: self.reminders_sent,
            reminders_skipped: self.reminders_skipped,
            bank: self.bank.as_ref().map_or([0; 5], |b| {
                [
                    b.matched as u64,
                    b.suggested as u64,
                    b.unmatched as u64,
                    b.reversed as u64,
                    b.duplicate as u64,
                ]
            }),
        }
    }

    /// The one summary line of a cycle (README, *Commands*).
    pub fn summary(&self) -> String {
        let t = self.ingest.totals();
        let mut s = format!(
            "files {}, rows {} accepted / {} rejected / {} skipped; links {} created / {} replaced / {} deactivated / {} failed; payments seen {}; mails {} sent / {} queued / {} failed",
            self.ingest.files.len(),
            t.rows_accepted,
            t.rows_rejected,
            t.rows_skipped,
            self.links_created,
            self.links_replaced,
            self.links_deactivated,
            self.links_failed,
            self.payments_seen,
            self.mails_sent,
            self.mails_queued,
            self.mails_failed,
        );
        if self.mails_held > 0 {
            s.push_str(&format!(
                " / {} held back until their time (send window, min_gap_days)",
                self.mails_held
            ));
        }
        if self.mails_waiting_for_cm > 0 {
            s.push_str(&format!(
                " / {} waiting for CM to confirm the link",
                self.mails_waiting_for_cm
            ));
        }
        if self.reminders_on {
            s.push_str(&format!(
                "; reminders {} sent / {} skipped",
                self.reminders_sent, self.reminders_skipped
            ));
            if self.reminders_deferred > 0 {
                s.push_str(&format!(
                    " / {} left for the next cycle",
                    self.reminders_deferred
                ));
            }
            if self.reminders_waiting > 0 {
                s.push_str(&format!(
                    " / {} waiting for the send window",
                    self.reminders_waiting
                ));
            }
        }
        if self.qr_created > 0 || self.qr_skipped > 0 {
            s.push_str(&format!(
                "; iDEAL QR {} created / {} skipped (not EUR or amount out of range)",
                self.qr_created, self.qr_skipped
            ));
        }
        if !self.double_payments.is_empty() {
            s.push_str(&format!(
                "; {} double payment(s)",
                self.double_payments.len()
            ));
        }
        if self.deferred > 0 {
            s.push_str(&format!(
                "; {} request(s) left for the next cycle",
                self.deferred
            ));
        }
        if !self.interrupted.is_empty() {
            s.push_str(&format!(
                "; {} interrupted create(s) may have left orphan links at CM",
                self.interrupted.len()
            ));
        }
        if self.ingest.files_refused() > 0 {
            s.push_str(&format!(
                "; {} file(s) set aside",
                self.ingest.files_refused()
            ));
        }
        if t.snapshot_guard {
            s.push_str("; snapshot settlement held back");
        }
        s.push_str(&self.ingest.inbox_note());
        if let Some(bank) = &self.bank {
            s.push_str("; ");
            s.push_str(&bank.summary());
        }
        s
    }

    /// Why an operator must look, if they must (exit 3).
    pub fn attention(&self) -> Option<String> {
        let mut parts = self.ingest.attention();
        if let Some(why) = &self.bank_error {
            parts.push(format!("no bank statement was read: {why}"));
        }
        if let Some(bank) = &self.bank {
            parts.extend(bank.attention());
        }
        if let Some(why) = &self.cm_deferred {
            parts.push(format!(
                "no CM work was done this cycle, nothing was decided ({why})"
            ));
        }
        if self.links_failed > 0 {
            parts.push(format!(
                "CM refused {} link(s) for good (see `status --state failed`)",
                self.links_failed
            ));
        }
        if self.deferred > 0 {
            parts.push(format!(
                "{} request(s) failed for now and are left for the next cycle",
                self.deferred
            ));
        }
        if !self.interrupted_qr.is_empty() {
            parts.push(format!(
                "{} iDEAL QR create(s) were interrupted by a crash and CM may hold orphan transactions (purchase ids {})",
                self.interrupted_qr.len(),
                self.interrupted_qr.join(", ")
            ));
        }
        if !self.interrupted.is_empty() {
            let refs: Vec<_> = self
                .interrupted
                .iter()
                .take(5)
                .map(|(_, m)| m.as_str())
                .collect();
            parts.push(format!(
                "{} link create(s) were interrupted by a crash and CM may hold orphan links (merchant references {}{}); they stop being payable at their provisional expiry",
                self.interrupted.len(),
                refs.join(", "),
                if self.interrupted.len() > 5 { ", …" } else { "" }
            ));
        }
        if !self.unanswered.is_empty() {
            let refs: Vec<_> = self
                .unanswered
                .iter()
                .take(5)
                .map(|(_, m)| m.as_str())
                .collect();
            parts.push(format!(
                "{} link create(s) got no answer and CM may hold orphan links (merchant references {}{}); they stop being payable at their provisional expiry (cm.provisional_expiry_hours)",
                self.unanswered.len(),
                refs.join(", "),
                if self.unanswered.len() > 5 { ", …" } else { "" },
            ));
        }
        if self.mails_failed > 0 {
            parts.push(format!("{} mail(s) failed for good", self.mails_failed));
        }
        if self.mails_waiting_for_cm > 0 {
            parts.push(format!(
                "{} mail(s) wait in the outbox because CM could not confirm their link is unpaid and payable; they are checked again next cycle, never sent on a guess",
                self.mails_waiting_for_cm
            ));
        }
        if self.reminders_deferred > 0 {
            parts.push(format!(
                "{} reminder(s) wait for the next cycle: CM did not confirm the link's status or its extended expiry",
                self.reminders_deferred
            ));
        }
        if !self.double_payments.is_empty() {
            parts.push(format!(
                "paid twice, through the link and the iDEAL QR code (refund one): {}",
                InvoiceRef::list(&self.double_payments)
            ));
        }
        if let Some(why) = &self.mail_server_down {
            parts.push(format!(
                "the mail server is unavailable ({why}); {} mail(s) stay queued and go out in the next cycle once it answers",
                self.mails_queued
            ));
        } else if self.mails_deferred > 0 {
            parts.push(format!(
                "{} mail(s) could not be sent for now and stay queued",
                self.mails_deferred
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// What a cycle talks to: CM (payment links, and iDEAL QR when enabled) and the mail
/// server.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// The payment link client.
    pub cm: &'a CmClient,
    /// The iDEAL QR client, when enabled.
    pub qr: Option<&'a IdealQrClient>,
    /// The mail sender and templates.
    pub mail: &'a Postman,
}

/// Runs one cycle. `services` is `None` only for dry runs.
pub async fn run(
    db: &Store,
    cfg: &Config,
    services: Option<Services<'_>>,
    opts: &Options,
) -> anyhow::Result<Report> {
    if opts.dry_run {
        return dry_run(db, cfg, opts);
    }
    let services = services.context("a cycle that is not a dry run needs CM and mail")?;
    let cm = services.cm;
    let recovered = crate::store::recover(db)?;
    if recovered.mails > 0 {
        tracing::warn!(
            resumed = recovered.mails,
            "mails interrupted while sending are queued again (a receiver may get one twice)"
        );
    }
    for (invoice, merchant) in &recovered.links {
        tracing::warn!(%invoice, merchant_reference = %merchant,
            "a create request was interrupted by a crash: CM may hold an orphan link with this merchant reference (it was never mailed; it stops being payable at its provisional expiry)");
    }
    let mut report = Report {
        interrupted: recovered.links,
        interrupted_qr: recovered.qr,
        reminders_on: cfg.reminders.enabled,
        ..Report::default()
    };
    let (csv, statements) = named_files(cfg, opts);
    report.ingest = ingest_all(db, cfg, opts, &csv)?;
    bank_step(db, cfg, opts, &statements, &mut report)?;
    reminder_step::sync_ladder(db, cfg)?;
    crate::progress::beat();
    crate::hangpoint("cycle-hang").await;

    // Payments first: a link or QR code paid meanwhile must not be replaced, and a
    // payment through the QR code gets its link deactivated in the same cycle. When no
    // token can be had (the token endpoint fails), every request of a step fails at once
    // without being sent, and nothing is decided.
    opts.check_database()?;
    check_statuses(db, cfg, services, &mut report).await?;
    if report.auth_error.is_none() {
        opts.check_database()?;
        deactivate_step(db, cfg, cm, &mut report).await?;
    }
    // From here links and mail overlap: a link's mail goes out as soon as the link is
    // recorded with its real expiry (and its iDEAL QR code, when enabled), while the
    // other links are still being made. Both sides run on this task, taking turns at
    // their awaits, so each database write stays one synchronous call.
    opts.check_database()?;
    crate::progress::beat();
    let handoff = Handoff::default();
    let shared = RefCell::new(std::mem::take(&mut report));
    let links = async {
        let made = links_side(db, cfg, services, &shared, &handoff, opts).await;
        handoff.finish();
        made
    };
    let mail = mail_step(db, cfg, services, &shared, &handoff);
    let (made, mailed) = tokio::join!(links, mail);
    let mut report = shared.into_inner();
    let mismatched = made?;
    mailed?;
    if mismatched {
        // A link CM recorded with another amount is switched off at once (never mailed).
        opts.check_database()?;
        deactivate_step(db, cfg, cm, &mut report).await?;
    }
    // Counted once everything is done: the link stages may queue mails after the mail
    // loop gave up on a relay that is down.
    report.mails_queued = u64::try_from(outbox::count_queued(db)?).unwrap_or(0);
    if let Some(e) = &report.auth_error {
        anyhow::bail!("{e}");
    }
    Ok(report)
}

/// What the link side tells the mail side while both run (see [`run`]).
#[derive(Default)]
struct Handoff {
    /// Woken when a mail may have become due, and when the link side is done.
    ready: tokio::sync::Notify,
    /// The link side is done: what is not due now waits for the next cycle.
    done: Cell<bool>,
    /// Links extended in this cycle whose iDEAL QR code is still being made: their mail
    /// waits for it, so that it can show the code.
    held: RefCell<HashSet<i64>>,
    /// Links recorded and not yet through the extend stage; the create stage waits while
    /// there are `cm.max_in_flight` of them.
    unextended: Cell<usize>,
    /// Woken each time the extend stage records an answer.
    extended: tokio::sync::Notify,
}

impl Handoff {
    fn mail_may_be_due(&self) {
        self.ready.notify_one();
    }

    fn finish(&self) {
        self.done.set(true);
        self.ready.notify_one();
    }
}

/// The link side of a cycle: creates, each link given its real expiry as soon as it is
/// recorded (and its iDEAL QR code right after), as three stages joined by queues, each
/// stage also finishing what earlier cycles left (links still on their provisional
/// expiry, links without their QR code). Returns whether a link was recorded with
/// another amount than asked (it must be switched off).
async fn links_side(
    db: &Store,
    cfg: &Config,
    services: Services<'_>,
    report: &RefCell<Report>,
    handoff: &Handoff,
    opts: &Options,
) -> anyhow::Result<bool> {
    if report.borrow().auth_error.is_some() {
        return Ok(false);
    }
    opts.check_database()?;
    // Each stage's own work is read before any of them starts.
    let creates = links::plan_creates(db)?;
    let provisional = links::provisional_links(db)?;
    let qr_plan = match services.qr {
        Some(_) => Some(qr_step::plan(db)?),
        None => None,
    };
    let (extend_tx, extend_rx) = tokio::sync::mpsc::unbounded_channel();
    let (qr_tx, qr_rx) = tokio::sync::mpsc::unbounded_channel();
    let create = create_step(db, cfg, services.cm, report, creates, extend_tx, handoff);
    let extend = extend_step(
        db,
        cfg,
        services.cm,
        report,
        provisional,
        extend_rx,
        qr_plan.as_ref().map(|_| qr_tx),
        handoff,
    );
    let qr = async {
        match (services.qr, qr_plan) {
            (Some(client), Some(plan)) => {
                qr_step(db, cfg, client, report, plan, qr_rx, handoff).await
            }
            _ => Ok(()),
        }
    };
    // Reminders concern links announced in earlier cycles: they run beside the three
    // stages, each queued reminder waking the mail side.
    let remind = reminder_step::reminder_step(db, cfg, services.cm, report, handoff);
    // The first failure (the database, not CM: CM's answers are recorded) ends all
    // four; an intent whose request is dropped is found by the next cycle's recovery.
    let (mismatched, (), (), ()) = tokio::try_join!(create, extend, qr, remind)?;
    Ok(mismatched)
}

/// The items of a queue fed by an earlier stage, as a stream that ends when that stage
/// is done (its sender dropped).
fn queue<T>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The files named on the command line, split once by their first bytes: CSV exports,
/// and (when `bank.enabled`) bank statements for the bank step.
fn named_files(cfg: &Config, opts: &Options) -> (Vec<PathBuf>, Vec<PathBuf>) {
    opts.files
        .iter()
        .cloned()
        .partition(|f| !(cfg.bank.enabled && crate::bank::import::looks_like_statement(f)))
}

fn ingest_all(
    db: &Store,
    cfg: &Config,
    opts: &Options,
    csv: &[PathBuf],
) -> anyhow::Result<ingest::Report> {
    let iopts = ingest::Options {
        dry_run: opts.dry_run,
        progress: opts.progress,
        again: false,
    };
    let mut report = ingest::ingest_inbox(db, cfg, iopts)?;
    if !csv.is_empty() {
        let named = ingest::ingest_paths(db, cfg, csv, iopts)?;
        report.files.extend(named.files);
    }
    Ok(report)
}

/// The bank step (README, *Bank transfers*): after the CSV inbox, before links,
/// reminders and mail, so that an invoice paid by transfer gets no reminder and its link
/// is deactivated in this same cycle. Off unless `bank.enabled`; an idle cycle with an
/// empty bank inbox costs one folder listing.
fn bank_step(
    db: &Store,
    cfg: &Config,
    opts: &Options,
    named: &[PathBuf],
    report: &mut Report,
) -> anyhow::Result<()> {
    if !cfg.bank.enabled {
        return Ok(());
    }
    let bopts = crate::bank::import::Options {
        notes: opts.dry_run,
        dry_run: opts.dry_run,
    };
    match crate::bank::import::import(db, cfg, true, named, bopts) {
        Ok(r) => report.bank = Some(r),
        Err(e) => {
            // The bank inbox missing or unreadable: said, and the rest of the cycle goes on.
            let why = format!("{e:#}");
            tracing::error!("{why}");
            report.bank_error = Some(why);
            report.bank = Some(crate::bank::import::Report::default());
        }
    }
    Ok(())
}

fn dry_run(db: &Store, cfg: &Config, opts: &Options) -> anyhow::Result<Report> {
    // Dropped without a commit: everything below is rolled back, on success or error.
    let _rollback = db.rehearsal()?;
    let (csv, statements) = named_files(cfg, opts);
    let mut report = Report {
        ingest: ingest_all(db, cfg, opts, &csv)?,
        reminders_on: cfg.reminders.enabled,
        ..Report::default()
    };
    bank_step(db, cfg, opts, &statements, &mut report)?;
    reminder_step::sync_ladder(db, cfg)?;
    let deactivate = links::plan_deactivations(db)?;
    // Assume the deactivations succeed, so that replacements show as creates.
    for d in &deactivate {
        links::record_deactivated(db, d.link_id, None, crate::clock::timestamp())?;
    }
    let create = links::plan_creates(db)?;
    // The same send-time checks as the cycle's, as far as the database can tell (no CM
    // call: a mail whose link must be read or extended first counts as going).
    let (mut mails_due, mut mails_dropped, mut mails_held) = (0, 0, 0);
    let now = crate::clock::local_now();
    for p in outbox::due(db, crate::clock::timestamp(), 100_000)? {
        let facts = mail_step::facts(&p, false);
        match crate::policy::may_leave(
            &facts,
            &cfg.reminders,
            cfg.cm.link_expiry_days_after_due,
            now,
        ) {
            Leave::Send | Leave::ReadStatus | Leave::Extend(_) => mails_due += 1,
            Leave::Cancel(_) | Leave::Skip(_) => mails_dropped += 1,
            Leave::Wait { .. } => mails_held += 1,
        }
    }
    let (reminders, reminders_waiting) = if cfg.reminders.enabled {
        match reminder_step::due_now(db, cfg, crate::clock::local_now())? {
            Ok(planned) => (planned, 0),
            Err(waiting) => (Vec::new(), waiting),
        }
    } else {
        (Vec::new(), 0)
    };
    report.plan = Some(Plan {
        deactivate,
        create,
        mails_due,
        mails_dropped,
        mails_held,
        reminders,
        reminders_waiting,
    });
    Ok(report)
}

/// Sends one request per item, at most `in_flight` at a time (each also waits for the
/// shared CM throttle), and records each answer as it arrives: the fan-out-then-record
/// loop of every CM step. `request` runs when the item's turn comes (so an intent it
/// commits is committed just before its request); `record` runs on this task, one answer
/// at a time, so it can use the connection.
async fn fan_out<T, U, R, Fut>(
    items: Vec<T>,
    in_flight: usize,
    request: impl FnMut(T) -> Fut,
    record: impl FnMut(U, R) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = (U, R)>,
{
    fan_out_stream(
        futures_util::stream::iter(items),
        in_flight,
        request,
        record,
    )
    .await
}

/// [`fan_out`] over items that arrive while it runs (a stage fed by another); ends when
/// the stream does.
async fn fan_out_stream<T, U, R, Fut>(
    items: impl futures_util::Stream<Item = T>,
    in_flight: usize,
    request: impl FnMut(T) -> Fut,
    mut record: impl FnMut(U, R) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = (U, R)>,
{
    use futures_util::StreamExt;
    let mut results = std::pin::pin!(items.map(request).buffer_unordered(in_flight.max(1)));
    while let Some((item, answer)) = results.next().await {
        record(item, answer)?;
    }
    Ok(())
}

fn note_failure(report: &mut Report, e: &CmError) {
    report.deferred += 1;
    if let CmError::NoToken(why) = e
        && report.cm_deferred.is_none()
    {
        tracing::warn!("CM work deferred to the next cycle: {why}");
        report.cm_deferred = Some(why.clone());
    }
    if let CmError::Auth { .. } = e
        && report.auth_error.is_none()
    {
        report.auth_error = Some(format!("{e}; check cm.client_id and the client secret"));
    }
}
