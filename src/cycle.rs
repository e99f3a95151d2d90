//! One cycle (PRODUCT.md section 4): ingest → deactivate what must go → create what is
//! missing → report. Later steps (payment status, mail) hang off the same report.
//!
//! Ordering is the safety argument: links that must go are deactivated first, and an
//! invoice gets a new link only when it holds no live one (the database refuses two).
//! The intent to create is committed before each request, so a crash in between is found
//! by the next cycle and reported as a possible orphan at CM; a link is recorded before
//! anything announces it. A dry run does the same work inside one transaction that is
//! rolled back, and sends nothing.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures_util::StreamExt;
use rusqlite::Connection;

use crate::cm::idealqr::{self, CreateTransaction, IdealQrClient, QrStatus};
use crate::cm::{CmClient, CmError, CreateLink, LinkStatus};
use crate::config::Config;
use crate::domain::Currency;
use crate::ingest;
use crate::mail::{MailContext, Postman, QrCode, SendError};
use crate::store::links::{self, ToCheck, ToCreate, ToDeactivate};
use crate::store::now_text;
use crate::store::outbox::{self, MailKind};
use crate::store::qr::{self as qr_store, QrToCheck, QrToCreate};

/// How a cycle runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files named on the command line, ingested (never moved) besides the inbox.
    pub files: Vec<PathBuf>,
    /// Plan only: no API write, no mail, no state change, no file moved.
    pub dry_run: bool,
    /// Progress bars for large files.
    pub progress: bool,
}

/// What a dry run would do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub deactivate: Vec<ToDeactivate>,
    pub create: Vec<ToCreate>,
    /// Mails already queued whose time has come (each create above adds one more).
    pub mails_due: usize,
}

/// What a cycle did, for the summary line and the exit code.
#[derive(Debug, Default)]
pub struct Report {
    pub ingest: ingest::Report,
    pub links_created: u64,
    pub links_replaced: u64,
    pub links_deactivated: u64,
    pub links_failed: u64,
    /// Requests that failed transiently and are left for the next cycle.
    pub deferred: u64,
    /// Create intents a crash interrupted, found at the start of this cycle.
    pub interrupted: Vec<(String, String)>,
    /// iDEAL QR create intents a crash interrupted (purchase ids).
    pub interrupted_qr: Vec<String>,
    /// CM refused the credentials: nothing can work until the config changes.
    pub auth_error: Option<String>,
    pub payments_seen: u64,
    pub mails_sent: u64,
    pub mails_queued: u64,
    pub mails_failed: u64,
    /// Mails that failed for now (server down, 4xx) and stay queued with back-off.
    pub mails_deferred: u64,
    /// Invoices paid twice (link and QR) seen in this cycle: the merchant must refund one.
    pub double_payments: Vec<String>,
    /// QR transactions created, and revisions that get none (another currency, an amount
    /// out of range), in this cycle.
    pub qr_created: u64,
    pub qr_skipped: u64,
    /// Set for dry runs.
    pub plan: Option<Plan>,
}

impl Report {
    /// The one summary line of PRODUCT.md section 4.6.
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
        s
    }

    /// Why an operator must look, if they must (exit 3).
    pub fn attention(&self) -> Option<String> {
        let mut parts = Vec::new();
        let t = self.ingest.totals();
        if t.rows_rejected > 0 {
            parts.push(format!("{} row(s) were rejected", t.rows_rejected));
        }
        if self.ingest.files_refused() > 0 {
            parts.push(format!(
                "{} file(s) could not be imported",
                self.ingest.files_refused()
            ));
        }
        if t.snapshot_guard {
            parts.push("a snapshot export lacked more than half of the open invoices, so nothing was settled".into());
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
                "{} link create(s) were interrupted by a crash and CM may hold orphan links (merchant references {}{})",
                self.interrupted.len(),
                refs.join(", "),
                if self.interrupted.len() > 5 { ", …" } else { "" }
            ));
        }
        if self.mails_failed > 0 {
            parts.push(format!("{} mail(s) failed for good", self.mails_failed));
        }
        if !self.double_payments.is_empty() {
            parts.push(format!(
                "paid twice, through the link and the iDEAL QR code (refund one): {}",
                self.double_payments.join(", ")
            ));
        }
        if self.mails_deferred > 0 {
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
    pub cm: &'a CmClient,
    pub qr: Option<&'a IdealQrClient>,
    pub mail: &'a Postman,
}

/// Runs one cycle. `services` is `None` only for dry runs.
pub async fn run(
    conn: &Connection,
    cfg: &Config,
    services: Option<Services<'_>>,
    opts: &Options,
) -> anyhow::Result<Report> {
    if opts.dry_run {
        return dry_run(conn, cfg, opts);
    }
    let services = services.context("a cycle that is not a dry run needs CM and mail")?;
    let cm = services.cm;
    let mut report = Report {
        interrupted: links::recover_interrupted(conn)?,
        ..Report::default()
    };
    let resumed = outbox::recover_sending(conn)?;
    if resumed > 0 {
        tracing::warn!(
            resumed,
            "mails interrupted while sending are queued again (a receiver may get one twice)"
        );
    }
    for (invoice, merchant) in &report.interrupted {
        tracing::warn!(%invoice, merchant_reference = %merchant,
            "a create request was interrupted by a crash: CM may hold an orphan link with this merchant reference (it was never mailed); check the CM dashboard");
    }
    report.interrupted_qr = qr_store::recover_interrupted(conn)?;
    report.ingest = ingest_all(conn, cfg, opts)?;

    // Payments first: a link or QR code paid meanwhile must not be replaced, and a
    // payment through the QR code gets its link deactivated in the same cycle.
    check_statuses(conn, cfg, services, &mut report).await?;
    if report.auth_error.is_none() {
        deactivate_step(conn, cfg, cm, &mut report).await?;
    }
    if report.auth_error.is_none() {
        create_step(conn, cfg, cm, &mut report).await?;
    }
    if let Some(qr) = services.qr
        && report.auth_error.is_none()
    {
        qr_step(conn, cfg, qr, &mut report).await?;
    }
    mail_step(conn, cfg, services, &mut report).await?;
    if let Some(e) = &report.auth_error {
        anyhow::bail!("{e}");
    }
    Ok(report)
}

fn ingest_all(conn: &Connection, cfg: &Config, opts: &Options) -> anyhow::Result<ingest::Report> {
    let iopts = ingest::Options {
        dry_run: opts.dry_run,
        progress: opts.progress,
    };
    let mut report = ingest::ingest_inbox(conn, cfg, iopts)?;
    if !opts.files.is_empty() {
        let named = ingest::ingest_paths(conn, cfg, &opts.files, iopts)?;
        report.files.extend(named.files);
    }
    Ok(report)
}

fn dry_run(conn: &Connection, cfg: &Config, opts: &Options) -> anyhow::Result<Report> {
    conn.execute_batch("BEGIN")?;
    let result = (|| -> anyhow::Result<Report> {
        let mut report = Report {
            ingest: ingest_all(conn, cfg, opts)?,
            ..Report::default()
        };
        let deactivate = links::plan_deactivations(conn)?;
        // Assume the deactivations succeed, so that replacements show as creates.
        for d in &deactivate {
            links::record_deactivated(conn, d.link_id, None, &now_text())?;
        }
        let create = links::plan_creates(conn)?;
        let mails_due = outbox::due(conn, &now_text(), 100_000)?
            .iter()
            .filter(|p| p.still_wanted)
            .count();
        report.plan = Some(Plan {
            deactivate,
            create,
            mails_due,
        });
        Ok(report)
    })();
    conn.execute_batch("ROLLBACK")?;
    result
}

async fn deactivate_step(
    conn: &Connection,
    cfg: &Config,
    cm: &CmClient,
    report: &mut Report,
) -> anyhow::Result<()> {
    let list = links::plan_deactivations(conn)?;
    if list.is_empty() {
        return Ok(());
    }
    conn.execute_batch("BEGIN")?;
    for d in &list {
        links::mark_deactivating(conn, d.link_id, d.reason)?;
    }
    conn.execute_batch("COMMIT")?;
    let mut results = futures_util::stream::iter(list)
        .map(|d| async move {
            let r = cm.deactivate_link(&d.link_ref).await;
            (d, r)
        })
        .buffer_unordered(cfg.cm.max_in_flight);
    while let Some((d, result)) = results.next().await {
        let now = now_text();
        match result {
            Ok(link) if link.status == LinkStatus::Paid => {
                // Paid before it could be switched off: the payment is what happened.
                if links::record_paid(conn, d.link_id, d.invoice_id, &now)? {
                    report.double_payments.push(d.reference.clone());
                }
                report.payments_seen += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref,
                    "the link to deactivate was already paid; the invoice is recorded as paid");
            }
            Ok(_) => {
                links::record_deactivated(conn, d.link_id, None, &now)?;
                report.links_deactivated += 1;
                tracing::info!(invoice = %d.reference, link = %d.link_ref, reason = d.reason.as_str(), "link deactivated");
            }
            Err(e) if e.is_not_found() => {
                links::record_deactivated(
                    conn,
                    d.link_id,
                    Some("CM no longer knows this link"),
                    &now,
                )?;
                report.links_deactivated += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref, "CM does not know the link to deactivate; recorded as inactive");
            }
            Err(e) => {
                let message = e.to_string();
                links::record_deactivation_failed(conn, d.link_id, &message)?;
                note_failure(report, &e);
                tracing::warn!(invoice = %d.reference, link = %d.link_ref, "deactivation left for the next cycle: {message}");
            }
        }
    }
    Ok(())
}

fn note_failure(report: &mut Report, e: &CmError) {
    report.deferred += 1;
    if let CmError::Auth { .. } = e
        && report.auth_error.is_none()
    {
        report.auth_error = Some(format!("{e}; check cm.client_id and the client secret"));
    }
}

/// The fields of the create request for one invoice revision.
pub fn create_request(c: &ToCreate, cfg: &Config, today: NaiveDate) -> CreateLink {
    let exponent = Currency::parse(&c.data.currency)
        .map(|cur| cur.exponent())
        .unwrap_or(2);
    let language = c
        .data
        .language
        .clone()
        .unwrap_or_else(|| cfg.cm.default_language.clone())
        .to_uppercase();
    let country = c
        .data
        .country_code
        .clone()
        .unwrap_or_else(|| cfg.cm.default_country.clone())
        .to_uppercase();
    CreateLink {
        amount_minor: c.data.due_minor,
        exponent,
        currency_code: c.data.currency.clone(),
        invoice_reference: c.reference.clone(),
        invoice_due_date: format!("{}T00:00:00+00:00", c.data.due_date),
        merchant_reference: c.merchant_reference(),
        language_code: language,
        country_code: country,
        expiry_date: expiry_date(&c.data.due_date, cfg.cm.link_expiry_days_after_due, today),
        callback_url: cfg.cm.callback_url.clone(),
    }
}

/// `link_expiry_days_after_due` days after the due date, at the end of that day (UTC);
/// for an invoice already that far overdue, the same number of days from today, so that
/// a link is never born expired.
pub fn expiry_date(due: &str, days: Option<u32>, today: NaiveDate) -> Option<String> {
    let days = days?;
    let due = NaiveDate::parse_from_str(due, "%Y-%m-%d").ok()?;
    let mut expiry = due.checked_add_days(Days::new(days.into()))?;
    if expiry <= today {
        expiry = today.checked_add_days(Days::new(days.max(1).into()))?;
    }
    Some(format!("{expiry}T23:59:59+00:00"))
}

async fn create_step(
    conn: &Connection,
    cfg: &Config,
    cm: &CmClient,
    report: &mut Report,
) -> anyhow::Result<()> {
    let plan = links::plan_creates(conn)?;
    if plan.is_empty() {
        return Ok(());
    }
    let today = Utc::now().date_naive();
    let mut mismatched = false;
    let mut results = futures_util::stream::iter(plan)
        .map(|c| {
            // Runs when the stream pulls the item, just before the request is built: the
            // intent is committed before anything is sent.
            let request = create_request(&c, cfg, today);
            let intent =
                links::record_intent(conn, &c, request.expiry_date.as_deref(), &now_text());
            async move {
                let outcome = match intent {
                    Ok(link_id) => Ok((link_id, cm.create_link(&request).await)),
                    Err(e) => Err(e),
                };
                (c, outcome)
            }
        })
        .buffer_unordered(cfg.cm.max_in_flight);
    while let Some((c, outcome)) = results.next().await {
        let (link_id, result) = outcome.context("cannot record the intent to create a link")?;
        crate::failpoint("link-after-create");
        let now = now_text();
        match result {
            Ok(link) if echoed_amount_differs(&link, &c) => {
                // CM holds another amount than the invoice asks: never announce it.
                let message = format!(
                    "CM recorded the amount {} for a link that asked {}; the link is switched off and was not mailed",
                    link.amount.as_deref().unwrap_or("?"),
                    crate::domain::money::format_minor(
                        c.data.due_minor,
                        exponent_of(&c.data.currency)
                    )
                );
                links::record_amount_mismatch(
                    conn,
                    link_id,
                    c.invoice_id,
                    &link.reference,
                    &link.uri,
                    &message,
                    &now,
                )?;
                report.links_failed += 1;
                mismatched = true;
                tracing::error!(invoice = %c.reference, link = %link.reference, "{message}");
            }
            Ok(link) => {
                let next = check_time(Utc::now(), 0);
                // The link and the mail announcing it are one fact: one transaction.
                conn.execute_batch("BEGIN IMMEDIATE")?;
                let recorded =
                    links::record_created(conn, link_id, &link.reference, &link.uri, &now, &next)
                        .and_then(|()| {
                            let kind = if c.replaces {
                                MailKind::Replacement
                            } else {
                                MailKind::Link
                            };
                            outbox::enqueue(conn, c.invoice_id, c.revision, link_id, kind, &now)
                        });
                match recorded {
                    Ok(_) => conn.execute_batch("COMMIT")?,
                    Err(e) => {
                        conn.execute_batch("ROLLBACK")?;
                        return Err(e.into());
                    }
                }
                report.links_created += 1;
                if c.replaces {
                    report.links_replaced += 1;
                }
                tracing::info!(invoice = %c.reference, link = %link.reference, "link created");
            }
            Err(e @ (CmError::Permanent { .. } | CmError::Invalid(_))) => {
                let message = e.to_string();
                links::record_create_refused(conn, link_id, c.invoice_id, &message, &now)?;
                report.links_failed += 1;
                tracing::warn!(invoice = %c.reference, "CM refused the link for this revision: {message}");
            }
            Err(e) => {
                let message = e.to_string();
                links::record_create_deferred(conn, link_id, &message, e.maybe_applied())?;
                note_failure(report, &e);
                tracing::warn!(invoice = %c.reference, "link creation left for the next cycle: {message}");
            }
        }
    }
    drop(results);
    if mismatched {
        Box::pin(deactivate_step(conn, cfg, cm, report)).await?;
    }
    Ok(())
}

fn exponent_of(currency: &str) -> u8 {
    Currency::parse(currency).map(|c| c.exponent()).unwrap_or(2)
}

/// Whether CM says it holds another amount than the revision asks (an absent echo is
/// not a difference: the document does not promise one).
fn echoed_amount_differs(link: &crate::cm::PaymentLink, c: &ToCreate) -> bool {
    link.amount.is_some()
        && link.amount_minor(exponent_of(&c.data.currency)) != Some(c.data.due_minor)
}

/// The first status check of a new link comes after this; each later one after twice
/// the previous wait, up to [`STATUS_CHECK_MAX`]: often while new, rarely when old.
pub const STATUS_CHECK_FIRST: chrono::Duration = chrono::Duration::minutes(15);
/// The longest wait between two status checks of an open link.
pub const STATUS_CHECK_MAX: chrono::Duration = chrono::Duration::hours(24);
/// At most this many status checks per cycle; the rest wait for the next one.
pub const STATUS_CHECKS_PER_CYCLE: usize = 2000;

/// When a link that has had `checks` status checks is next checked.
pub fn check_time(now: DateTime<Utc>, checks: i64) -> String {
    let factor = 1i32 << checks.clamp(0, 16);
    let wait = (STATUS_CHECK_FIRST * factor).min(STATUS_CHECK_MAX);
    (now + wait).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Fetches the payment status of every link and QR transaction that is due (back-off,
/// callback or webhook, expiry) and records what it finds. Also used by the daemon right
/// after a callback.
pub async fn check_statuses(
    conn: &Connection,
    cfg: &Config,
    services: Services<'_>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cm = services.cm;
    let due = links::due_for_check(conn, &now_text(), STATUS_CHECKS_PER_CYCLE)?;
    let mut results = futures_util::stream::iter(due)
        .map(|c| async move {
            let r = cm.link_status(&c.link_ref).await;
            (c, r)
        })
        .buffer_unordered(cfg.cm.max_in_flight);
    while let Some((c, result)) = results.next().await {
        record_status(conn, &c, result, report)?;
    }
    drop(results);
    if let Some(qr) = services.qr {
        let due = qr_store::due_for_check(conn, &now_text(), STATUS_CHECKS_PER_CYCLE)?;
        let mut results = futures_util::stream::iter(due)
            .map(|c| async move {
                let r = qr.get_transaction(&c.cm_id).await;
                (c, r)
            })
            .buffer_unordered(cfg.cm.max_in_flight);
        while let Some((c, result)) = results.next().await {
            record_qr_status(conn, &c, result, report)?;
        }
    }
    Ok(())
}

fn record_qr_status(
    conn: &Connection,
    c: &QrToCheck,
    result: Result<idealqr::QrTransaction, CmError>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match result.map(|t| t.status) {
        Ok(QrStatus::Success) => {
            if qr_store::record_success(conn, c.id, c.invoice_id, &now_s)? {
                report.double_payments.push(c.reference.clone());
                tracing::warn!(invoice = %c.reference, "paid twice: through its payment link and its iDEAL QR code; refund one");
            } else {
                tracing::info!(invoice = %c.reference, transaction = %c.cm_id, "paid through its iDEAL QR code");
            }
            report.payments_seen += 1;
        }
        Ok(status @ (QrStatus::Cancelled | QrStatus::Expired | QrStatus::Failure)) => {
            qr_store::record_ended(conn, c.id, &status.as_str().to_lowercase())?;
            tracing::info!(invoice = %c.reference, transaction = %c.cm_id, status = status.as_str(), "iDEAL QR transaction ended unpaid");
        }
        Ok(_) => {
            qr_store::record_checked(conn, c.id, &check_time(now, c.status_checks + 1))?;
        }
        Err(e) if e.is_not_found() => {
            qr_store::record_checked(conn, c.id, &check_time(now, c.status_checks + 1))?;
            tracing::warn!(invoice = %c.reference, transaction = %c.cm_id, "CM does not know this iDEAL QR transaction");
        }
        Err(e) => {
            note_failure(report, &e);
            tracing::warn!(invoice = %c.reference, "iDEAL QR status check left for the next cycle: {e}");
        }
    }
    Ok(())
}

/// When an iDEAL QR transaction expires: with the link's expiry, else the due date plus
/// [`QR_GRACE_DAYS`] (end of day, UTC); never earlier than tomorrow.
pub fn qr_expires_at(link_expiry: Option<&str>, due: &str, today: NaiveDate) -> String {
    if let Some(e) = link_expiry
        && let Ok(t) = DateTime::parse_from_rfc3339(e)
    {
        return t
            .with_timezone(&Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    }
    let date = NaiveDate::parse_from_str(due, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.checked_add_days(Days::new(QR_GRACE_DAYS)))
        .filter(|d| *d > today)
        .unwrap_or_else(|| today + Days::new(QR_GRACE_DAYS));
    format!("{date}T23:59:59Z")
}

/// Days after the due date an iDEAL QR code stays payable when links have no expiry.
pub const QR_GRACE_DAYS: u64 = 14;

/// The QR request for one revision, or why it gets none.
fn qr_request(q: &QrToCreate, cfg: &Config, today: NaiveDate) -> Result<CreateTransaction, String> {
    if q.data.currency != "EUR" {
        return Err(format!(
            "no iDEAL QR code: the invoice is in {}, iDEAL QR takes EUR only",
            q.data.currency
        ));
    }
    if !idealqr::amount_in_range(q.data.due_minor) {
        return Err(format!(
            "no iDEAL QR code: {} cents is outside iDEAL QR's 1..99999999",
            q.data.due_minor
        ));
    }
    let description: String = cfg
        .ideal_qr
        .description
        .replace("{invoice_reference}", &q.reference)
        .chars()
        .take(255)
        .collect();
    let purchase_id = idealqr::purchase_id(&q.reference, q.revision);
    let webhook_url = cfg.cm.callback_url.as_ref().map(|u| {
        let sep = if u.contains('?') { '&' } else { '?' };
        format!("{u}{sep}idealqr={purchase_id}")
    });
    Ok(CreateTransaction {
        reference: q.reference.clone(),
        amount_cents: q.data.due_minor,
        currency: "EUR".into(),
        purchase_id,
        description,
        expires_at: qr_expires_at(q.link_expiry.as_deref(), &q.data.due_date, today),
        size: cfg.ideal_qr.size,
        return_url: cfg.ideal_qr.return_url.clone().unwrap_or_default(),
        language: q
            .data
            .language
            .clone()
            .unwrap_or_else(|| cfg.cm.default_language.to_lowercase()),
        webhook_url,
    })
}

/// Withdraws the QR codes of revisions that moved on, then gives every revision with an
/// active link its QR transaction (EUR, in range), intent first.
async fn qr_step(
    conn: &Connection,
    cfg: &Config,
    client: &IdealQrClient,
    report: &mut Report,
) -> anyhow::Result<()> {
    let withdrawn = qr_store::withdraw_stale(conn)?;
    if withdrawn > 0 {
        tracing::info!(
            withdrawn,
            "iDEAL QR codes of replaced or settled invoices are no longer offered (they stay payable until they expire and are still followed)"
        );
    }
    let today = Utc::now().date_naive();
    let mut wanted = Vec::new();
    for q in qr_store::plan_creates(conn)? {
        match qr_request(&q, cfg, today) {
            Ok(req) => wanted.push((q, req)),
            Err(why) => {
                let pid = idealqr::purchase_id(&q.reference, q.revision);
                qr_store::record_skipped(conn, &q, &pid, &why, &now_text())?;
                report.qr_skipped += 1;
                tracing::info!(invoice = %q.reference, "{why}");
            }
        }
    }
    let mut results = futures_util::stream::iter(wanted)
        .map(|(q, req)| {
            let intent =
                qr_store::record_intent(conn, &q, &req.purchase_id, &req.expires_at, &now_text());
            async move {
                let outcome = match intent {
                    Ok(id) => Ok((id, client.create_transaction(&req).await)),
                    Err(e) => Err(e),
                };
                (q, outcome)
            }
        })
        .buffer_unordered(cfg.cm.max_in_flight);
    while let Some((q, outcome)) = results.next().await {
        let (id, result) =
            outcome.context("cannot record the intent to create an iDEAL QR transaction")?;
        match result {
            Ok(t) if t.amount_cents.is_some_and(|a| a != q.data.due_minor) => {
                // Another amount than asked: never offered, still followed (it may be paid).
                let next = check_time(Utc::now(), 0);
                qr_store::record_created(conn, id, &t.id, t.qr_url.as_deref(), &next)?;
                let why = format!(
                    "CM recorded {} cents for an iDEAL QR transaction that asked {}; it is not offered",
                    t.amount_cents.unwrap_or_default(),
                    q.data.due_minor
                );
                qr_store::withdraw(conn, id, &why)?;
                report.qr_skipped += 1;
                tracing::error!(invoice = %q.reference, transaction = %t.id, "{why}");
            }
            Ok(t) => {
                qr_store::record_created(
                    conn,
                    id,
                    &t.id,
                    t.qr_url.as_deref(),
                    &check_time(Utc::now(), 0),
                )?;
                report.qr_created += 1;
                tracing::info!(invoice = %q.reference, transaction = %t.id, "iDEAL QR transaction created");
            }
            Err(e @ (CmError::Permanent { .. } | CmError::Invalid(_))) => {
                let message = e.to_string();
                qr_store::record_refused(conn, id, &message)?;
                report.qr_skipped += 1;
                tracing::warn!(invoice = %q.reference, "CM refused the iDEAL QR transaction (the link still works): {message}");
            }
            Err(e) => {
                let message = e.to_string();
                qr_store::record_deferred(conn, id, &message, e.maybe_applied())?;
                note_failure(report, &e);
                tracing::warn!(invoice = %q.reference, "iDEAL QR creation left for the next cycle: {message}");
            }
        }
    }
    Ok(())
}

fn record_status(
    conn: &Connection,
    c: &ToCheck,
    result: Result<LinkStatus, CmError>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match result {
        Ok(LinkStatus::Paid) => {
            if links::record_paid(conn, c.link_id, c.invoice_id, &now_s)? {
                report.double_payments.push(c.reference.clone());
            }
            report.payments_seen += 1;
            tracing::info!(invoice = %c.reference, link = %c.link_ref, "paid through its payment link");
        }
        Ok(_) if c.expired => {
            links::record_expired(conn, c.link_id, &now_s)?;
            tracing::info!(invoice = %c.reference, link = %c.link_ref, "the link expired unpaid");
        }
        Ok(_) => {
            links::record_checked(
                conn,
                c.link_id,
                &now_s,
                &check_time(now, c.status_checks + 1),
            )?;
        }
        Err(e) if e.is_not_found() => {
            links::record_checked(
                conn,
                c.link_id,
                &now_s,
                &check_time(now, c.status_checks + 1),
            )?;
            links::record_deactivation_failed(conn, c.link_id, "CM does not know this link")?;
            tracing::warn!(invoice = %c.reference, link = %c.link_ref, "CM does not know this link");
        }
        Err(e) => {
            note_failure(report, &e);
            tracing::warn!(invoice = %c.reference, link = %c.link_ref, "status check left for the next cycle: {e}");
        }
    }
    Ok(())
}

/// The QR code a mail shows: the offered transaction's image, fetched and embedded, or
/// its URL when the image cannot be fetched now.
async fn mail_qr(
    conn: &Connection,
    client: Option<&IdealQrClient>,
    p: &outbox::Pending,
) -> anyhow::Result<Option<QrCode>> {
    let Some(client) = client else {
        return Ok(None);
    };
    let Some((url, _)) = qr_store::offered(conn, p.invoice_id, p.revision)? else {
        return Ok(None);
    };
    let png = match client.fetch_qr_png(&url).await {
        Ok(png) => Some(png),
        Err(e) => {
            tracing::warn!(invoice = %p.reference, "the QR image could not be fetched; the mail shows its URL: {e}");
            None
        }
    };
    Ok(Some(QrCode { url, png }))
}

/// A mail that failed for now waits this long, doubling per attempt up to
/// [`MAIL_RETRY_MAX`].
pub const MAIL_RETRY_FIRST: chrono::Duration = chrono::Duration::minutes(2);
/// The longest wait between two attempts at one mail.
pub const MAIL_RETRY_MAX: chrono::Duration = chrono::Duration::hours(2);
/// After this many transient failures in a row the server is taken to be down: the rest
/// of the queue waits for the next cycle instead of timing out one by one.
const MAIL_FAILURES_IN_A_ROW: u32 = 3;

/// When a mail that has had `attempts` attempts is tried again.
pub fn mail_retry_time(now: DateTime<Utc>, attempts: i64) -> String {
    let factor = 1i32 << (attempts - 1).clamp(0, 16);
    let wait = (MAIL_RETRY_FIRST * factor).min(MAIL_RETRY_MAX);
    (now + wait).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Sends the queued mails that are due, at most `messages_per_second`, over one
/// connection. Each send is recorded before (`sending`) and after (`sent`) it.
async fn mail_step(
    conn: &Connection,
    cfg: &Config,
    services: Services<'_>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let postman = services.mail;
    let due = outbox::due(conn, &now_text(), 100_000)?;
    let mut failures_in_a_row = 0;
    for p in due {
        if !p.still_wanted {
            outbox::cancel(
                conn,
                p.id,
                "not sent: the invoice was settled, paid or replaced before its mail went out",
            )?;
            continue;
        }
        let language = p
            .data
            .language
            .clone()
            .unwrap_or_else(|| cfg.cm.default_language.to_lowercase());
        let exponent = Currency::parse(&p.data.currency)
            .map(|c| c.exponent())
            .unwrap_or(2);
        let Ok(due_date) = NaiveDate::parse_from_str(&p.data.due_date, "%Y-%m-%d") else {
            outbox::mark_failed(conn, p.id, "the stored due date is not a date")?;
            report.mails_failed += 1;
            continue;
        };
        let ctx = MailContext {
            invoice_reference: p.reference.clone(),
            customer_name: p.data.customer_name.clone(),
            customer_email: p.data.customer_email.clone(),
            amount_minor: p.data.due_minor,
            currency_code: p.data.currency.clone(),
            currency_exponent: exponent,
            due_date,
            language,
            link_uri: p.link_uri.clone().unwrap_or_default(),
            qr: mail_qr(conn, services.qr, &p).await?,
            replaces_earlier_link: p.kind == MailKind::Replacement,
            sender_name: postman.sender_name(),
        };
        let resend = (p.kind == MailKind::Resend).then_some(p.id);
        let (message, message_id) = match postman.compose(&ctx, p.revision, resend) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("the mail cannot be built: {e}");
                outbox::mark_failed(conn, p.id, &why)?;
                report.mails_failed += 1;
                tracing::warn!(invoice = %p.reference, "{why}");
                continue;
            }
        };
        outbox::mark_sending(conn, p.id, &message_id)?;
        crate::failpoint("mail-before-send");
        let result = postman.sender.send(&message).await;
        crate::failpoint("mail-after-send");
        match result {
            Ok(()) => {
                outbox::mark_sent(conn, p.id, &now_text())?;
                report.mails_sent += 1;
                failures_in_a_row = 0;
                tracing::info!(invoice = %p.reference, to = %p.data.customer_email, "mail sent");
            }
            Err(SendError::Permanent(reply)) => {
                outbox::mark_failed(conn, p.id, &reply)?;
                report.mails_failed += 1;
                failures_in_a_row = 0;
                tracing::warn!(invoice = %p.reference, "mail refused for good: {reply}");
            }
            Err(SendError::Transient(reply)) => {
                let next = mail_retry_time(Utc::now(), p.attempts + 1);
                outbox::mark_retry(conn, p.id, &reply, &next)?;
                report.mails_deferred += 1;
                failures_in_a_row += 1;
                tracing::warn!(invoice = %p.reference, retry_at = %next, "mail left for later: {reply}");
                if failures_in_a_row >= MAIL_FAILURES_IN_A_ROW {
                    tracing::warn!(
                        "the mail server keeps failing; the rest of the queue waits for the next cycle"
                    );
                    break;
                }
            }
        }
    }
    report.mails_queued = u64::try_from(outbox::count_queued(conn)?).unwrap_or(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_checks_back_off_from_fifteen_minutes_to_a_day() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |n| check_time(t0, n);
        assert_eq!(at(0), "2026-11-21T00:15:00Z");
        assert_eq!(at(1), "2026-11-21T00:30:00Z");
        assert_eq!(at(2), "2026-11-21T01:00:00Z");
        assert_eq!(at(6), "2026-11-21T16:00:00Z");
        assert_eq!(at(7), "2026-11-22T00:00:00Z");
        assert_eq!(at(40), "2026-11-22T00:00:00Z");
    }

    #[test]
    fn mail_retries_back_off_from_two_minutes_to_two_hours() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(mail_retry_time(t0, 1), "2026-11-21T00:02:00Z");
        assert_eq!(mail_retry_time(t0, 2), "2026-11-21T00:04:00Z");
        assert_eq!(mail_retry_time(t0, 6), "2026-11-21T01:04:00Z");
        assert_eq!(mail_retry_time(t0, 7), "2026-11-21T02:00:00Z");
        assert_eq!(mail_retry_time(t0, 50), "2026-11-21T02:00:00Z");
    }

    #[test]
    fn expiry_is_after_the_due_date_and_never_in_the_past() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(expiry_date("2026-12-01", None, today), None);
        assert_eq!(
            expiry_date("2026-12-01", Some(14), today).as_deref(),
            Some("2026-12-15T23:59:59+00:00")
        );
        assert_eq!(
            expiry_date("2026-01-01", Some(14), today).as_deref(),
            Some("2026-12-05T23:59:59+00:00")
        );
    }
}
