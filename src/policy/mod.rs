//! The business rules, as pure functions over typed values: no store, no CM, no SMTP, no
//! clock read inside (the caller passes `now` or `today`). The cycle's steps gather the
//! facts, ask these rules, and do what they answer; the dry run asks the same rules of the
//! same facts. ARCHITECTURE.md, *Who owns what*, names the step that asks each one.
//!
//! Which file answers which question:
//!
//! - [`backoff`]: when is a link's (or iDEAL QR transaction's) status read again, and
//!   when is a mail the relay deferred tried again: a wait doubling per attempt, capped.
//! - [`calendar`]: what a local day is (its first and last instant, the day of a stored
//!   time), the two written forms of an instant (to CM with the day's offset, stored in
//!   UTC), and whether two written times are the same instant.
//! - [`expiry`]: until when a link or QR code is payable: the provisional expiry a create
//!   asks for, a link's real expiry, the expiry a reminder needs (14 full days after
//!   it), whether a link pays through a given day, and an iDEAL QR transaction's expiry.
//! - [`ladder`]: when is a reminder due: which steps are due on a day, what kind of mail
//!   each is, the date the next one may go (the gap, weekends), whether an invoice is on
//!   the ladder at all, and the settings those dates depend on.
//! - [`send`]: may a queued mail leave now ([`may_leave`]: cancel, skip, wait, read the
//!   link's status, extend it, or send), and is this moment inside the send window.

pub mod backoff;
pub mod calendar;
pub mod expiry;
pub mod ladder;
pub mod send;

pub use calendar::{end_of_local_day, start_of_local_day, stored, wire};
pub use expiry::{
    LINK_DAYS_AFTER_REMINDER, link_expiry, pays_through, reminder_deadline, reminder_expiry,
};
pub use send::{Leave, Queued, in_send_window, may_leave};

/// What the rules' unit tests share: dates written as text, a ladder, a moment.
#[cfg(test)]
mod testing {
    use chrono::{DateTime, Local, NaiveDate, TimeZone};

    use crate::config::Reminders;

    /// `YYYY-MM-DD`.
    pub(crate) fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// Reminders on with these steps, sent on weekends too; otherwise the defaults (at
    /// least 3 days between two mails, 09:00-17:00, no final notice, B2B).
    pub(crate) fn ladder(days: &[i32]) -> Reminders {
        Reminders {
            enabled: true,
            days: days.to_vec(),
            send_weekends: true,
            ..Reminders::default()
        }
    }

    /// At 10:00 local on `day`.
    pub(crate) fn at(day: &str) -> DateTime<Local> {
        Local
            .from_local_datetime(&d(day).and_hms_opt(10, 0, 0).unwrap())
            .earliest()
            .unwrap()
    }
}
