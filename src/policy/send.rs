//! Whether a queued mail may leave now (README, *Reminders*, "True when it leaves"), and
//! whether reminders may go out at all at a given moment (the send window). No I/O: the
//! mail step gathers the facts, asks [`may_leave`], and does what the verdict says (read
//! the link's status from CM, extend its expiry, wait, skip, cancel, or send); the dry
//! run asks the same question of the same facts.

use chrono::{DateTime, Datelike, Days, FixedOffset, Local, NaiveDate, Utc, Weekday};

use super::calendar::start_of_local_day;
use super::expiry::{link_expiry, pays_through, reminder_deadline, reminder_expiry};
use crate::config::Reminders;
use crate::domain::ReminderKind;

/// Whether reminders may go out at `now`: inside the window, on a weekday unless
/// `send_weekends`.
pub fn in_send_window(r: &Reminders, now: DateTime<Local>) -> bool {
    let weekend = matches!(now.weekday(), Weekday::Sat | Weekday::Sun);
    (r.send_weekends || !weekend) && r.send_window.contains(now.time())
}

/// What is known about one queued mail just before it would be handed to the relay.
#[derive(Debug, Clone)]
pub struct Queued {
    /// For a reminder: its step and kind (`None`: a link mail, replacement or resend).
    pub reminder: Option<(i64, ReminderKind)>,
    /// The invoice is still `open`.
    pub invoice_open: bool,
    /// The mail belongs to the invoice's current revision.
    pub same_revision: bool,
    /// The link it carries is still the live one (active, with its real expiry).
    pub link_live: bool,
    /// The highest reminder step decided (to be mailed) for this invoice.
    pub latest_step: Option<i64>,
    /// When the relay last accepted a mail to this invoice.
    pub last_accepted: Option<DateTime<Utc>>,
    /// The revision's due date.
    pub due_date: NaiveDate,
    /// The link's expiry as CM holds it (none: no expiry).
    pub link_expiry: Option<DateTime<FixedOffset>>,
    /// CM said in this cycle that the link is unpaid (it made the link, or its status was
    /// read): no need to ask again.
    pub status_read: bool,
}

/// What to do with a queued mail now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leave {
    /// Hand it to the relay.
    Send,
    /// It no longer makes sense (the invoice was paid, settled or replaced, its link is
    /// gone): cancelled, never sent.
    Cancel(String),
    /// A reminder overtaken by events (a later step was decided, or a before-due reminder
    /// could only leave after the due date): recorded as a skipped step, never sent.
    Skip(String),
    /// Not now: outside the send window, or too soon after the last mail. `until`: the
    /// earliest it may go (none: the next cycle looks again).
    Wait {
        /// The earliest it may go.
        until: Option<DateTime<Utc>>,
        /// Why it waits.
        why: String,
    },
    /// Ask CM for the link's payment status first.
    ReadStatus,
    /// Extend the link's expiry to this instant first (`PATCH`).
    Extend(DateTime<FixedOffset>),
}

/// May this mail leave now? The checks of section 9, in order: still wanted (open, same
/// revision, live link); for a reminder, not overtaken by a later step, not a before-due
/// reminder after the due date, inside the send window, and at least `min_gap_days` after
/// the last mail the relay accepted; then the link's status read from CM in this cycle;
/// then its expiry (a reminder's 14 full days after the send day, which covers a final
/// notice's deadline day; a link mail's through the send day).
pub fn may_leave(q: &Queued, r: &Reminders, days_after_due: u32, now: DateTime<Local>) -> Leave {
    let today = now.date_naive();
    if !q.invoice_open {
        return Leave::Cancel(
            "not sent: the invoice was settled, paid or expired before its mail went out".into(),
        );
    }
    if !q.same_revision || !q.link_live {
        return Leave::Cancel(
            "not sent: the invoice was replaced (or its link switched off) before its mail went out"
                .into(),
        );
    }
    if let Some((step, kind)) = q.reminder {
        if let Some(latest) = q.latest_step.filter(|&l| l > step) {
            return Leave::Skip(format!(
                "not sent: step {latest} was decided after it, and only the latest goes out"
            ));
        }
        if kind == ReminderKind::BeforeDue && today > q.due_date {
            return Leave::Skip(format!(
                "not sent: a reminder before the due date ({}) can no longer go out on {today}",
                q.due_date
            ));
        }
        if !in_send_window(r, now) {
            return Leave::Wait {
                until: None,
                why: "waits for the send window".into(),
            };
        }
        if let Some(last) = q.last_accepted {
            let last_day = last.with_timezone(&Local).date_naive();
            let allowed = last_day
                .checked_add_days(Days::new(r.min_gap_days.into()))
                .unwrap_or(last_day);
            if today < allowed {
                return Leave::Wait {
                    until: Some(start_of_local_day(allowed)),
                    why: format!(
                        "waits until {allowed}: a mail to this invoice went out on {last_day} (min_gap_days = {})",
                        r.min_gap_days
                    ),
                };
            }
        }
    }
    if !q.status_read {
        return Leave::ReadStatus;
    }
    if q.reminder.is_some() {
        if !pays_through(q.link_expiry, reminder_deadline(today)) {
            return Leave::Extend(reminder_expiry(today, q.due_date, days_after_due));
        }
    } else if !pays_through(q.link_expiry, today) {
        // A link mail that waited (a relay down for days) while its link ran out.
        if let Some(at) = link_expiry(q.due_date, days_after_due, today) {
            return Leave::Extend(at);
        }
    }
    Leave::Send
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::calendar::end_of_local_day;
    use crate::policy::testing::{at, d};
    use chrono::TimeZone;

    /// Steps 3 days before and 7 and 21 days after the due date.
    fn ladder() -> Reminders {
        crate::policy::testing::ladder(&[-3, 7, 21])
    }

    fn reminder(step: i64, kind: ReminderKind) -> Queued {
        Queued {
            reminder: Some((step, kind)),
            invoice_open: true,
            same_revision: true,
            link_live: true,
            latest_step: Some(step),
            last_accepted: Some(at("2027-03-01").with_timezone(&Utc)),
            due_date: d("2027-03-10"),
            link_expiry: Some(end_of_local_day(d("2027-04-09"))),
            status_read: true,
        }
    }

    #[test]
    fn an_earlier_step_still_queued_is_skipped_once_a_later_one_is_decided() {
        let mut q = reminder(-3, ReminderKind::BeforeDue);
        q.latest_step = Some(21);
        assert!(matches!(
            may_leave(&q, &ladder(), 30, at("2027-03-07")),
            Leave::Skip(why) if why.contains("step 21")
        ));
        let mut q = reminder(7, ReminderKind::Overdue);
        q.latest_step = Some(21);
        assert!(matches!(
            may_leave(&q, &ladder(), 30, at("2027-04-05")),
            Leave::Skip(_)
        ));
    }

    #[test]
    fn a_before_due_reminder_never_leaves_after_the_due_date() {
        let q = reminder(-3, ReminderKind::BeforeDue);
        assert_eq!(may_leave(&q, &ladder(), 30, at("2027-03-10")), Leave::Send);
        assert!(matches!(
            may_leave(&q, &ladder(), 30, at("2027-03-11")),
            Leave::Skip(why) if why.contains("2027-03-10")
        ));
    }

    #[test]
    fn the_gap_counts_from_the_last_mail_the_relay_accepted() {
        let mut q = reminder(7, ReminderKind::Overdue);
        q.last_accepted = Some(at("2027-03-17").with_timezone(&Utc));
        let verdict = may_leave(&q, &ladder(), 30, at("2027-03-19"));
        assert_eq!(
            verdict,
            Leave::Wait {
                until: Some(start_of_local_day(d("2027-03-20"))),
                why: "waits until 2027-03-20: a mail to this invoice went out on 2027-03-17 (min_gap_days = 3)".into()
            }
        );
        q.status_read = false;
        assert_eq!(
            may_leave(&q, &ladder(), 30, at("2027-03-20")),
            Leave::ReadStatus
        );
    }

    #[test]
    fn reminders_wait_for_the_send_window_link_mails_do_not() {
        let q = reminder(7, ReminderKind::Overdue);
        let evening = Local
            .from_local_datetime(&d("2027-03-20").and_hms_opt(19, 0, 0).unwrap())
            .earliest()
            .unwrap();
        assert!(matches!(
            may_leave(&q, &ladder(), 30, evening),
            Leave::Wait { until: None, .. }
        ));
        let mut link = q.clone();
        link.reminder = None;
        assert_eq!(may_leave(&link, &ladder(), 30, evening), Leave::Send);
    }

    #[test]
    fn a_mail_whose_invoice_moved_on_is_cancelled_before_anything_else() {
        for change in 0..3 {
            let mut q = reminder(7, ReminderKind::Overdue);
            q.status_read = false;
            match change {
                0 => q.invoice_open = false,
                1 => q.same_revision = false,
                _ => q.link_live = false,
            }
            assert!(matches!(
                may_leave(&q, &ladder(), 30, at("2027-03-20")),
                Leave::Cancel(_)
            ));
        }
    }

    #[test]
    fn a_reminders_link_is_extended_to_outlive_it_by_fourteen_full_days() {
        let q = reminder(21, ReminderKind::Overdue);
        // Sent on 5 April: the link must work through 19 April; it expires on the 9th.
        assert_eq!(
            may_leave(&q, &ladder(), 30, at("2027-04-05")),
            Leave::Extend(end_of_local_day(d("2027-04-20")))
        );
        let mut long = q.clone();
        long.link_expiry = Some(end_of_local_day(d("2027-04-19")));
        assert_eq!(
            may_leave(&long, &ladder(), 30, at("2027-04-05")),
            Leave::Send
        );
        long.link_expiry = None;
        assert_eq!(
            may_leave(&long, &ladder(), 30, at("2027-04-05")),
            Leave::Send
        );
    }

    #[test]
    fn a_link_mail_needs_its_link_payable_on_the_send_day() {
        let mut q = reminder(0, ReminderKind::BeforeDue);
        q.reminder = None;
        q.latest_step = None;
        q.link_expiry = Some(end_of_local_day(d("2027-04-04")));
        assert_eq!(
            may_leave(&q, &ladder(), 30, at("2027-04-05")),
            Leave::Extend(end_of_local_day(d("2027-04-09")))
        );
        assert_eq!(may_leave(&q, &ladder(), 30, at("2027-04-04")), Leave::Send);
    }

    #[test]
    fn the_send_window_includes_its_start_excludes_its_end_and_may_skip_weekends() {
        let on = |day: &str, hm: (u32, u32)| {
            Local
                .from_local_datetime(&d(day).and_hms_opt(hm.0, hm.1, 0).unwrap())
                .earliest()
                .unwrap()
        };
        let mut r = ladder();
        // Friday 29 January 2027, 09:00-17:00.
        assert!(!in_send_window(&r, on("2027-01-29", (8, 59))));
        assert!(in_send_window(&r, on("2027-01-29", (9, 0))));
        assert!(in_send_window(&r, on("2027-01-29", (16, 59))));
        assert!(!in_send_window(&r, on("2027-01-29", (17, 0))));
        // Saturday 30 and Sunday 31 January, then Monday 1 February.
        assert!(in_send_window(&r, on("2027-01-30", (10, 0))));
        r.send_weekends = false;
        assert!(!in_send_window(&r, on("2027-01-30", (10, 0))));
        assert!(!in_send_window(&r, on("2027-01-31", (10, 0))));
        assert!(in_send_window(&r, on("2027-02-01", (10, 0))));
    }
}
