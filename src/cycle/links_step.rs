//! The link step: deactivate the links that must go, then create the missing ones (each
//! intent committed before its request, each asking a provisional expiry), then give the
//! recorded ones their real expiry; a link CM records with another amount is switched
//! off at once.

use crate::domain::{LinkRef, Timestamp};
use crate::store::Store;
use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};

use std::cell::RefCell;

use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::{Handoff, Report, fan_out, fan_out_stream, note_failure, queue};
use crate::cm::{CmClient, CmError, CreateLink, LinkStatus};
use crate::config::Config;
use crate::policy::backoff::check_time;

use crate::policy::expiry::{link_expiry, provisional_expiry};
use crate::store::links::{self, ToCreate, ToDeactivate};
use crate::store::outbox::{self, MailKind};

/// What became of one deactivation, once CM's answer is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deactivated {
    /// CM confirmed the link inactive (`active: false`).
    Inactive,
    /// CM (its own JSON answer, with a valid token) does not know the link: nothing is
    /// payable under it, recorded as inactive.
    Unknown,
    /// The link was paid before it could be switched off; the payment is recorded.
    /// `double` when the invoice had already been paid (through its QR code).
    Paid {
        /// The invoice had been paid before: the merchant must refund one payment.
        double: bool,
    },
    /// Nothing was decided (a fault on the way to CM, or CM left the link active): the
    /// link stays `deactivating` and the next cycle asks again. The text says why.
    Left(String),
}

/// Deactivates one link at CM and records what CM said: the one place that turns a
/// deactivation answer into state, for the cycle and the operator's `deactivate` alike.
/// Only CM's own answer retires a link; anything else leaves it for the next cycle.
pub async fn deactivate_one(
    db: &Store,
    cm: &CmClient,
    d: &ToDeactivate,
) -> anyhow::Result<Deactivated> {
    let result = cm.deactivate_link(&d.link_ref).await;
    let now = crate::clock::timestamp();
    Ok(match result {
        Ok(link) if link.status == LinkStatus::Paid => {
            let double = links::record_paid(db, d.link_id, d.invoice_id, now)?;
            Deactivated::Paid { double }
        }
        Ok(link) if !link.active => {
            links::record_deactivated(db, d.link_id, None, now)?;
            Deactivated::Inactive
        }
        Ok(_) => {
            let message =
                "CM answered the deactivation with the link still active; asked again next cycle";
            links::record_link_error(db, d.link_id, message)?;
            Deactivated::Left(message.into())
        }
        Err(e) if e.is_not_found() => {
            links::record_deactivated(db, d.link_id, Some("CM no longer knows this link"), now)?;
            Deactivated::Unknown
        }
        Err(e) => {
            let message = e.to_string();
            links::record_link_error(db, d.link_id, &message)?;
            if let CmError::Auth { .. } = e {
                return Err(anyhow::Error::new(e));
            }
            Deactivated::Left(message)
        }
    })
}

pub(super) async fn deactivate_step(
    db: &Store,
    cfg: &Config,
    cm: &CmClient,
    report: &mut Report,
) -> anyhow::Result<()> {
    let list = links::plan_deactivations(db)?;
    if list.is_empty() {
        return Ok(());
    }
    db.write(|tx| {
        list.iter()
            .try_for_each(|d| links::mark_deactivating(tx, d.link_id, d.reason))
    })?;
    let request = |d: ToDeactivate| async move {
        let r = deactivate_one(db, cm, &d).await;
        (d, r)
    };
    fan_out(list, cfg.cm.max_in_flight, request, |d, result| {
        let outcome = match result {
            Ok(o) => o,
            Err(e) => match e.downcast::<CmError>() {
                Ok(cm_error) => {
                    note_failure(report, &cm_error);
                    return Ok(());
                }
                Err(other) => return Err(other),
            },
        };
        match outcome {
            Deactivated::Paid { double } => {
                if double {
                    report.double_payments.push(d.reference.clone());
                }
                report.payments_seen += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref,
                    "the link to deactivate was already paid; the invoice is recorded as paid");
            }
            Deactivated::Inactive => {
                report.links_deactivated += 1;
                tracing::info!(invoice = %d.reference, link = %d.link_ref, reason = d.reason.as_str(), "link deactivated");
            }
            Deactivated::Unknown => {
                report.links_deactivated += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref, "CM does not know the link to deactivate; recorded as inactive");
            }
            Deactivated::Left(message) => {
                report.deferred += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref, "deactivation left for the next cycle: {message}");
            }
        }
        Ok(())
    })
    .await
}

/// The fields of the create request for one invoice revision, asked to expire at the
/// provisional expiry (`now` + `cm.provisional_expiry_hours`): until the answer is
/// recorded and the real expiry set, nothing but CM knows the link.
pub fn create_request(c: &ToCreate, cfg: &Config, now: DateTime<Utc>) -> CreateLink {
    // The defaults were validated with the config; the row's own codes are typed.
    let language = c
        .data
        .language
        .map(|l| l.as_str().to_string())
        .unwrap_or_else(|| cfg.cm.default_language.to_string())
        .to_uppercase();
    let country = c
        .data
        .country
        .map(|k| k.as_str().to_string())
        .unwrap_or_else(|| cfg.cm.default_country.to_string())
        .to_uppercase();
    CreateLink {
        amount_minor: c.data.due.minor,
        exponent: c.data.currency().exponent(),
        currency_code: c.data.currency().code().to_string(),
        invoice_reference: c.reference.clone(),
        invoice_due_date: format!("{}T00:00:00+00:00", c.data.due_date),
        merchant_reference: c.merchant_reference(),
        language_code: language,
        country_code: country,
        expiry_date: Some(
            provisional_expiry(now, cfg.cm.provisional_expiry_hours)
                .instant()
                .fixed_offset(),
        ),
        callback_url: cfg.cm.callback_url.clone(),
    }
}

/// Why an expiry `PATCH` did not take.
pub(super) enum ExpiryNotSet {
    /// CM answered, and holds this other expiry.
    Held(String),
    /// CM did not answer as CM (a fault, a refusal): nothing is decided.
    Failed(CmError),
}

/// Asks CM to set a link's expiry to `at` (sent with its local offset) and confirms that
/// CM holds it; an answer without an expiry is agreement (the document does not promise
/// an echo). Every expiry change goes through here: the extend stage's, a reminder's and
/// a mail's just before it leaves.
pub(super) async fn set_expiry(
    cm: &CmClient,
    link_ref: &LinkRef,
    at: DateTime<FixedOffset>,
) -> Result<(), ExpiryNotSet> {
    let wire = crate::policy::wire(at);
    match cm
        .update_link(link_ref, &serde_json::json!({ "expiry_date": wire }))
        .await
    {
        Ok(link) => match link.expiry_date {
            Some(held) if Timestamp::parse(&held).ok() != Some(crate::policy::stored(at)) => {
                Err(ExpiryNotSet::Held(held))
            }
            _ => Ok(()),
        },
        Err(e) => Err(ExpiryNotSet::Failed(e)),
    }
}

/// Gives every recorded link still on its provisional expiry its real one (`PATCH`), and
/// only then lets its mail go. A link CM does not extend stays unannounced and is asked
/// again next cycle; should that go on past its provisional expiry, it lapses unpaid and
/// the invoice gets a new link.
/// Gives links their real expiry: first those earlier cycles left on their provisional
/// one (`provisional`), then each link as the create stage records it (`created`). A link
/// extended goes on to the iDEAL QR stage (`qr`, when enabled), else its mail may go.
#[allow(clippy::too_many_arguments)]
pub(super) async fn extend_step(
    db: &Store,
    cfg: &Config,
    cm: &CmClient,
    report: &RefCell<Report>,
    provisional: Vec<links::ToExtend>,
    created: UnboundedReceiver<links::ToExtend>,
    qr: Option<UnboundedSender<i64>>,
    handoff: &Handoff,
) -> anyhow::Result<()> {
    let provisional_count = provisional.len();
    let list = futures_util::stream::iter(provisional).chain(queue(created));
    let today = crate::clock::local_now().date_naive();
    let request = |e: links::ToExtend| async move {
        let expiry = link_expiry(e.due_date, cfg.cm.link_expiry_days_after_due, today);
        let result = match expiry {
            Some(at) => Some(set_expiry(cm, &e.link_ref, at).await),
            None => None,
        };
        (e, (expiry, result))
    };
    handoff
        .unextended
        .set(handoff.unextended.get() + provisional_count);
    fan_out_stream(list, cfg.cm.max_in_flight, request, |e, (expiry, result)| {
        // Whatever the answer, this link no longer holds the create stage back.
        handoff.unextended.set(handoff.unextended.get().saturating_sub(1));
        handoff.extended.notify_waiters();
        let mut report = report.borrow_mut();
        let (Some(expiry), Some(result)) = (expiry, result) else {
            let message = format!("the due date {} leaves no expiry in range", e.due_date);
            links::record_link_error(db, e.link_id, &message)?;
            report.deferred += 1;
            return Ok(());
        };
        match result {
            Ok(()) => {
                links::record_extended(db, e.link_id, crate::policy::stored(expiry))?;
                match &qr {
                    // Held (in the same turn, before the mail side can look) until the
                    // QR stage has made its code.
                    Some(qr) => {
                        handoff.held.borrow_mut().insert(e.link_id);
                        if qr.send(e.link_id).is_err() {
                            handoff.held.borrow_mut().remove(&e.link_id);
                        }
                    }
                    None => handoff.mail_may_be_due(),
                }
            }
            Err(ExpiryNotSet::Held(held)) => {
                let message = format!(
                    "CM holds the expiry {held} instead of {}; the link is not mailed until it is set",
                    crate::policy::wire(expiry)
                );
                links::record_link_error(db, e.link_id, &message)?;
                report.deferred += 1;
                tracing::warn!(invoice = %e.reference, link = %e.link_ref, "{message}");
            }
            Err(ExpiryNotSet::Failed(err)) => {
                let message = format!(
                    "the link's real expiry could not be set yet, so it is not mailed: {err}"
                );
                links::record_link_error(db, e.link_id, &message)?;
                note_failure(&mut report, &err);
                tracing::warn!(invoice = %e.reference, link = %e.link_ref, "{message}");
            }
        }
        Ok(())
    })
    .await
}

/// Creates the planned links, each intent committed before its request; each link
/// recorded (with its mail queued, in one transaction) goes on to the extend stage.
/// Returns whether CM recorded a link with another amount than asked (switched off by
/// the caller).
pub(super) async fn create_step(
    db: &Store,
    cfg: &Config,
    cm: &CmClient,
    report: &RefCell<Report>,
    plan: Vec<ToCreate>,
    extend: UnboundedSender<links::ToExtend>,
    handoff: &Handoff,
) -> anyhow::Result<bool> {
    if plan.is_empty() {
        return Ok(false);
    }
    let started = crate::clock::now();
    let mut mismatched = false;
    let backlog = cfg.cm.max_in_flight.max(1);
    let request = |c: ToCreate| async move {
        // Links made wait for their real expiry before more are made: the updates get
        // their share of the CM rate, and mails start with the first links, not after
        // the last (ARCHITECTURE.md, links and mail overlap).
        while handoff.unextended.get() >= backlog {
            handoff.extended.notified().await;
        }
        // Just before the request is built: the intent is committed before anything is
        // sent.
        let request = create_request(&c, cfg, started);
        let provisional = request.expiry_date.map(|at| Timestamp::at(at.to_utc()));
        let intent = links::record_intent(db, &c, provisional, crate::clock::timestamp());
        let outcome = match intent {
            Ok(link_id) => Ok((link_id, cm.create_link(&request).await)),
            Err(e) => Err(e),
        };
        (c, outcome)
    };
    fan_out(plan, cfg.cm.max_in_flight, request, |c, outcome| {
        let mut report = report.borrow_mut();
        let (link_id, result) = outcome.context("cannot record the intent to create a link")?;
        crate::failpoint("link-after-create");
        let now = crate::clock::timestamp();
        // CM's reference is the key of every later call: an answer without a usable one
        // cannot be recorded, and CM may still hold the link it made.
        let result = result.and_then(|link| match LinkRef::parse(&link.reference) {
            Ok(link_ref) => Ok((link, link_ref)),
            Err(e) => Err(CmError::Protocol {
                status: 200,
                message: format!("the created link has no usable reference: {e}"),
            }),
        });
        match result {
            Ok((link, link_ref)) if echoed_amount_differs(&link, &c) => {
                // CM holds another amount than the invoice asks: never announce it.
                let message = format!(
                    "CM recorded the amount {} for a link that asked {}; the link is switched off and was not mailed",
                    link.amount.as_deref().unwrap_or("?"),
                    c.data.due.to_decimal_string()
                );
                links::record_amount_mismatch(
                    db,
                    link_id,
                    c.invoice_id,
                    &link_ref,
                    &link.uri,
                    &message,
                    now,
                )?;
                report.links_failed += 1;
                mismatched = true;
                tracing::error!(invoice = %c.reference, link = %link_ref, "{message}");
            }
            Ok((link, link_ref)) => {
                let next = check_time(crate::clock::timestamp(), 0);
                // The link and the mail announcing it are one fact: one transaction.
                let kind = if c.replaces {
                    MailKind::Replacement
                } else {
                    MailKind::Link
                };
                db.write(|tx| {
                    links::record_created(tx, link_id, &link_ref, &link.uri, now, next)?;
                    outbox::enqueue(tx, c.invoice_id, c.revision, link_id, kind, now)
                })?;
                report.links_created += 1;
                // CM just made it: unpaid, its mail needs no status read this cycle.
                report.links_seen_open.insert(link_id);
                if c.replaces {
                    report.links_replaced += 1;
                }
                tracing::info!(invoice = %c.reference, link = %link_ref, "link created");
                // Its real expiry next; the extend stage is done only after this one, so
                // it is still listening.
                handoff.unextended.set(handoff.unextended.get() + 1);
                let _ = extend.send(links::ToExtend {
                    link_id,
                    link_ref,
                    reference: c.reference.clone(),
                    due_date: c.data.due_date,
                });
            }
            Err(e @ (CmError::Permanent { .. } | CmError::Invalid(_))) => {
                let message = e.to_string();
                links::record_create_refused(db, link_id, c.invoice_id, &message, now)?;
                report.links_failed += 1;
                tracing::warn!(invoice = %c.reference, "CM refused the link for this revision: {message}");
            }
            Err(e) => {
                let mut message = e.to_string();
                if e.maybe_applied() {
                    let merchant = c.merchant_reference();
                    message.push_str(&format!(
                        "; CM may hold an unrecorded link with merchant reference {merchant} (never mailed; it stops being payable at its provisional expiry)"
                    ));
                    report.unanswered.push((c.reference.clone(), merchant));
                }
                links::record_create_deferred(db, link_id, &message, e.maybe_applied())?;
                note_failure(&mut report, &e);
                tracing::warn!(invoice = %c.reference, "link creation left for the next cycle: {message}");
            }
        }
        Ok(())
    })
    .await?;
    Ok(mismatched)
}

/// Whether CM says it holds another amount than the revision asks (an absent echo is
/// not a difference: the document does not promise one).
fn echoed_amount_differs(link: &crate::cm::PaymentLink, c: &ToCreate) -> bool {
    link.amount.is_some()
        && link.amount_minor(c.data.currency().exponent()) != Some(c.data.due.minor)
}
