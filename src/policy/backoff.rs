//! How long a follow-up waits: the next status check of a link or iDEAL QR transaction,
//! and the next attempt at a mail the relay deferred. Both double per attempt up to a cap
//! ([`backoff_time`]). Retries inside one CM request are the CM client's
//! (`cm/retry.rs`); the mail rate is the mail sender's (`mail/transport.rs`).

use crate::domain::Timestamp;

/// The first status check of a new link comes after this; each later one after twice
/// the previous wait, up to [`STATUS_CHECK_MAX`]: often while new, rarely when old.
pub const STATUS_CHECK_FIRST: chrono::Duration = chrono::Duration::minutes(15);
/// The longest wait between two status checks of an open link.
pub const STATUS_CHECK_MAX: chrono::Duration = chrono::Duration::hours(24);

/// A mail that failed for now waits this long, doubling per attempt up to
/// [`MAIL_RETRY_MAX`].
pub const MAIL_RETRY_FIRST: chrono::Duration = chrono::Duration::minutes(2);
/// The longest wait between two attempts at one mail.
pub const MAIL_RETRY_MAX: chrono::Duration = chrono::Duration::hours(2);

/// The capped doubling back-off of the follow-ups (status checks, mail retries): `first`
/// after step 0, twice that after step 1, … at most `max`.
pub fn backoff_time(
    now: Timestamp,
    first: chrono::Duration,
    max: chrono::Duration,
    step: i64,
) -> Timestamp {
    let factor = 1i32 << step.clamp(0, 16);
    let wait = (first * factor).min(max);
    Timestamp::at(now.instant() + wait)
}

/// When a link that has had `checks` status checks is next checked.
pub fn check_time(now: Timestamp, checks: i64) -> Timestamp {
    backoff_time(now, STATUS_CHECK_FIRST, STATUS_CHECK_MAX, checks)
}

/// When a mail that has had `attempts` attempts is tried again.
pub fn mail_retry_time(now: Timestamp, attempts: i64) -> Timestamp {
    backoff_time(now, MAIL_RETRY_FIRST, MAIL_RETRY_MAX, attempts - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(at: &str) -> Timestamp {
        Timestamp::parse(at).unwrap()
    }

    #[test]
    fn status_checks_back_off_from_fifteen_minutes_to_a_day() {
        let t0 = utc("2026-11-21T00:00:00Z");
        let at = |n| check_time(t0, n);
        assert_eq!(at(0).to_text(), "2026-11-21T00:15:00Z");
        assert_eq!(at(1).to_text(), "2026-11-21T00:30:00Z");
        assert_eq!(at(2).to_text(), "2026-11-21T01:00:00Z");
        assert_eq!(at(6).to_text(), "2026-11-21T16:00:00Z");
        assert_eq!(at(7).to_text(), "2026-11-22T00:00:00Z");
        assert_eq!(at(40).to_text(), "2026-11-22T00:00:00Z");
    }

    #[test]
    fn mail_retries_back_off_from_two_minutes_to_two_hours() {
        let t0 = utc("2026-11-21T00:00:00Z");
        assert_eq!(mail_retry_time(t0, 1).to_text(), "2026-11-21T00:02:00Z");
        assert_eq!(mail_retry_time(t0, 2).to_text(), "2026-11-21T00:04:00Z");
        assert_eq!(mail_retry_time(t0, 6).to_text(), "2026-11-21T01:04:00Z");
        assert_eq!(mail_retry_time(t0, 7).to_text(), "2026-11-21T02:00:00Z");
        assert_eq!(mail_retry_time(t0, 50).to_text(), "2026-11-21T02:00:00Z");
    }

    #[test]
    fn the_wait_doubles_per_step_and_stops_at_the_cap() {
        let t0 = utc("2026-11-21T00:00:00Z");
        let at = |step| {
            backoff_time(
                t0,
                chrono::Duration::minutes(10),
                chrono::Duration::minutes(45),
                step,
            )
        };
        assert_eq!(at(0).to_text(), "2026-11-21T00:10:00Z");
        assert_eq!(at(1).to_text(), "2026-11-21T00:20:00Z");
        assert_eq!(at(2).to_text(), "2026-11-21T00:40:00Z");
        // Twice 40 minutes is past the cap.
        assert_eq!(at(3).to_text(), "2026-11-21T00:45:00Z");
        // A step below zero waits the first wait; a huge one neither overflows nor
        // passes the cap.
        assert_eq!(at(-1).to_text(), "2026-11-21T00:10:00Z");
        assert_eq!(at(i64::MAX).to_text(), "2026-11-21T00:45:00Z");
    }

    #[test]
    fn a_mail_not_yet_tried_waits_the_first_wait() {
        let t0 = utc("2026-12-31T23:59:00Z");
        assert_eq!(mail_retry_time(t0, 0).to_text(), "2027-01-01T00:01:00Z");
        assert_eq!(check_time(t0, 0).to_text(), "2027-01-01T00:14:00Z");
    }
}
