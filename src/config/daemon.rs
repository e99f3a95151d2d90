//! `[daemon]`: the schedule and the listeners.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[daemon]`.
pub struct Daemon {
    /// Cron expression: 6 fields (seconds first), 7 (a year last), or the classic 5 (minute hour day month weekday; weekday 0–7, Sunday 0 or 7); in local time.
    pub schedule: String,
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
            schedule: "0 */5 * * * *".into(),
            callback_listen: None,
            callback_path: "/callback".into(),
            status_listen: None,
        }
    }
}

impl Daemon {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Err(e) = crate::schedule::Schedule::parse(&self.schedule) {
            return Err(("daemon.schedule", e));
        }
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
