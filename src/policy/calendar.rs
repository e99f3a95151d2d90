//! Local days, and the two written forms of an instant.
//!
//! Dates are the merchant's local dates (`TZ`), and a link's expiry is the last second of
//! its day in local time, written with that day's own offset (`23:59:59+01:00` in winter,
//! `+02:00` in summer for Europe/Amsterdam), so no expiry is ever an earlier instant than
//! the end of the day it names. CM is sent that form ([`wire`]); the database keeps the
//! same instant in UTC ([`stored`]), so stored times compare as text.

use crate::domain::Timestamp;
use chrono::{DateTime, FixedOffset, Local, LocalResult, NaiveDate, TimeZone, Utc};

/// The last second of `day` in local time, with that day's offset.
pub fn end_of_local_day(day: NaiveDate) -> DateTime<FixedOffset> {
    let at = day.and_hms_opt(23, 59, 59).unwrap_or_default();
    match Local.from_local_datetime(&at) {
        LocalResult::Single(t) => t.fixed_offset(),
        // Clocks turned back over midnight: the later of the two is the end of the day.
        LocalResult::Ambiguous(_, later) => later.fixed_offset(),
        // No zone skips 23:59:59; should one, the start of the next day less a second.
        LocalResult::None => day
            .succ_opt()
            .and_then(|next| next.and_hms_opt(0, 0, 0))
            .and_then(|t| Local.from_local_datetime(&t).earliest())
            .map(|t| (t - chrono::Duration::seconds(1)).fixed_offset())
            .unwrap_or_else(|| Utc.from_utc_datetime(&at).fixed_offset()),
    }
}

/// The start (00:00) of `day` in local time, as a UTC instant.
pub fn start_of_local_day(day: NaiveDate) -> DateTime<Utc> {
    let at = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    Local
        .from_local_datetime(&at)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&at))
}

/// An expiry as CM is sent it: RFC 3339 with the local offset of its day.
pub fn wire(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// An expiry as the database keeps it: the same instant, as a [`Timestamp`].
pub fn stored(at: DateTime<FixedOffset>) -> Timestamp {
    Timestamp::at(at.with_timezone(&Utc))
}

/// The local date of a recorded time.
pub fn local_day(at: Timestamp) -> NaiveDate {
    at.instant().with_timezone(&Local).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::d;

    #[test]
    fn a_local_day_runs_from_its_first_to_its_last_second() {
        for day in ["2027-01-31", "2027-03-28", "2027-10-31", "2028-02-29"] {
            let (start, end) = (start_of_local_day(d(day)), end_of_local_day(d(day)));
            assert_eq!(start.with_timezone(&Local).date_naive(), d(day));
            assert_eq!(
                start.with_timezone(&Local).format("%H:%M:%S").to_string(),
                "00:00:00"
            );
            assert!(start < end);
            // The next day starts one second after this one ends.
            let next = start_of_local_day(d(day).succ_opt().unwrap());
            assert_eq!(next - end.with_timezone(&Utc), chrono::Duration::seconds(1));
        }
    }

    #[test]
    fn a_stored_time_is_read_back_as_its_local_day() {
        let end = end_of_local_day(d("2027-12-31"));
        assert_eq!(local_day(stored(end)), d("2027-12-31"));
        let sent = Timestamp::parse(&wire(end)).unwrap();
        assert_eq!(local_day(sent), d("2027-12-31"));
    }

    #[test]
    fn the_same_instant_may_be_written_with_an_offset_or_in_utc() {
        let end = end_of_local_day(d("2027-07-15"));
        assert_eq!(Timestamp::parse(&wire(end)).unwrap(), stored(end));
        let t = |s: &str| Timestamp::parse(s).unwrap();
        assert_eq!(t("2027-07-15T23:59:59+02:00"), t("2027-07-15T21:59:59Z"));
        assert_ne!(t("2027-07-15T23:59:59+01:00"), t("2027-07-15T21:59:59Z"));
        // What cannot be read as a time is no time at all.
        assert!(Timestamp::parse("soon").is_err());
    }
}
