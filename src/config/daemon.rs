//! `[daemon]`: the schedule and the listeners.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::schedule::Schedule;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[daemon]`.
pub struct Daemon {
    /// Cron expression: 6 fields (seconds first), 7 (a year last), or the classic 5 (minute hour day month weekday; weekday 0–7, Sunday 0 or 7); in local time.
    #[serde(deserialize_with = "schedule")]
    pub schedule: Schedule,
    /// `ADDR:PORT` of the callback listener, e.g. `127.0.0.1:8089`.
    pub callback_listen: Option<SocketAddr>,
    /// Its path.
    pub callback_path: String,
    /// `ADDR:PORT` of `/metrics` and `/healthz`, e.g. `127.0.0.1:9189` (never the
    /// callback listener's).
    pub status_listen: Option<SocketAddr>,
}

impl Default for Daemon {
    fn default() -> Self {
        Self {
            schedule: Schedule::parse("0 */5 * * * *").expect("the default schedule fires"),
            callback_listen: None,
            callback_path: "/callback".into(),
            status_listen: None,
        }
    }
}

impl Daemon {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let (Some(a), Some(b)) = (self.status_listen, self.callback_listen)
            && a == b
        {
            return Err((
                "daemon.status_listen",
                "must differ from daemon.callback_listen: metrics are never served where callbacks from the internet arrive".into(),
            ));
        }
        if !self.callback_path.starts_with('/') {
            return Err(("daemon.callback_path", "must start with `/`".into()));
        }
        Ok(())
    }
}

/// `daemon.schedule`, parsed once as it is read.
fn schedule<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
    super::parsed(d, Schedule::parse)
}

#[cfg(test)]
mod tests {
    use chrono::{Local, TimeZone, Timelike};

    use crate::config::testing::{assert_refused, parse};

    /// The schedule is read once, into a `Schedule`: what the daemon and `check` use.
    #[test]
    fn the_schedule_is_read_into_a_schedule_that_ticks() {
        let c = parse("[daemon]\nschedule = \"0 */5 * * * *\"\n").unwrap();
        let at = Local.with_ymd_and_hms(2026, 11, 21, 10, 2, 0).unwrap();
        let t = c.daemon.schedule.next_after(at).unwrap();
        assert_eq!((t.hour(), t.minute(), t.second()), (10, 5, 0));
        assert_eq!(c.daemon.schedule.to_string(), "0 */5 * * * *");
        let t = parse("").unwrap().daemon.schedule.next_after(at).unwrap();
        assert_eq!(
            (t.hour(), t.minute(), t.second()),
            (10, 5, 0),
            "the default"
        );
    }

    #[test]
    fn a_bad_schedule_is_refused_at_load_with_the_key_named() {
        for (expr, why) in [
            ("every 5 minutes", "3 fields"),
            ("0 0 30 2 *", "never fires"),
            ("61 * * * *", "not a valid cron expression"),
        ] {
            assert_refused("daemon.schedule", &format!("{expr:?}"), why);
        }
        assert_refused("daemon.schedule", "5", "expected a string");
    }
}
