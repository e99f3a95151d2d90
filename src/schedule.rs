//! `daemon.schedule`: when the daemon runs a cycle.
//!
//! A cron expression read as cron reads it (croner): 5 fields (minute hour day month
//! weekday, second 0), 6 fields (seconds first) or 7 (a year last). Weekdays are 0–7 with
//! Sunday 0 or 7, names allowed. When both day-of-month and day-of-week are restricted, a
//! day matching *either* runs, as in Vixie cron: `0 9 1,15 * 1` runs on the 1st, the 15th
//! and every Monday. An expression that never fires (`0 0 30 2 *`) is refused, so a
//! daemon never starts only to wait forever.
//!
//! It owns the parsing and the next-tick arithmetic; it never sleeps or runs anything.

use chrono::{DateTime, Local};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed, firing schedule; shown as it was written.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    expr: String,
}

impl Schedule {
    /// Parses `expr`; the error says why in plain words (the caller names the key).
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=7).contains(&fields) {
            return Err(format!(
                "`{expr}` has {fields} fields; use 5 (minute hour day month weekday), 6 (seconds first) or 7 (a year last)"
            ));
        }
        let parser = CronParser::builder()
            .seconds(if fields == 5 {
                Seconds::Disallowed
            } else {
                Seconds::Required
            })
            .year(if fields == 7 {
                Year::Required
            } else {
                Year::Disallowed
            })
            .dom_and_dow(false)
            .build();
        let cron = parser
            .parse(expr)
            .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
        let schedule = Schedule {
            cron,
            expr: expr.to_string(),
        };
        if schedule.next_after(Local::now()).is_none() {
            return Err(format!(
                "`{expr}` never fires: no date from now on matches it"
            ));
        }
        Ok(schedule)
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The next `n` ticks after `after` (fewer when the schedule ends, e.g. a year field).
    pub fn upcoming(&self, after: DateTime<Local>, n: usize) -> Vec<DateTime<Local>> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    /// When the next cycle runs, given when the last one started and when it ended: ticks
    /// that fell while it ran coalesce into one cycle right away (never a burst of them);
    /// otherwise the next tick.
    pub fn after_cycle(
        &self,
        started: DateTime<Local>,
        ended: DateTime<Local>,
    ) -> Option<DateTime<Local>> {
        match self.next_after(started) {
            Some(t) if t <= ended => Some(ended),
            other => other,
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn next_after(expr: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Local> {
        let s = Schedule::parse(expr).unwrap();
        let at = Local.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        s.next_after(at).unwrap()
    }

    #[test]
    fn six_and_seven_field_expressions() {
        let t = next_after("0 */5 * * * *", 2026, 11, 21, 10, 2);
        assert_eq!((t.hour(), t.minute(), t.second()), (10, 5, 0));
        let t = next_after("30 0 9 * * * 2027", 2026, 11, 21, 10, 2);
        assert_eq!((t.year(), t.hour(), t.second()), (2027, 9, 30));
    }

    #[test]
    fn five_field_expressions_get_second_zero_and_unix_weekdays() {
        let t = next_after("*/5 * * * *", 2026, 11, 21, 10, 2);
        assert_eq!((t.minute(), t.second()), (5, 0));
        // 2026-11-21 is a Saturday; `1-5` is Monday to Friday in crontab
        let t = next_after("0 9 * * 1-5", 2026, 11, 21, 10, 2);
        assert_eq!(t.weekday(), Weekday::Mon);
        let t = next_after("0 9 * * 0", 2026, 11, 21, 10, 2);
        assert_eq!(t.weekday(), Weekday::Sun);
        let t = next_after("0 9 * * 7", 2026, 11, 21, 10, 2);
        assert_eq!(t.weekday(), Weekday::Sun);
        let t = next_after("0 9 * * 5-7", 2026, 11, 21, 10, 2);
        assert_eq!(t.weekday(), Weekday::Sun, "Saturday 9:00 has passed");
        let t = next_after("0 9 * * MON", 2026, 11, 21, 10, 2);
        assert_eq!(t.weekday(), Weekday::Mon);
    }

    /// The harm seen: with the `cron` crate, `0 9 1,15 * 1` ran only on Mondays that are
    /// the 1st or the 15th; cron runs it on the 1st, the 15th and every Monday.
    #[test]
    fn day_of_month_or_day_of_week_as_cron_reads_them() {
        let s = Schedule::parse("0 9 1,15 * 1").unwrap();
        let from = Local.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(); // Tue 1 Dec
        let days: Vec<(u32, Weekday)> = s
            .upcoming(from, 4)
            .iter()
            .map(|t| (t.day(), t.weekday()))
            .collect();
        assert_eq!(
            days,
            [
                (7, Weekday::Mon),
                (14, Weekday::Mon),
                (15, Weekday::Tue),
                (21, Weekday::Mon)
            ]
        );
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused() {
        let e = Schedule::parse("0 0 30 2 *").unwrap_err();
        assert!(e.contains("never fires"), "{e}");
        let e = Schedule::parse("0 0 0 1 1 * 2001").unwrap_err();
        assert!(e.contains("never fires"), "{e}");
    }

    #[test]
    fn ticks_missed_during_a_long_cycle_coalesce_into_one() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        let at = |h, m, sec| Local.with_ymd_and_hms(2026, 11, 21, h, m, sec).unwrap();
        // a cycle from 10:00:05 to 10:03:30 missed three ticks: one cycle now, no burst
        assert_eq!(
            every_minute.after_cycle(at(10, 0, 5), at(10, 3, 30)),
            Some(at(10, 3, 30))
        );
        // and after that catch-up cycle (quick), the schedule resumes at the next tick
        assert_eq!(
            every_minute.after_cycle(at(10, 3, 30), at(10, 3, 31)),
            Some(at(10, 4, 0))
        );
        // a cycle that ends before the next tick waits for it
        assert_eq!(
            every_minute.after_cycle(at(10, 0, 5), at(10, 0, 20)),
            Some(at(10, 1, 0))
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        assert!(Schedule::parse("every five minutes").is_err());
        assert!(Schedule::parse("* * *").unwrap_err().contains("3 fields"));
        assert!(Schedule::parse("0 9 * * 8").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
    }
}
