//! The reminder ladder (README, *Reminders*): which steps are due on a day, what kind of
//! mail each is, the date the next one may go, and the settings those dates depend on.
//!
//! The dates: an invoice's next step may go on `due date + step`, but never sooner than
//! `min_gap_days` after the last mail to it, and (without `send_weekends`) on a weekday.
//! The reminder step stores that date when a link mail or reminder goes out, and computes
//! every open invoice's again, once, when [`ladder_settings`] changes.

use chrono::{Datelike, Days, NaiveDate, Weekday};

use super::calendar::local_day;
use crate::config::Reminders;
use crate::domain::{CustomerType, ReminderKind};
use crate::store::invoices::State;
use crate::store::reminders::Subject;

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

/// The day of `step`: that many days after the due date (before it when negative).
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

/// Whether the invoice is on the ladder: open, with the active link of its current
/// revision announced by a mail that went out.
fn on_the_ladder(s: &Subject) -> bool {
    s.state == State::Open
        && s.link
            .as_ref()
            .is_some_and(|l| l.announced && !l.provisional)
}

/// The next date for one invoice as it stands, or none when it is off the ladder.
pub fn next_for(r: &Reminders, s: &Subject) -> Option<NaiveDate> {
    if !on_the_ladder(s) {
        return None;
    }
    let last_mail = s.last_mail_at.as_deref().and_then(local_day);
    next_on(r, s.data.due_date, s.last_step, last_mail)
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
pub fn decide(r: &Reminders, s: Subject, today: NaiveDate) -> Result<Planned, Option<NaiveDate>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{d, ladder};

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
}
