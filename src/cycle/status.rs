//! The payment status step: links and iDEAL QR transactions that are due (back-off,
//! callback, expiry) are read from the API and their outcome recorded.

use crate::store::Store;

use super::{Report, Services, fan_out, note_failure};
use crate::cm::idealqr::{self, QrStatus};
use crate::cm::{CmError, LinkStatus};
use crate::config::Config;
use crate::policy::backoff::check_time;
use crate::store::links::{self, ToCheck};
use crate::store::qr::{self as qr_store, QrToCheck};

/// At most this many status checks per cycle; the rest wait for the next one.
pub const STATUS_CHECKS_PER_CYCLE: usize = 2000;

/// Fetches the payment status of every link and QR transaction that is due (back-off,
/// callback or webhook, expiry) and records what it finds. Also used by the daemon right
/// after a callback.
pub async fn check_statuses(
    db: &Store,
    cfg: &Config,
    services: Services<'_>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cm = services.cm;
    let due = links::due_for_check(db, crate::clock::timestamp(), STATUS_CHECKS_PER_CYCLE)?;
    fan_out(
        due,
        cfg.cm.max_in_flight,
        |c| async move {
            let r = cm.link_status(&c.link_ref).await;
            (c, r)
        },
        |c, result| record_status(db, &c, result, report),
    )
    .await?;
    if let Some(qr) = services.qr {
        let due = qr_store::due_for_check(db, crate::clock::timestamp(), STATUS_CHECKS_PER_CYCLE)?;
        fan_out(
            due,
            cfg.cm.max_in_flight,
            |c| async move {
                let r = qr.get_transaction(&c.cm_id).await;
                (c, r)
            },
            |c, result| record_qr_status(db, &c, result, report),
        )
        .await?;
    }
    Ok(())
}

fn record_qr_status(
    db: &Store,
    c: &QrToCheck,
    result: Result<idealqr::QrTransaction, CmError>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let now = crate::clock::timestamp();
    match result.map(|t| t.status) {
        Ok(QrStatus::Success) => {
            if qr_store::record_success(db, c.id, c.invoice_id, now)? {
                report.double_payments.push(c.reference.clone());
                tracing::warn!(invoice = %c.reference, "paid twice: through its payment link and its iDEAL QR code; refund one");
            } else {
                tracing::info!(invoice = %c.reference, transaction = %c.cm_id, "paid through its iDEAL QR code");
            }
            report.payments_seen += 1;
        }
        Ok(status @ (QrStatus::Cancelled | QrStatus::Expired | QrStatus::Failure)) => {
            let ended = match status {
                QrStatus::Cancelled => qr_store::QrEnded::Cancelled,
                QrStatus::Expired => qr_store::QrEnded::Expired,
                _ => qr_store::QrEnded::Failure,
            };
            qr_store::record_ended(db, c.id, ended)?;
            tracing::info!(invoice = %c.reference, transaction = %c.cm_id, status = status.as_str(), "iDEAL QR transaction ended unpaid");
        }
        Ok(_) => {
            qr_store::record_checked(db, c.id, check_time(now, c.status_checks + 1))?;
        }
        Err(e) if e.is_not_found() => {
            qr_store::record_checked(db, c.id, check_time(now, c.status_checks + 1))?;
            tracing::warn!(invoice = %c.reference, transaction = %c.cm_id, "CM does not know this iDEAL QR transaction");
        }
        Err(e) => {
            note_failure(report, &e);
            tracing::warn!(invoice = %c.reference, "iDEAL QR status check left for the next cycle: {e}");
        }
    }
    Ok(())
}

fn record_status(
    db: &Store,
    c: &ToCheck,
    result: Result<LinkStatus, CmError>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let now = crate::clock::timestamp();
    match result {
        Ok(LinkStatus::Paid) => {
            if links::record_paid(db, c.link_id, c.invoice_id, now)? {
                report.double_payments.push(c.reference.clone());
            }
            report.payments_seen += 1;
            tracing::info!(invoice = %c.reference, link = %c.link_ref, "paid through its payment link");
        }
        Ok(_) if c.expired => {
            links::record_expired(db, c.link_id, now)?;
            tracing::info!(invoice = %c.reference, link = %c.link_ref, "the link expired unpaid");
        }
        Ok(status) => {
            if status == LinkStatus::Open {
                report.links_seen_open.insert(c.link_id);
            }
            links::record_checked(db, c.link_id, now, check_time(now, c.status_checks + 1))?;
        }
        Err(e) if e.is_not_found() => {
            links::record_checked(db, c.link_id, now, check_time(now, c.status_checks + 1))?;
            links::record_link_error(db, c.link_id, "CM does not know this link")?;
            tracing::warn!(invoice = %c.reference, link = %c.link_ref, "CM does not know this link");
        }
        Err(e) => {
            note_failure(report, &e);
            tracing::warn!(invoice = %c.reference, link = %c.link_ref, "status check left for the next cycle: {e}");
        }
    }
    Ok(())
}
