//! The reminder step (README, *Reminders*): the invoices whose next step is due, read
//! through their date's index; for each, the link's payment status read from CM just
//! before anything is queued (a paid link records the payment instead), its expiry
//! extended so the link outlives the reminder by 14 days, then the decision and its mail
//! written in one transaction under the `(invoice, step)` key.
//!
//! The dates follow the ladder ([`crate::policy::ladder`]); this step stores each
//! invoice's next one when a link mail or reminder goes out, so a cycle reads only the
//! invoices that have one due, and when the ladder settings change it computes every open
//! invoice's date again, once.

use std::cell::RefCell;

use crate::store::Store;
use chrono::{DateTime, FixedOffset, Local, NaiveDate};

use super::links_step::{ExpiryNotSet, set_expiry};
use super::{Handoff, Report, fan_out, note_failure};
use crate::cm::{CmClient, CmError, LinkStatus};
use crate::config::Config;
use crate::policy;
use crate::policy::expiry::long_enough;
use crate::policy::ladder::{Planned, decide, ladder_settings, next_for, next_on};
use crate::store::links;
use crate::store::reminders as store;

/// At most this many reminders are decided per cycle; the rest wait for the next one.
pub const REMINDERS_PER_CYCLE: usize = 5000;

/// Computes and stores one invoice's next date (after a mail to it went out). Runs inside
/// the caller's transaction.
pub fn reschedule(db: &Store, cfg: &Config, invoice_id: i64) -> anyhow::Result<()> {
    if !cfg.reminders.enabled {
        return Ok(());
    }
    let next = store::subject(db, invoice_id)?.and_then(|s| next_for(&cfg.reminders, &s));
    store::schedule(db, invoice_id, next)?;
    Ok(())
}

/// Brings the stored dates in line with the ladder settings: computed again for every
/// open invoice when they changed (or reminders were just switched on), cleared when
/// reminders were switched off. A no-op (one read) when nothing changed.
pub fn sync_ladder(db: &Store, cfg: &Config) -> anyhow::Result<()> {
    let settings = ladder_settings(&cfg.reminders);
    let stored = store::ladder_settings(db)?;
    if stored.as_deref() == Some(settings.as_str()) {
        return Ok(());
    }
    if stored.is_none() && !cfg.reminders.enabled {
        return Ok(());
    }
    // Nested: a dry run calls this inside its own rehearsal (rolled back).
    db.nested(|tx| -> anyhow::Result<()> {
        if cfg.reminders.enabled {
            let mut after = 0;
            let mut count = 0usize;
            loop {
                let batch = store::announced_open(tx, after, 1000)?;
                let Some(&last) = batch.last() else { break };
                for id in batch {
                    reschedule(tx, cfg, id)?;
                    count += 1;
                }
                after = last;
            }
            tracing::info!(
                invoices = count,
                "reminder ladder {settings}: the next reminder date of every open invoice was computed"
            );
        } else {
            store::clear_all(tx)?;
            tracing::info!("reminders are off: no reminder date is kept");
        }
        Ok(store::set_ladder_settings(tx, &settings)?)
    })
}

/// The reminders whose date has come, decided as far as the database can (no CM call):
/// what a dry run lists and what the cycle then checks with CM. Invoices whose date was
/// not really due get their right date stored (in the caller's transaction).
pub fn plan(db: &Store, cfg: &Config, today: NaiveDate) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for id in store::due(db, today, REMINDERS_PER_CYCLE)? {
        let Some(subject) = store::subject(db, id)? else {
            continue;
        };
        match decide(&cfg.reminders, subject, today) {
            Ok(p) => planned.push(p),
            Err(next) => store::schedule(db, id, next)?,
        }
    }
    Ok(planned)
}

/// What the reminders are at `now`: `Ok(planned)` inside the send window, else
/// `Err(waiting)`, how many are due and wait for it. Runs inside the caller's transaction
/// (the cycle's, or a dry run's that is rolled back).
pub fn due_now(
    db: &Store,
    cfg: &Config,
    now: DateTime<Local>,
) -> anyhow::Result<Result<Vec<Planned>, u64>> {
    let today = now.date_naive();
    if policy::in_send_window(&cfg.reminders, now) {
        Ok(Ok(plan(db, cfg, today)?))
    } else {
        let waiting = store::count_due(db, today)?;
        Ok(Err(u64::try_from(waiting).unwrap_or(0)))
    }
}

/// What CM said about one reminder's link.
enum Checked {
    /// Open, and (if it needed one) its new expiry is set: remind.
    Ready {
        new_expiry: Option<DateTime<FixedOffset>>,
    },
    /// Paid meanwhile: record the payment, no reminder.
    Paid,
    /// Nothing decided; the reminder waits for the next cycle. Says why.
    Wait(String, Option<CmError>),
}

/// Reads the link's status and, when it is open and would expire too soon, extends it.
async fn check_link(cm: &CmClient, cfg: &Config, p: &Planned, today: NaiveDate) -> Checked {
    let Some(link) = &p.subject.link else {
        return Checked::Wait("the invoice has no live link".into(), None);
    };
    match cm.link_status(&link.link_ref).await {
        Ok(LinkStatus::Paid) => return Checked::Paid,
        Ok(LinkStatus::Open) => {}
        Ok(LinkStatus::Unknown) => {
            return Checked::Wait(
                "CM answered a payment status this program does not know".into(),
                None,
            );
        }
        Err(e) => {
            let why = format!("the link's payment status could not be read: {e}");
            return Checked::Wait(why, Some(e));
        }
    }
    if long_enough(link.expiry_date, today) {
        return Checked::Ready { new_expiry: None };
    }
    let expiry = policy::reminder_expiry(
        today,
        p.subject.data.due_date,
        cfg.cm.link_expiry_days_after_due,
    );
    let wire = policy::wire(expiry);
    match set_expiry(cm, &link.link_ref, expiry).await {
        Ok(()) => Checked::Ready {
            new_expiry: Some(expiry),
        },
        Err(ExpiryNotSet::Held(held)) => Checked::Wait(
            format!("CM holds the expiry {held} instead of {wire}"),
            None,
        ),
        Err(ExpiryNotSet::Failed(e)) => Checked::Wait(
            format!("the link's expiry could not be extended to {wire}: {e}"),
            Some(e),
        ),
    }
}

/// Decides and queues the reminders that are due, checking each link with CM first; runs
/// beside the link stages, and wakes the mail side as each reminder is queued.
pub(super) async fn reminder_step(
    db: &Store,
    cfg: &Config,
    cm: &CmClient,
    report: &RefCell<Report>,
    handoff: &Handoff,
) -> anyhow::Result<()> {
    if !cfg.reminders.enabled {
        return Ok(());
    }
    let now = crate::clock::local_now();
    let today = now.date_naive();
    let due = db.write(|tx| due_now(tx, cfg, now))?;
    let planned = match due {
        Ok(planned) => planned,
        Err(waiting) => {
            if waiting > 0 {
                tracing::info!(
                    waiting,
                    window = %cfg.reminders.send_window,
                    weekends = cfg.reminders.send_weekends,
                    "reminders that are due wait for the send window"
                );
                report.borrow_mut().reminders_waiting = waiting;
            }
            return Ok(());
        }
    };
    let request = |p: Planned| async move {
        let checked = check_link(cm, cfg, &p, today).await;
        (p, checked)
    };
    fan_out(planned, cfg.cm.max_in_flight, request, |p, checked| {
        let mut report = report.borrow_mut();
        let s = &p.subject;
        let Some(link) = &s.link else { return Ok(()) };
        let now = crate::clock::timestamp();
        match checked {
            Checked::Paid => {
                if links::record_paid(db, link.id, s.invoice_id, now)? {
                    report.double_payments.push(s.reference.clone());
                }
                report.payments_seen += 1;
                tracing::info!(invoice = %s.reference, link = %link.link_ref,
                    "paid through its payment link (seen before its reminder; none is sent)");
            }
            Checked::Wait(why, error) => {
                report.reminders_deferred += 1;
                match error {
                    Some(e) => note_failure(&mut report, &e),
                    None => links::record_link_error(db, link.id, &why)?,
                }
                tracing::warn!(invoice = %s.reference, step = p.step,
                    "reminder left for the next cycle: {why}");
            }
            Checked::Ready { new_expiry } => {
                // CM said it is unpaid just now: the mail needs no second read this cycle.
                links::record_seen_open(db, link.id, now)?;
                report.links_seen_open.insert(link.id);
                if let Some(expiry) = new_expiry {
                    links::record_extended(db, link.id, policy::stored(expiry))?;
                    tracing::info!(invoice = %s.reference, link = %link.link_ref,
                        expiry = %policy::wire(expiry), "link expiry extended for its reminder");
                }
                crate::failpoint("reminder-before-record");
                let next = next_on(&cfg.reminders, s.data.due_date, Some(p.step), Some(today));
                let decision = store::Decision {
                    invoice_id: s.invoice_id,
                    revision: s.revision,
                    link_id: link.id,
                    step: p.step,
                    kind: p.kind,
                    skipped: &p.skipped,
                    next_on: next,
                    now,
                };
                match store::record(db, &decision)? {
                    Some(_) => {
                        report.reminders_skipped += p.skipped.len() as u64;
                        tracing::info!(invoice = %s.reference, step = p.step,
                            kind = p.kind.as_str(), skipped = ?p.skipped, "reminder queued");
                        handoff.mail_may_be_due();
                    }
                    None => tracing::info!(invoice = %s.reference, step = p.step,
                        "reminder already decided by another run; not queued again"),
                }
            }
        }
        Ok(())
    })
    .await
}
