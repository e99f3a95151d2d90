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
    let last_mail = s.last_mail_at.map(local_day);
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
    use crate::domain::{Currency, CustomerName, EmailAddress, Money};
    use crate::policy::testing::{d, ladder};
    use crate::store::invoices::RevisionData;
    use crate::store::reminders::LiveLink;

    /// An open EUR invoice due on `due` whose link was announced, nothing decided yet,
    /// its link mail accepted at noon UTC on `mailed`.
    fn subject(due: &str, mailed: &str) -> Subject {
        let eur = |minor| Money {
            minor,
            currency: Currency::EUR,
        };
        Subject {
            invoice_id: 1,
            reference: crate::domain::InvoiceRef::parse("INV-1").unwrap(),
            state: State::Open,
            revision: 1,
            data: RevisionData {
                customer_email: EmailAddress::parse("jan@example.nl").unwrap(),
                customer_name: CustomerName::parse("Jan").unwrap(),
                amount: eur(12_100),
                due: eur(12_100),
                due_date: d(due),
                language: None,
                country: None,
                customer_type: None,
            },
            link: Some(LiveLink {
                id: 1,
                link_ref: crate::domain::LinkRef::parse("pml-1").unwrap(),
                expiry_date: None,
                provisional: false,
                announced: true,
            }),
            last_step: None,
            last_mail_at: Some(
                crate::domain::Timestamp::parse(&format!("{mailed}T12:00:00Z")).unwrap(),
            ),
        }
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
    fn a_steps_date_counts_calendar_days_across_month_and_year_ends() {
        assert_eq!(step_date(d("2027-03-10"), 0), Some(d("2027-03-10")));
        assert_eq!(step_date(d("2027-01-31"), 1), Some(d("2027-02-01")));
        assert_eq!(step_date(d("2027-03-02"), -3), Some(d("2027-02-27")));
        // 2028 is a leap year: the day before 1 March is 29 February.
        assert_eq!(step_date(d("2028-03-01"), -1), Some(d("2028-02-29")));
        assert_eq!(step_date(d("2026-12-25"), 7), Some(d("2027-01-01")));
        assert_eq!(step_date(d("2027-01-02"), -3), Some(d("2026-12-30")));
        assert_eq!(step_date(NaiveDate::MAX, 1), None);
    }

    #[test]
    fn a_step_is_due_from_its_own_day_on_not_the_day_before() {
        let r = ladder(&[-3, 7, 21]);
        let due = d("2027-01-31");
        assert_eq!(due_steps(&r, due, None, d("2027-01-27")), Vec::<i64>::new());
        assert_eq!(due_steps(&r, due, None, d("2027-01-28")), vec![-3]);
        assert_eq!(due_steps(&r, due, None, d("2027-01-31")), vec![-3]);
        // Seven days after 31 January is 7 February.
        assert_eq!(
            due_steps(&r, due, Some(-3), d("2027-02-06")),
            Vec::<i64>::new()
        );
        assert_eq!(due_steps(&r, due, Some(-3), d("2027-02-07")), vec![7]);
        assert_eq!(due_steps(&r, due, Some(-3), d("2027-02-21")), vec![7, 21]);
    }

    #[test]
    fn the_gap_and_the_weekend_carry_the_next_date_into_the_next_month() {
        let mut r = ladder(&[-3, 7, 21]);
        // Step 7 of an invoice due 23 January 2027 is on Saturday 30 January.
        assert_eq!(
            next_on(&r, d("2027-01-23"), Some(-3), None),
            Some(d("2027-01-30"))
        );
        r.send_weekends = false;
        assert_eq!(
            next_on(&r, d("2027-01-23"), Some(-3), None),
            Some(d("2027-02-01"))
        );
        // A mail on 27 February 2027 allows the next on 2 March (no 29th that year) ...
        r.send_weekends = true;
        assert_eq!(
            next_on(&r, d("2027-02-20"), Some(-3), Some(d("2027-02-27"))),
            Some(d("2027-03-02"))
        );
        // ... and on 1 March in 2028, a leap year.
        assert_eq!(
            next_on(&r, d("2028-02-20"), Some(-3), Some(d("2028-02-27"))),
            Some(d("2028-03-01"))
        );
    }

    #[test]
    fn the_ladder_settings_name_what_the_dates_depend_on_and_nothing_else() {
        let mut r = ladder(&[-3, 7, 21]);
        assert_eq!(
            ladder_settings(&r),
            "days=-3,7,21;min_gap_days=3;send_weekends=true"
        );
        let same = ladder_settings(&r);
        r.final_notice = true;
        r.send_window = crate::config::SendWindow::parse("08:00-20:00").unwrap();
        r.default_customer_type = CustomerType::B2c;
        assert_eq!(ladder_settings(&r), same);
        r.min_gap_days = 5;
        assert_ne!(ladder_settings(&r), same);
        r.enabled = false;
        assert_eq!(ladder_settings(&r), "off");
    }

    #[test]
    fn only_an_open_invoice_with_an_announced_extended_link_is_on_the_ladder() {
        let r = ladder(&[-3, 7, 21]);
        let s = subject("2027-03-10", "2027-03-01");
        assert_eq!(next_for(&r, &s), Some(d("2027-03-07")));
        let mut paid = s.clone();
        paid.state = State::Paid;
        assert_eq!(next_for(&r, &paid), None);
        let mut unannounced = s.clone();
        unannounced.link.as_mut().unwrap().announced = false;
        assert_eq!(next_for(&r, &unannounced), None);
        let mut provisional = s.clone();
        provisional.link.as_mut().unwrap().provisional = true;
        assert_eq!(next_for(&r, &provisional), None);
        let mut no_link = s;
        no_link.link = None;
        assert_eq!(next_for(&r, &no_link), None);
    }

    #[test]
    fn a_decision_mails_the_latest_step_due_and_skips_the_earlier_ones() {
        let r = ladder(&[-3, 7, 21]);
        let s = subject("2027-03-10", "2027-03-01");
        // Not yet: the right date is stored instead.
        assert!(matches!(
            decide(&r, s.clone(), d("2027-03-06")),
            Err(Some(on)) if on == d("2027-03-07")
        ));
        let plan = decide(&r, s.clone(), d("2027-03-07")).unwrap();
        assert_eq!((plan.step, plan.kind), (-3, ReminderKind::BeforeDue));
        assert!(plan.skipped.is_empty());
        // A cycle that first runs on 1 April finds all three due: it mails 21.
        let plan = decide(&r, s.clone(), d("2027-04-01")).unwrap();
        assert_eq!((plan.step, plan.kind), (21, ReminderKind::Overdue));
        assert_eq!(plan.skipped, vec![-3, 7]);
        // Off the ladder: no date at all.
        let mut paid = s;
        paid.state = State::Paid;
        assert!(matches!(decide(&r, paid, d("2027-04-01")), Err(None)));
    }
}
