//! The one clock a cycle reads "now" from.
//!
//! Everything that decides by the time of day or the date (reminder steps and their send
//! window, link expiry, status and mail back-off, the times recorded in the database)
//! asks [`now`] or [`local_now`], never the system clock directly. In debug builds (the
//! ones the tests drive) `INVOICE_SYNC_NOW` (RFC 3339, e.g. `2026-12-07T10:00:00+01:00`)
//! sets the clock: it starts at that instant and runs on from there, so a test can walk a
//! whole reminder ladder across weeks in milliseconds by starting one run per "day".
//! Release builds always read the system clock.
//!
//! Local time is the process's time zone (`TZ`, else the system's), as cron and the
//! operator's `send_window` mean it.

use chrono::{DateTime, Local, Utc};

/// The variable that sets the clock in debug builds.
pub const NOW_ENV: &str = "INVOICE_SYNC_NOW";

/// Now, in UTC.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

/// Now, in the local time zone.
pub fn local_now() -> DateTime<Local> {
    now().with_timezone(&Local)
}

/// Now, to the second, as every recorded time is kept.
pub fn timestamp() -> crate::domain::Timestamp {
    crate::domain::Timestamp::at(now())
}

/// How far the clock is set from the system clock (zero unless a debug build is given
/// `INVOICE_SYNC_NOW`); fixed at the first read, so the set clock runs on in real time.
fn offset() -> chrono::Duration {
    #[cfg(debug_assertions)]
    {
        static OFFSET: std::sync::OnceLock<chrono::Duration> = std::sync::OnceLock::new();
        *OFFSET.get_or_init(|| match std::env::var(NOW_ENV) {
            Ok(text) if !text.trim().is_empty() => {
                match DateTime::parse_from_rfc3339(text.trim()) {
                    Ok(at) => at.with_timezone(&Utc) - Utc::now(),
                    Err(e) => panic!("{NOW_ENV}={text:?} is not an RFC 3339 time: {e}"),
                }
            }
            _ => chrono::Duration::zero(),
        })
    }
    #[cfg(not(debug_assertions))]
    chrono::Duration::zero()
}
