//! When a payment link or iDEAL QR code stops being payable: the provisional expiry a
//! create asks for, a link's real expiry (days after the due date), how long a reminder
//! needs its link to last, and a QR transaction's expiry.

use chrono::{DateTime, Days, FixedOffset, NaiveDate, Utc};

use super::calendar::end_of_local_day;
use crate::domain::Timestamp;

/// A reminder's link stays payable at least this many full days after the day it is sent.
pub const LINK_DAYS_AFTER_REMINDER: u64 = 14;

/// `hours` from `now`, to the second.
pub fn provisional_expiry(now: DateTime<Utc>, hours: u32) -> Timestamp {
    Timestamp::at(now + chrono::Duration::hours(i64::from(hours)))
}

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

/// Whether a link with `expiry` stays payable through the 14 full days after `today`; no
/// expiry at all does.
pub fn long_enough(expiry: Option<Timestamp>, today: NaiveDate) -> bool {
    let deadline = reminder_deadline(today);
    expiry.is_none_or(|at| pays_through(Some(at.instant().fixed_offset()), deadline))
}

/// Days after the due date an iDEAL QR code stays payable when links have no expiry.
pub const QR_GRACE_DAYS: u64 = 14;

/// When an iDEAL QR transaction expires: with the link's expiry, else the due date plus
/// [`QR_GRACE_DAYS`] (end of day, UTC); never earlier than tomorrow.
pub fn qr_expires_at(
    link_expiry: Option<Timestamp>,
    due: NaiveDate,
    today: NaiveDate,
) -> Timestamp {
    if let Some(e) = link_expiry {
        return e;
    }
    let date = due
        .checked_add_days(Days::new(QR_GRACE_DAYS))
        .filter(|d| *d > today)
        .unwrap_or_else(|| today + Days::new(QR_GRACE_DAYS));
    Timestamp::at(date.and_hms_opt(23, 59, 59).unwrap_or_default().and_utc())
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
        assert_eq!(Timestamp::parse(&wire(at)).unwrap(), stored(at));
        assert!(stored(at).to_text().ends_with('Z'));
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
        assert!(long_enough(Some(end("2027-01-14")), today));
        assert!(!long_enough(Some(end("2027-01-13")), today));
        assert!(long_enough(None, today));
    }

    #[test]
    fn expiry_is_after_the_due_date_and_never_in_the_past() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let day = |at: Option<DateTime<FixedOffset>>| at.unwrap().date_naive().to_string();
        assert_eq!(day(link_expiry(d("2026-12-01"), 14, today)), "2026-12-15");
        assert_eq!(day(link_expiry(d("2026-01-01"), 14, today)), "2026-12-05");
    }

    #[test]
    fn provisional_expiry_is_hours_ahead_to_the_second() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T10:11:12.7Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            provisional_expiry(now, 48).to_text(),
            "2026-11-23T10:11:12Z"
        );
        // As CM is sent it: the same instant with its offset.
        assert_eq!(
            wire(provisional_expiry(now, 48).instant().fixed_offset()),
            "2026-11-23T10:11:12+00:00"
        );
    }

    #[test]
    fn a_links_expiry_crosses_month_ends_and_is_never_today() {
        let today = d("2027-01-10");
        let day = |at: Option<DateTime<FixedOffset>>| at.map(|t| t.date_naive());
        // 30 days after 31 January 2027 is 2 March (28 days in February).
        assert_eq!(
            day(link_expiry(d("2027-01-31"), 30, today)),
            Some(d("2027-03-02"))
        );
        assert_eq!(
            day(link_expiry(d("2028-01-31"), 30, today)),
            Some(d("2028-03-01"))
        );
        // Expiring today is expiring too soon: the days count from today instead.
        assert_eq!(
            day(link_expiry(d("2026-12-27"), 14, today)),
            Some(d("2027-01-24"))
        );
        // With no days after the due date, a link due today still lasts until tomorrow.
        assert_eq!(day(link_expiry(today, 0, today)), Some(d("2027-01-11")));
        assert_eq!(
            day(link_expiry(d("2027-01-20"), 0, today)),
            Some(d("2027-01-20"))
        );
    }

    #[test]
    fn a_qr_code_expires_with_its_link_else_fourteen_days_after_the_due_date() {
        let today = d("2027-01-10");
        let cases = [
            // With the link's expiry, the same instant in UTC.
            (
                Some("2027-02-15T23:59:59+01:00"),
                "2027-01-20",
                "2027-02-15T22:59:59Z",
            ),
            // No link expiry (or one that cannot be read): the due date plus 14 days.
            (None, "2027-01-20", "2027-02-03T23:59:59Z"),
            // Never today or before: then 14 days from today.
            (None, "2026-12-27", "2027-01-24T23:59:59Z"),
            (None, "2026-12-28", "2027-01-11T23:59:59Z"),
        ];
        for (link, due, expected) in cases {
            let link = link.map(|t| Timestamp::parse(t).unwrap());
            assert_eq!(
                qr_expires_at(link, d(due), today).to_text(),
                expected,
                "{link:?} {due}"
            );
        }
    }
}
