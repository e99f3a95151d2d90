//! When a link stops being payable: its real expiry (days after the due date), and how
//! long a reminder needs it to last.

use chrono::{DateTime, Days, FixedOffset, NaiveDate};

use super::calendar::end_of_local_day;

/// A reminder's link stays payable at least this many full days after the day it is sent.
pub const LINK_DAYS_AFTER_REMINDER: u64 = 14;

/// A link's real expiry: the end of the day `days` after the due date; for an invoice
/// already that far overdue, the same number of days from today, so that a link is never
/// born expired.
pub fn link_expiry(due: NaiveDate, days: u32, today: NaiveDate) -> Option<DateTime<FixedOffset>> {
    let mut expiry = due.checked_add_days(Days::new(days.into()))?;
    if expiry <= today {
        expiry = today.checked_add_days(Days::new(days.max(1).into()))?;
    }
    Some(end_of_local_day(expiry))
}

/// The expiry a reminder sent on `today` gives its link when it must extend it: the end of
/// the 15th day after it (the 14 full days it promises, and a day for a mail read the
/// next morning), or the usual expiry if that is later.
pub fn reminder_expiry(
    today: NaiveDate,
    due: NaiveDate,
    days_after_due: u32,
) -> DateTime<FixedOffset> {
    let needed = today
        .checked_add_days(Days::new(LINK_DAYS_AFTER_REMINDER + 1))
        .unwrap_or(today);
    let usual = due
        .checked_add_days(Days::new(days_after_due.into()))
        .unwrap_or(due);
    end_of_local_day(needed.max(usual))
}

/// Whether a link with `expiry` is payable through the end of `day` (local time); a link
/// without an expiry always is.
pub fn pays_through(expiry: Option<DateTime<FixedOffset>>, day: NaiveDate) -> bool {
    expiry.is_none_or(|at| at >= end_of_local_day(day))
}

/// The last day a reminder sent on `today` promises its link works: 14 full days after
/// it, which is also the deadline day a final notice sent that day names.
pub fn reminder_deadline(today: NaiveDate) -> NaiveDate {
    today
        .checked_add_days(Days::new(LINK_DAYS_AFTER_REMINDER))
        .unwrap_or(today)
}

/// Whether a link with `expiry` (as stored, RFC 3339) stays payable through the 14 full
/// days after `today`; no expiry at all does, an unreadable one does not.
pub fn long_enough(expiry: Option<&str>, today: NaiveDate) -> bool {
    let deadline = reminder_deadline(today);
    match expiry {
        None => true,
        Some(at) => {
            DateTime::parse_from_rfc3339(at).is_ok_and(|at| pays_through(Some(at), deadline))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::calendar::{stored, wire};
    use crate::policy::testing::d;

    #[test]
    fn expiries_are_the_end_of_the_local_day_in_both_forms() {
        let at = end_of_local_day(d("2027-04-16"));
        assert_eq!(at.date_naive(), d("2027-04-16"));
        assert_eq!(at.format("%H:%M:%S").to_string(), "23:59:59");
        assert!(wire(at).starts_with("2027-04-16T23:59:59"));
        assert_eq!(
            DateTime::parse_from_rfc3339(&stored(at)).unwrap(),
            DateTime::parse_from_rfc3339(&wire(at)).unwrap()
        );
        assert!(stored(at).ends_with('Z'));
        assert!(pays_through(Some(at), d("2027-04-16")));
        assert!(!pays_through(Some(at), d("2027-04-17")));
        assert_eq!(reminder_deadline(d("2027-04-02")), d("2027-04-16"));
    }

    #[test]
    fn link_expiry_is_days_after_due_or_from_today_when_overdue() {
        let today = d("2026-12-07");
        assert_eq!(
            link_expiry(d("2026-12-01"), 14, today).map(|t| t.date_naive()),
            Some(d("2026-12-15"))
        );
        assert_eq!(
            link_expiry(d("2026-01-01"), 14, today).map(|t| t.date_naive()),
            Some(d("2026-12-21"))
        );
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
        let end = |day: &str| stored(end_of_local_day(d(day)));
        assert!(long_enough(Some(&end("2027-01-14")), today));
        assert!(!long_enough(Some(&end("2027-01-13")), today));
        assert!(!long_enough(Some("garbage"), today));
        assert!(long_enough(None, today));
    }
}
