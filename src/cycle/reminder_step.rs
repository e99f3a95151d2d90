//! The reminder step (README, *Reminders*): the invoices whose next step is due, read
//! through their date's index; for each, the link's payment status read from CM just
//! before anything is queued (a paid link records the payment instead), its expiry
//! extended so the link outlives the reminder by 14 days, then the decision and its mail
//! written in one transaction under the `(invoice, step)` key.
//!
//! The dates: an invoice's next step may go on `due date + step`, but never sooner than
//! `min_gap_days` after the last mail to it, and (without `send_weekends`) on a weekday.
//! The date is stored when a link mail or reminder goes out, so a cycle reads only the
//! invoices that have one due; when the ladder settings change, every open invoice's
//! date is computed again, once.

use std::cell::RefCell;

use crate::store::Store;
use chrono::{DateTime, Datelike, Days, FixedOffset, Local, NaiveDate, Weekday};

use super::links_step::{ExpiryNotSet, set_expiry};
use super::{Handoff, Report, fan_out, note_failure};
use crate::cm::{CmClient, CmError, LinkStatus};
use crate::config::{Config, Reminders};
use crate::domain::{CustomerType, ReminderKind};
use crate::policy;
use crate::store::invoices::State;
use crate::store::links;
use crate::store::reminders::{self as store, Subject};

/// At most this many reminders are decided per cycle; the rest wait for the next one.
pub const REMINDERS_PER_CYCLE: usize = 5000;

pub use crate::policy::{LINK_DAYS_AFTER_REMINDER, in_send_window as may_send_at, reminder_expiry};

/// The settings the stored dates depend on, as one text: when it changes, the dates are
/// computed again.
pub fn ladder_settings(r: &Reminders) -> String {
    if !r.enabled {
        return "off".into();
    }
    let days: Vec<String> = r.days.iter().map(i32::to_string).collect();
    format!(
        "days={};min_gap_days={};send_weekends={}",
        days.join(","),
        r.min_gap_days,
        r.send_weekends
    )
}

/// The date the next step after `last_step` may go, if there is one: its own date, no
/// sooner than `min_gap_days` after the last mail, moved to Monday from a weekend unless
/// `send_weekends`.
pub fn next_on(
    r: &Reminders,
    due: NaiveDate,
    last_step: Option<i64>,
    last_mail_day: Option<NaiveDate>,
) -> Option<NaiveDate> {
    let step = r
        .days
        .iter()
        .map(|&d| i64::from(d))
        .find(|&d| last_step.is_none_or(|l| d > l))?;
    let mut on = step_date(due, step)?;
    if let Some(last) = last_mail_day {
        on = on.max(last.checked_add_days(Days::new(r.min_gap_days.into()))?);
    }
    if !r.send_weekends {
        while matches!(on.weekday(), Weekday::Sat | Weekday::Sun) {
            on = on.succ_opt()?;
        }
    }
    Some(on)
}

/// The steps after `last_step` whose date has come by `today`, in order.
pub fn due_steps(
    r: &Reminders,
    due: NaiveDate,
    last_step: Option<i64>,
    today: NaiveDate,
) -> Vec<i64> {
    r.days
        .iter()
        .map(|&d| i64::from(d))
        .filter(|&d| last_step.is_none_or(|l| d > l))
        .filter(|&d| step_date(due, d).is_some_and(|on| on <= today))
        .collect()
}

fn step_date(due: NaiveDate, step: i64) -> Option<NaiveDate> {
    let days = Days::new(step.unsigned_abs());
    if step >= 0 {
        due.checked_add_days(days)
    } else {
        due.checked_sub_days(days)
    }
}

/// Which mail a step is: the last step of a consumer's EUR invoice is the final notice
/// when `final_notice` is set (the statutory scale is in euros); else a step after the
/// due date is an overdue reminder, one on or before it a reminder that payment is due.
pub fn kind_of(
    r: &Reminders,
    step: i64,
    customer: Option<CustomerType>,
    eur: bool,
) -> ReminderKind {
    let last = r.days.last().map(|&d| i64::from(d));
    let consumer = customer.unwrap_or(r.default_customer_type) == CustomerType::B2c;
    if r.final_notice && last == Some(step) && step > 0 && consumer && eur {
        ReminderKind::FinalNotice
    } else if step > 0 {
        ReminderKind::Overdue
    } else {
        ReminderKind::BeforeDue
    }
}

/// The local date of a stored RFC 3339 time.
fn local_day(at: &str) -> Option<NaiveDate> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Local).date_naive())
}

/// Whether the invoice is on the ladder: open, with the active link of its current
/// revision announced by a mail that went out.
fn on_the_ladder(s: &Subject) -> bool {
    s.state == State::Open
        && s.link
            .as_ref()
            .is_some_and(|l| l.announced && !l.provisional)
}

/// The next date for one invoice as it stands, or none when it is off the ladder.
fn next_for(r: &Reminders, s: &Subject) -> Option<NaiveDate> {
    if !on_the_ladder(s) {
        return None;
    }
    let last_mail = s.last_mail_at.as_deref().and_then(local_day);
    next_on(r, s.data.due_date, s.last_step, last_mail)
}

/// Computes and stores one invoice's next date (after a mail to it went out). Runs inside
/// the caller's transaction.
pub fn reschedule(db: &Store, cfg: &Config, invoice_id: i64) -> anyhow::Result<()> {
    if !cfg.reminders.enabled {
        return Ok(());
    }
    let next = store::subject(db, invoice_id)?
        .and_then(|s| next_for(&cfg.reminders, &s))
        .map(|d| d.to_string());
    store::schedule(db, invoice_id, next.as_deref())?;
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

/// One reminder about to be sent.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What the decision needs.
    pub subject: Subject,
    /// The step mailed.
    pub step: i64,
    /// Its kind.
    pub kind: ReminderKind,
    /// Earlier steps due with it, recorded as skipped.
    pub skipped: Vec<i64>,
}

/// What to do about one invoice whose date has come: `Ok(plan)` to remind, `Err(next)`
/// to store another date instead (none: off the ladder).
fn decide(r: &Reminders, s: Subject, today: NaiveDate) -> Result<Planned, Option<NaiveDate>> {
    let next = next_for(r, &s);
    match next {
        Some(on) if on <= today => {}
        other => return Err(other),
    }
    let mut due = due_steps(r, s.data.due_date, s.last_step, today);
    let Some(step) = due.pop() else {
        return Err(next);
    };
    let kind = kind_of(
        r,
        step,
        s.data.customer_type,
        s.data.currency().code() == "EUR",
    );
    Ok(Planned {
        subject: s,
        step,
        kind,
        skipped: due,
    })
}

/// The reminders whose date has come, decided as far as the database can (no CM call):
/// what a dry run lists and what the cycle then checks with CM. Invoices whose date was
/// not really due get their right date stored (in the caller's transaction).
pub fn plan(db: &Store, cfg: &Config, today: NaiveDate) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for id in store::due(db, &today.to_string(), REMINDERS_PER_CYCLE)? {
        let Some(subject) = store::subject(db, id)? else {
            continue;
        };
        match decide(&cfg.reminders, subject, today) {
            Ok(p) => planned.push(p),
            Err(next) => store::schedule(db, id, next.map(|d| d.to_string()).as_deref())?,
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
        let waiting = store::count_due(db, &today.to_string())?;
        Ok(Err(u64::try_from(waiting).unwrap_or(0)))
    }
}

/// Whether a link with `expiry` (as stored, RFC 3339) stays payable through the 14 full
/// days after `today`; no expiry at all does, an unreadable one does not.
fn long_enough(expiry: Option<&str>, today: NaiveDate) -> bool {
    let deadline = policy::reminder_deadline(today);
    match expiry {
        None => true,
        Some(at) => DateTime::parse_from_rfc3339(at)
            .is_ok_and(|at| policy::pays_through(Some(at), deadline)),
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
    if long_enough(link.expiry_date.as_deref(), today) {
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
        let now_s = crate::clock::now_text();
        match checked {
            Checked::Paid => {
                if links::record_paid(db, link.id, s.invoice_id, &now_s)? {
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
                links::record_seen_open(db, link.id, &now_s)?;
                report.links_seen_open.insert(link.id);
                if let Some(expiry) = new_expiry {
                    links::record_extended(db, link.id, &policy::stored(expiry))?;
                    tracing::info!(invoice = %s.reference, link = %link.link_ref,
                        expiry = %policy::wire(expiry), "link expiry extended for its reminder");
                }
                crate::failpoint("reminder-before-record");
                let next = next_on(&cfg.reminders, s.data.due_date, Some(p.step), Some(today))
                    .map(|d| d.to_string());
                let decision = store::Decision {
                    invoice_id: s.invoice_id,
                    revision: s.revision,
                    link_id: link.id,
                    step: p.step,
                    kind: p.kind,
                    skipped: &p.skipped,
                    next_on: next.as_deref(),
                    now: &now_s,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(days: &[i32]) -> Reminders {
        Reminders {
            enabled: true,
            days: days.to_vec(),
            min_gap_days: 3,
            send_window: crate::config::SendWindow::parse("09:00-17:00").unwrap(),
            send_weekends: true,
            final_notice: false,
            default_customer_type: CustomerType::B2b,
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_next_step_waits_for_its_date_and_the_gap() {
        let r = ladder(&[-3, 7, 21]);
        let due = d("2026-12-10");
        // Link mail on the 1st: the -3 step is on the 7th.
        assert_eq!(
            next_on(&r, due, None, Some(d("2026-12-01"))),
            Some(d("2026-12-07"))
        );
        // Link mail on the 6th: a mail on the 6th allows the next on the 9th.
        assert_eq!(
            next_on(&r, due, None, Some(d("2026-12-06"))),
            Some(d("2026-12-09"))
        );
        assert_eq!(
            next_on(&r, due, Some(-3), Some(d("2026-12-07"))),
            Some(d("2026-12-17"))
        );
        assert_eq!(next_on(&r, due, Some(21), Some(d("2026-12-31"))), None);
    }

    #[test]
    fn weekends_move_to_monday_unless_allowed() {
        let mut r = ladder(&[0]);
        r.send_weekends = false;
        // 2026-12-12 is a Saturday.
        assert_eq!(
            next_on(&r, d("2026-12-12"), None, None),
            Some(d("2026-12-14"))
        );
        r.send_weekends = true;
        assert_eq!(
            next_on(&r, d("2026-12-12"), None, None),
            Some(d("2026-12-12"))
        );
    }

    #[test]
    fn only_steps_after_the_last_one_decided_are_due() {
        let r = ladder(&[-3, 7, 21]);
        let due = d("2026-12-10");
        assert_eq!(due_steps(&r, due, None, d("2027-01-05")), vec![-3, 7, 21]);
        assert_eq!(due_steps(&r, due, Some(-3), d("2026-12-20")), vec![7]);
        assert_eq!(
            due_steps(&r, due, Some(7), d("2026-12-20")),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn the_final_notice_is_a_consumers_last_step_after_the_due_date_in_euros() {
        let mut r = ladder(&[-3, 7, 21]);
        r.final_notice = true;
        let b2c = Some(CustomerType::B2c);
        assert_eq!(kind_of(&r, 21, b2c, true), ReminderKind::FinalNotice);
        assert_eq!(kind_of(&r, 21, b2c, false), ReminderKind::Overdue);
        assert_eq!(
            kind_of(&r, 21, Some(CustomerType::B2b), true),
            ReminderKind::Overdue
        );
        assert_eq!(kind_of(&r, 21, None, true), ReminderKind::Overdue);
        r.default_customer_type = CustomerType::B2c;
        assert_eq!(kind_of(&r, 21, None, true), ReminderKind::FinalNotice);
        assert_eq!(kind_of(&r, 7, b2c, true), ReminderKind::Overdue);
        assert_eq!(kind_of(&r, -3, b2c, true), ReminderKind::BeforeDue);
        assert_eq!(kind_of(&r, 0, b2c, true), ReminderKind::BeforeDue);
        r.final_notice = false;
        assert_eq!(kind_of(&r, 21, b2c, true), ReminderKind::Overdue);
    }

    #[test]
    fn a_reminders_link_outlives_it_by_fourteen_full_days() {
        let today = d("2026-12-31");
        assert_eq!(
            reminder_expiry(today, d("2026-12-10"), 30).date_naive(),
            d("2027-01-15")
        );
        // The usual expiry is later: kept.
        assert_eq!(
            reminder_expiry(d("2026-12-07"), d("2026-12-10"), 30).date_naive(),
            d("2027-01-09")
        );
        let end = |day: &str| policy::stored(policy::end_of_local_day(d(day)));
        assert!(long_enough(Some(&end("2027-01-14")), today));
        assert!(!long_enough(Some(&end("2027-01-13")), today));
        assert!(!long_enough(Some("garbage"), today));
        assert!(long_enough(None, today));
    }
}
