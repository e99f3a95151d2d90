//! The mail step: queued mails that are due, sent one by one over one connection, each
//! recorded before and after the send.

use crate::domain::Timestamp;
use crate::store::Store;
use chrono::SecondsFormat;

use std::cell::RefCell;
use std::collections::HashSet;

use super::links_step::{ExpiryNotSet, set_expiry};
use super::{Handoff, Report, Services};
use crate::cm::idealqr::IdealQrClient;
use crate::cm::{CmClient, CmError, LinkStatus};
use crate::config::Config;
use crate::domain::ReminderKind;
use crate::domain::collection::statutory_collection_costs;
use crate::mail::{MailContext, QrCode, ReminderContext, SendError};
use crate::policy::backoff::mail_retry_time;
use crate::policy::{self, Leave};
use crate::store::links;
use crate::store::outbox::{self, MailKind};
use crate::store::qr::{self as qr_store};
use crate::store::reminders as reminder_store;

/// The QR code a mail shows: the offered transaction's image, fetched and embedded, or
/// its URL when the image cannot be fetched now.
async fn mail_qr(
    db: &Store,
    client: Option<&IdealQrClient>,
    p: &outbox::Pending,
) -> anyhow::Result<Option<QrCode>> {
    let Some(client) = client else {
        return Ok(None);
    };
    let Some((url, _)) = qr_store::offered(db, p.invoice_id, p.revision)? else {
        return Ok(None);
    };
    let png = match client.fetch_qr_png(&url).await {
        Ok(png) => Some(png),
        Err(e) => {
            tracing::warn!(invoice = %p.reference, "the QR image could not be fetched; the mail shows its URL: {e}");
            None
        }
    };
    Ok(Some(QrCode { url, png }))
}

/// What became of one outbox mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    /// The relay accepted it; recorded `sent`.
    Sent,
    /// Not wanted any more (its invoice was settled, paid or replaced); `cancelled`.
    Cancelled,
    /// CM said, just before it would have left, that the link was paid: the payment is
    /// recorded and the mail `cancelled`.
    Paid {
        /// The invoice had been paid through its iDEAL QR code too.
        twice: bool,
    },
    /// A reminder overtaken by events (a later step was decided, or a before-due reminder
    /// could only leave after the due date): its step recorded `skipped`, its mail
    /// `cancelled`.
    Skipped(String),
    /// Not now (outside the send window, too soon after the last mail): stays queued.
    Waiting(String),
    /// CM could not say the link is unpaid, or could not extend it: stays queued, never
    /// sent on a guess.
    WaitingForCm(String, Option<CmError>),
    /// Refused for good (a 5xx for the recipient, or it cannot be built); `failed`.
    Failed(String),
    /// The relay answered 4xx about this mail: it backs off alone.
    Deferred(String),
    /// The relay could not be reached or failed (no connection, a timeout, 421): the
    /// mail keeps its place; whether the relay is down is the caller's judgement.
    RelayFailed(String),
}

/// What [`policy::may_leave`] is asked about a queued mail: the stored facts, and whether
/// CM said in this cycle that its link is unpaid (`status_read`).
pub fn facts(p: &outbox::Pending, status_read: bool) -> policy::Queued {
    policy::Queued {
        reminder: p.reminder,
        invoice_open: p.invoice_open,
        same_revision: p.same_revision,
        link_live: p.link_live,
        latest_step: p.latest_step,
        last_accepted: p.last_accepted_at.map(Timestamp::instant),
        due_date: p.data.due_date,
        link_expiry: p.link_expiry.map(|t| t.instant().fixed_offset()),
        status_read,
    }
}

/// The checks of "true when it leaves", carried out: asks [`policy::may_leave`] and does
/// what it says (reads the link's status from CM, extends its expiry, records a skip, a
/// cancellation or a wait) until the answer is to send (`None`) or the mail's fate for
/// this cycle is settled (`Some(outcome)`).
async fn checked_before_leaving(
    db: &Store,
    cfg: &Config,
    cm: &CmClient,
    p: &mut outbox::Pending,
    mut status_read: bool,
) -> anyhow::Result<Option<MailOutcome>> {
    // Each verdict settles one question; four rounds answer them all.
    for _ in 0..4 {
        let now = crate::clock::local_now();
        let verdict = policy::may_leave(
            &facts(p, status_read),
            &cfg.reminders,
            cfg.cm.link_expiry_days_after_due,
            now,
        );
        let link_ref = p.link_ref.clone();
        let (why, error) = match verdict {
            Leave::Send => return Ok(None),
            Leave::Cancel(why) => {
                outbox::cancel(db, p.id, &why)?;
                return Ok(Some(MailOutcome::Cancelled));
            }
            Leave::Skip(why) => {
                let step = p.reminder.map(|(s, _)| s).unwrap_or_default();
                reminder_store::skip_queued(db, p.id, p.invoice_id, step, &why)?;
                return Ok(Some(MailOutcome::Skipped(why)));
            }
            Leave::Wait { until, why } => {
                let until = until.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
                outbox::hold(db, p.id, &why, until.as_deref())?;
                return Ok(Some(MailOutcome::Waiting(why)));
            }
            Leave::ReadStatus => match &link_ref {
                None => (NO_LINK_REF.into(), None),
                Some(link_ref) => match cm.link_status(link_ref).await {
                    Ok(LinkStatus::Open) => {
                        links::record_seen_open(db, p.link_id, crate::clock::timestamp())?;
                        status_read = true;
                        continue;
                    }
                    Ok(LinkStatus::Paid) => {
                        let now = crate::clock::timestamp();
                        let twice = db.write(|tx| -> anyhow::Result<bool> {
                            let twice = links::record_paid(tx, p.link_id, p.invoice_id, now)?;
                            outbox::cancel(tx, p.id, PAID_BEFORE_LEAVING)?;
                            Ok(twice)
                        })?;
                        return Ok(Some(MailOutcome::Paid { twice }));
                    }
                    Ok(LinkStatus::Unknown) => (
                        "waits: CM answered a payment status this program does not know".into(),
                        None,
                    ),
                    Err(e) => (
                        format!("waits: CM could not say whether the link is paid ({e})"),
                        Some(e),
                    ),
                },
            },
            Leave::Extend(at) => {
                let wire = policy::wire(at);
                let Some(link_ref) = link_ref else {
                    outbox::hold(db, p.id, NO_LINK_REF, None)?;
                    return Ok(Some(MailOutcome::WaitingForCm(NO_LINK_REF.into(), None)));
                };
                match set_expiry(cm, &link_ref, at).await {
                    Ok(()) => {
                        links::record_extended(db, p.link_id, policy::stored(at))?;
                        tracing::info!(invoice = %p.reference, link = %link_ref, expiry = %wire,
                            "link expiry extended before its mail leaves");
                        p.link_expiry = Some(policy::stored(at));
                        continue;
                    }
                    Err(ExpiryNotSet::Held(held)) => (
                        format!("waits: CM holds the expiry {held} instead of {wire}"),
                        None,
                    ),
                    Err(ExpiryNotSet::Failed(e)) => (
                        format!("waits: the link's expiry could not be extended to {wire} ({e})"),
                        Some(e),
                    ),
                }
            }
        };
        outbox::hold(db, p.id, &why, None)?;
        return Ok(Some(MailOutcome::WaitingForCm(why, error)));
    }
    anyhow::bail!("the send-time checks of mail {} did not settle", p.id)
}

/// Why a mail was cancelled whose link CM said was paid just before the mail would go.
const PAID_BEFORE_LEAVING: &str =
    "not sent: CM said the link was paid just before the mail would have left";

/// Why a mail waits whose link has no CM reference to read or extend it by.
const NO_LINK_REF: &str = "waits: the link has no CM reference yet";

/// Sends one due outbox mail and records the outcome. First the checks of "true when it
/// leaves" ([`policy::may_leave`]): it may be cancelled, skipped, held back, or its link
/// read from CM and extended (unless `status_read`: CM said in this cycle that the link
/// is unpaid, by making it or answering a status read). Then `sending` before the hand-over, and `sent`,
/// `failed` or queued again after it. `p` is judged as given: read it just before
/// ([`outbox::pending`]). The worker loop around it only decides what to do next; tests
/// drive this directly.
pub async fn send_one(
    db: &Store,
    cfg: &Config,
    services: Services<'_>,
    p: &outbox::Pending,
    status_read: bool,
) -> anyhow::Result<MailOutcome> {
    let postman = services.mail;
    let mut p = p.clone();
    if let Some(settled) = checked_before_leaving(db, cfg, services.cm, &mut p, status_read).await?
    {
        return Ok(settled);
    }
    let p = &p;
    let language = p
        .data
        .language
        .map(|l| l.as_str().to_string())
        .unwrap_or_else(|| cfg.cm.default_language.to_string());
    let ctx = MailContext {
        invoice_reference: p.reference.clone(),
        customer_name: p.data.customer_name.as_str().to_string(),
        customer_email: p.data.customer_email.as_str().to_string(),
        amount_minor: p.data.due.minor,
        currency_code: p.data.currency().code().to_string(),
        currency_exponent: p.data.currency().exponent(),
        due_date: p.data.due_date,
        language,
        link_uri: p.link_uri.clone().unwrap_or_default(),
        qr: mail_qr(db, services.qr, p).await?,
        replaces_earlier_link: p.kind == MailKind::Replacement,
        // After a partial payment by transfer, the link and replacement mails say what
        // came in (the link asks for the rest).
        received_minor: match p.reminder {
            None => crate::store::bank::received_by_transfer(db, p.invoice_id)?,
            Some(_) => None,
        },
        sender_name: postman.sender_name(),
        merchant: cfg.merchant.clone(),
        reminder: p.reminder.map(|(step, kind)| ReminderContext {
            kind,
            step,
            sent_on: crate::clock::local_now().date_naive(),
            // The statutory scale of the final notice is in euros (only EUR invoices get one).
            collection_costs_minor: (kind == ReminderKind::FinalNotice)
                .then(|| statutory_collection_costs(p.data.due.minor)),
        }),
    };
    let resend = (p.kind == MailKind::Resend).then_some(p.id);
    let (message, message_id) = match postman.compose(&ctx, p.revision, resend) {
        Ok(m) => m,
        Err(e) => {
            let why = format!("the mail cannot be built: {e}");
            outbox::mark_failed(db, p.id, &why)?;
            return Ok(MailOutcome::Failed(why));
        }
    };
    outbox::mark_sending(db, p.id, &message_id)?;
    crate::failpoint("mail-before-send");
    let result = postman.sender.send(&message).await;
    crate::failpoint("mail-after-send");
    crate::progress::beat();
    Ok(match result {
        Ok(()) => {
            // The mail and the date of the invoice's next reminder (counted from it) are
            // one fact.
            db.write(|tx| -> anyhow::Result<()> {
                outbox::mark_sent(tx, p.id, crate::clock::timestamp())?;
                super::reminder_step::reschedule(tx, cfg, p.invoice_id)
            })?;
            MailOutcome::Sent
        }
        Err(SendError::Permanent(reply)) => {
            outbox::mark_failed(db, p.id, &reply)?;
            MailOutcome::Failed(reply)
        }
        Err(SendError::Deferred(reply)) => {
            back_off(db, p.id, p.attempts, &reply)?;
            MailOutcome::Deferred(reply)
        }
        Err(SendError::Transient(reply)) => {
            outbox::mark_retry(db, p.id, &reply, crate::clock::timestamp())?;
            MailOutcome::RelayFailed(reply)
        }
    })
}

/// Sends the queued mails that are due, at most `messages_per_second`, over one
/// connection, one [`send_one`] at a time, while the link side of the cycle runs: each
/// time a link's mail may have become due the queue is read again, until the link side
/// is done and nothing due is left. Mails of links whose iDEAL QR code is still being
/// made wait for it; each mail is tried at most once per cycle.
pub(super) async fn mail_step(
    db: &Store,
    cfg: &Config,
    services: Services<'_>,
    report: &RefCell<Report>,
    handoff: &Handoff,
) -> anyhow::Result<()> {
    // A relay failure (no connection, a timeout, 421) is first taken to be about the
    // relay: the mail keeps its place. A second one in a row means the relay is down:
    // the queue waits for the next cycle, where every mail goes out at once when it
    // answers again. If the next mail goes through instead, the first failure was about
    // that mail, and it backs off alone.
    let mut suspect: Option<(i64, i64, String)> = None;
    let mut tried: HashSet<i64> = HashSet::new();
    'cycle: loop {
        // Read before the queue: once the link side is done, this read sees all it made.
        let last_round = handoff.done.get();
        let due: Vec<_> = outbox::due_ids(db, crate::clock::timestamp(), 100_000)?
            .into_iter()
            .filter(|(id, link)| !tried.contains(id) && !handoff.held.borrow().contains(link))
            .collect();
        if due.is_empty() {
            if last_round {
                break;
            }
            handoff.ready.notified().await;
            continue;
        }
        for (id, _) in due {
            tried.insert(id);
            // Read whole just before it is judged: a mail before it may have changed its
            // invoice (paid, a mail accepted).
            let Some(p) = outbox::pending(db, id)? else {
                continue;
            };
            let status_read = report.borrow().links_seen_open.contains(&p.link_id);
            let outcome = send_one(db, cfg, services, &p, status_read).await?;
            let mut report = report.borrow_mut();
            match outcome {
                MailOutcome::Cancelled => {
                    tracing::info!(invoice = %p.reference, kind = p.kind.as_str(),
                        "mail cancelled: its invoice was settled, paid or replaced before it went out");
                }
                MailOutcome::Paid { twice } => {
                    report.payments_seen += 1;
                    if twice {
                        report.double_payments.push(p.reference.clone());
                    }
                    tracing::info!(invoice = %p.reference, kind = p.kind.as_str(),
                        "paid through its payment link (seen just before its mail would have left; none is sent)");
                }
                MailOutcome::Skipped(why) => {
                    report.reminders_skipped += 1;
                    tracing::info!(invoice = %p.reference, "reminder {why}");
                }
                MailOutcome::Waiting(why) => {
                    report.mails_held += 1;
                    tracing::info!(invoice = %p.reference, kind = p.kind.as_str(), "mail {why}");
                }
                MailOutcome::WaitingForCm(why, error) => {
                    report.mails_waiting_for_cm += 1;
                    if let Some(e) = &error {
                        super::note_failure(&mut report, e);
                    }
                    tracing::warn!(invoice = %p.reference, kind = p.kind.as_str(), "mail {why}");
                }
                MailOutcome::Sent => {
                    report.mails_sent += 1;
                    if p.kind == MailKind::Reminder {
                        report.reminders_sent += 1;
                    }
                    tracing::info!(invoice = %p.reference, to = %p.data.customer_email, "mail sent");
                    // The relay works: an earlier failure was about that one mail.
                    if let Some((id, attempts, reply)) = suspect.take() {
                        back_off(db, id, attempts, &reply)?;
                    }
                }
                MailOutcome::Failed(reply) => {
                    report.mails_failed += 1;
                    tracing::warn!(invoice = %p.reference, "mail refused for good: {reply}");
                }
                MailOutcome::Deferred(reply) => {
                    report.mails_deferred += 1;
                    tracing::warn!(invoice = %p.reference, "mail deferred by the relay: {reply}");
                }
                MailOutcome::RelayFailed(reply) => {
                    report.mails_deferred += 1;
                    if suspect.is_some() {
                        tracing::warn!(
                            "the mail server is unavailable ({reply}); the queue waits for the next cycle, where every mail goes out once it answers"
                        );
                        report.mail_server_down = Some(reply);
                        suspect = None;
                        break 'cycle;
                    }
                    tracing::warn!(invoice = %p.reference, "mail not sent: {reply}");
                    suspect = Some((p.id, p.attempts, reply));
                }
            }
        }
    }
    let mut report = report.borrow_mut();
    if let Some((_, _, reply)) = suspect {
        // The last mail failed and nothing came after it: no sign that it was about the
        // mail, so it keeps its place for the next cycle.
        report.mail_server_down = Some(reply);
    }
    Ok(())
}

/// Backs off one mail after a failure that was about it.
fn back_off(db: &Store, id: i64, attempts: i64, reply: &str) -> anyhow::Result<()> {
    let next = mail_retry_time(crate::clock::timestamp(), attempts + 1);
    outbox::mark_retry(db, id, reply, next)?;
    Ok(())
}
