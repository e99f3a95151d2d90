//! The iDEAL QR step: withdraw the codes of revisions that moved on, then give each EUR
//! revision with an active link its transaction, intent first.

use crate::domain::InvoiceRef;
use crate::store::Store;
use anyhow::Context;
use chrono::NaiveDate;

use std::cell::RefCell;

use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Handoff, Report, fan_out_stream, note_failure, queue};
use crate::cm::CmError;
use crate::cm::idealqr::{self, CreateTransaction, IdealQrClient};
use crate::config::Config;
use crate::domain::{Currency, Timestamp};
use crate::policy::backoff::check_time;
use crate::policy::expiry::qr_expires_at;
use crate::store::qr::{self as qr_store, QrToCreate};

/// The QR request for one revision, expiring at `expires`, or why it gets none.
fn qr_request(
    q: &QrToCreate,
    cfg: &Config,
    expires: Timestamp,
) -> Result<CreateTransaction, String> {
    if q.data.currency() != Currency::EUR {
        return Err(format!(
            "no iDEAL QR code: the invoice is in {}, iDEAL QR takes EUR only",
            q.data.currency()
        ));
    }
    if !idealqr::amount_in_range(q.data.due.minor) {
        return Err(format!(
            "no iDEAL QR code: {} cents is outside iDEAL QR's 1..99999999",
            q.data.due.minor
        ));
    }
    let description: String = cfg
        .ideal_qr
        .description
        .replace("{invoice_reference}", q.reference.as_str())
        .chars()
        .take(255)
        .collect();
    let purchase_id = idealqr::purchase_id(q.reference.as_str(), q.revision);
    let webhook_url = cfg.cm.callback_url.as_ref().map(|u| {
        let sep = if u.contains('?') { '&' } else { '?' };
        format!("{u}{sep}idealqr={purchase_id}")
    });
    Ok(CreateTransaction {
        reference: q.reference.clone(),
        amount_cents: q.data.due.minor,
        currency: "EUR".into(),
        purchase_id,
        description,
        expires_at: expires.to_text(),
        size: cfg.ideal_qr.size,
        return_url: cfg.ideal_qr.return_url.clone().unwrap_or_default(),
        language: q
            .data
            .language
            .map(|l| l.as_str().to_string())
            .unwrap_or_else(|| cfg.cm.default_language.to_string()),
        webhook_url,
    })
}

/// Withdraws the QR codes of revisions that moved on; returns the revisions earlier
/// cycles left without their QR transaction (the QR stage's own work).
pub(super) fn plan(db: &Store) -> anyhow::Result<Vec<QrToCreate>> {
    let withdrawn = qr_store::withdraw_stale(db)?;
    if withdrawn > 0 {
        tracing::info!(
            withdrawn,
            "iDEAL QR codes of replaced or settled invoices are no longer offered (they stay payable until they expire and are still followed)"
        );
    }
    Ok(qr_store::plan_creates(db)?)
}

/// One item of the QR stage.
enum QrItem {
    /// A revision an earlier cycle left without its code.
    Planned(Box<QrToCreate>),
    /// A link given its real expiry in this cycle (its mail is held until this item is
    /// done).
    Extended(i64),
}

/// What became of one item by the time its answer is recorded.
enum Done {
    /// Nothing to make (the revision has its code, or moved on).
    Nothing,
    /// No code for this revision (another currency, an amount out of range): recorded.
    Skipped { reference: InvoiceRef, why: String },
    /// The request was sent (its intent committed first).
    Answer {
        q: Box<QrToCreate>,
        id: i64,
        result: Result<idealqr::QrTransaction, CmError>,
    },
}

/// Gives every revision with an extended active link its QR transaction (EUR, in
/// range), intent first: `planned` ones, then each link as the extend stage sends it.
/// Each item done releases the link's mail.
pub(super) async fn qr_step(
    db: &Store,
    cfg: &Config,
    client: &IdealQrClient,
    report: &RefCell<Report>,
    planned: Vec<QrToCreate>,
    extended: UnboundedReceiver<i64>,
    handoff: &Handoff,
) -> anyhow::Result<()> {
    let today = crate::clock::now().date_naive();
    let items =
        futures_util::stream::iter(planned.into_iter().map(|q| QrItem::Planned(Box::new(q))))
            .chain(queue(extended).map(QrItem::Extended));
    let request = |item: QrItem| {
        // Runs when the item's turn comes: the intent is committed just before the
        // request is sent.
        let link_id = match &item {
            QrItem::Planned(q) => q.link_id,
            QrItem::Extended(id) => *id,
        };
        let prepared = prepare(db, cfg, today, item);
        async move {
            let done = match prepared {
                Ok(Prepared::Send { q, id, req }) => Ok(Done::Answer {
                    result: client.create_transaction(&req).await,
                    q,
                    id,
                }),
                Ok(Prepared::Done(done)) => Ok(done),
                Err(e) => Err(e),
            };
            (link_id, done)
        }
    };
    fan_out_stream(items, cfg.cm.max_in_flight, request, |link_id, done| {
        let recorded = record(db, &mut report.borrow_mut(), done?);
        // Whatever became of the code, the link's mail may go now.
        handoff.held.borrow_mut().remove(&link_id);
        handoff.mail_may_be_due();
        recorded
    })
    .await
}

enum Prepared {
    Send {
        q: Box<QrToCreate>,
        id: i64,
        req: CreateTransaction,
    },
    Done(Done),
}

fn prepare(db: &Store, cfg: &Config, today: NaiveDate, item: QrItem) -> anyhow::Result<Prepared> {
    let q = match item {
        QrItem::Planned(q) => *q,
        QrItem::Extended(link_id) => match qr_store::plan_for_link(db, link_id)? {
            Some(q) => q,
            None => return Ok(Prepared::Done(Done::Nothing)),
        },
    };
    // Computed once: the expiry asked of CM is the one the intent records.
    let expires = qr_expires_at(q.link_expiry, q.data.due_date, today);
    match qr_request(&q, cfg, expires) {
        Err(why) => {
            let pid = idealqr::purchase_id(q.reference.as_str(), q.revision);
            qr_store::record_skipped(db, &q, &pid, &why, crate::clock::timestamp())?;
            Ok(Prepared::Done(Done::Skipped {
                reference: q.reference,
                why,
            }))
        }
        Ok(req) => {
            let id = qr_store::record_intent(
                db,
                &q,
                &req.purchase_id,
                expires,
                crate::clock::timestamp(),
            )
            .context("cannot record the intent to create an iDEAL QR transaction")?;
            Ok(Prepared::Send {
                q: Box::new(q),
                id,
                req,
            })
        }
    }
}

fn record(db: &Store, report: &mut Report, done: Done) -> anyhow::Result<()> {
    let (q, id, result) = match done {
        Done::Nothing => return Ok(()),
        Done::Skipped { reference, why } => {
            report.qr_skipped += 1;
            tracing::info!(invoice = %reference, "{why}");
            return Ok(());
        }
        Done::Answer { q, id, result } => (q, id, result),
    };
    match result {
        Ok(t) if t.amount_cents.is_some_and(|a| a != q.data.due.minor) => {
            // Another amount than asked: never offered, still followed (it may be paid).
            let next = check_time(crate::clock::timestamp(), 0);
            qr_store::record_created(db, id, &t.id, t.qr_url.as_deref(), next)?;
            let why = format!(
                "CM recorded {} cents for an iDEAL QR transaction that asked {}; it is not offered",
                t.amount_cents.unwrap_or_default(),
                q.data.due.minor
            );
            qr_store::withdraw(db, id, &why)?;
            report.qr_skipped += 1;
            tracing::error!(invoice = %q.reference, transaction = %t.id, "{why}");
        }
        Ok(t) => {
            qr_store::record_created(
                db,
                id,
                &t.id,
                t.qr_url.as_deref(),
                check_time(crate::clock::timestamp(), 0),
            )?;
            report.qr_created += 1;
            tracing::info!(invoice = %q.reference, transaction = %t.id, "iDEAL QR transaction created");
        }
        Err(e @ (CmError::Permanent { .. } | CmError::Invalid(_))) => {
            let message = e.to_string();
            qr_store::record_refused(db, id, &message)?;
            report.qr_skipped += 1;
            tracing::warn!(invoice = %q.reference, "CM refused the iDEAL QR transaction (the link still works): {message}");
        }
        Err(e) => {
            let message = e.to_string();
            qr_store::record_deferred(db, id, &message, e.maybe_applied())?;
            note_failure(report, &e);
            tracing::warn!(invoice = %q.reference, "iDEAL QR creation left for the next cycle: {message}");
        }
    }
    Ok(())
}
