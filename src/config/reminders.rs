//! `[reminders]`: the reminder ladder and its send window.

use serde::Deserialize;

use super::Merchant;

/// `[reminders]`: mails after the link mail, at days relative to the due date
/// (README, *Reminders*).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Reminders {
    /// Off by default: no reminder is planned or sent.
    pub enabled: bool,
    /// The steps, in days relative to the due date (negative: before it), ascending.
    pub days: Vec<i32>,
    /// Never two mails to one invoice within this many calendar days (a mail on the 1st
    /// allows the next on the 1st + this).
    pub min_gap_days: u32,
    /// `HH:MM-HH:MM`, local time: reminders are queued only inside it.
    #[serde(deserialize_with = "send_window")]
    pub send_window: SendWindow,
    /// Whether reminders may go out on Saturday and Sunday.
    pub send_weekends: bool,
    /// For consumers, the last step is the statutory notice before collection costs.
    pub final_notice: bool,
    /// The customer type of rows without a `customer_type` value.
    pub default_customer_type: crate::domain::CustomerType,
}

impl Default for Reminders {
    fn default() -> Self {
        Self {
            enabled: false,
            days: vec![-3, 7, 21],
            min_gap_days: 3,
            send_window: SendWindow {
                start: 9 * 60,
                end: 17 * 60,
            },
            send_weekends: false,
            final_notice: false,
            default_customer_type: crate::domain::CustomerType::B2b,
        }
    }
}

/// The send window as minutes after local midnight: `[start, end)`; shown as `HH:MM-HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// The first minute inside the window.
    pub start: u32,
    /// The first minute after it (1440 for `24:00`).
    pub end: u32,
}

impl SendWindow {
    /// Reads `HH:MM-HH:MM` (`24:00` may end it); the start must come before the end.
    pub fn parse(s: &str) -> Result<SendWindow, String> {
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let shape = || format!("{s:?} is not a window of the form HH:MM-HH:MM (e.g. 09:00-17:00)");
        let (a, b) = s.split_once('-').ok_or_else(shape)?;
        let (start, end) = (minutes(a).ok_or_else(shape)?, minutes(b).ok_or_else(shape)?);
        if start >= end {
            return Err(format!(
                "{s:?} ends before it starts (a window does not run past midnight)"
            ));
        }
        Ok(SendWindow { start, end })
    }

    /// Whether the local time `t` is inside the window.
    pub fn contains(&self, t: chrono::NaiveTime) -> bool {
        use chrono::Timelike;
        let m = t.hour() * 60 + t.minute();
        self.start <= m && m < self.end
    }
}

impl std::fmt::Display for SendWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
    }
}

/// `reminders.send_window`, parsed once as it is read.
fn send_window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SendWindow, D::Error> {
    super::parsed(d, SendWindow::parse)
}

impl Reminders {
    pub(super) fn validate(&self, merchant: &Merchant) -> Result<(), (&'static str, String)> {
        if let Some(d) = self.days.iter().find(|d| d.abs() > 3650) {
            return Err((
                "reminders.days",
                format!("{d} is more than ten years from the due date"),
            ));
        }
        if self.days.windows(2).any(|w| w[0] >= w[1]) {
            return Err((
                "reminders.days",
                format!(
                    "{:?} must be in ascending order without repeats (days relative to the due date)",
                    self.days
                ),
            ));
        }
        if self.min_gap_days > 365 {
            return Err(("reminders.min_gap_days", "must be at most 365".into()));
        }
        if self.enabled && self.days.is_empty() {
            return Err((
                "reminders.days",
                "is empty while reminders.enabled = true; name at least one step".into(),
            ));
        }
        if self.enabled && self.final_notice {
            for (key, value) in [
                ("merchant.name", &merchant.name),
                ("merchant.address", &merchant.address),
            ] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    return Err((
                        key,
                        "is required when reminders.final_notice = true: the statutory notice must say who the creditor is".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveTime;

    use super::SendWindow;
    use crate::config::testing::{assert_refused, parse};

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// The window is read once, into minutes: what the reminder step asks, with no parse
    /// (and no fallback) later.
    #[test]
    fn the_send_window_is_read_into_minutes() {
        let c = parse("[reminders]\nsend_window = \"8:30-24:00\"\n").unwrap();
        let w = c.reminders.send_window;
        assert_eq!(
            w,
            SendWindow {
                start: 510,
                end: 1440
            }
        );
        assert!(!w.contains(hm(8, 29)) && w.contains(hm(8, 30)) && w.contains(hm(23, 59)));
        assert_eq!(w.to_string(), "08:30-24:00");
        // The README's "any hour".
        let any = parse("[reminders]\nsend_window = \"00:00-24:00\"\n").unwrap();
        let any = any.reminders.send_window;
        assert!(any.contains(hm(0, 0)) && any.contains(hm(23, 59)));
        let default = parse("").unwrap().reminders.send_window;
        assert_eq!(default.to_string(), "09:00-17:00");
        assert!(default.contains(hm(9, 0)) && !default.contains(hm(17, 0)));
    }

    /// The harm seen: `window()` read the string again on every call and fell back to a
    /// window of its own when it did not parse; now a bad window never gets past load.
    #[test]
    fn a_bad_send_window_is_refused_at_load_with_the_key_named() {
        for (window, why) in [
            ("9-17", "is not a window of the form HH:MM-HH:MM"),
            ("09:00-25:00", "is not a window of the form HH:MM-HH:MM"),
            ("17:00-09:00", "ends before it starts"),
            ("", "is not a window of the form HH:MM-HH:MM"),
        ] {
            assert_refused("reminders.send_window", &format!("{window:?}"), why);
        }
    }
}
