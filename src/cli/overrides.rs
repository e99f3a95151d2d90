//! `deactivate` and `resend`: the operator's overrides for one invoice.

use super::*;
use crate::domain::InvoiceRef;

/// The invoice the operator named, when the database knows it. The name is read as an
/// export's reference is (trimmed, normalised), so it finds the invoice its export made.
fn known(db: &crate::store::Store, invoice: &str) -> anyhow::Result<Option<InvoiceRef>> {
    match InvoiceRef::parse(invoice) {
        Ok(reference) if invoices::exists(db, &reference)? => Ok(Some(reference)),
        _ => Ok(None),
    }
}

pub(super) fn deactivate(config: &Config, invoice: &str) -> anyhow::Result<Outcome> {
    let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
        return Ok(locked_outcome(config));
    };
    let store = open_existing(config)?;
    let db = &store;
    let Some(reference) = known(db, invoice)? else {
        return Ok(no_invoice(invoice));
    };
    let Some(target) = links::live_link_of(db, &reference)? else {
        return Ok(Outcome {
            exit: Exit::Fatal,
            message: Some(format!("the invoice {invoice:?} has no active link")),
        });
    };
    links::mark_deactivating(db, target.link_id, DeactivateReason::Operator)?;
    let result = runtime()?.block_on(async {
        let cm = CmConnection::open(config).await?;
        let r = cycle::deactivate_one(db, &cm.client, &target).await;
        cm.close().await;
        r
    });
    let link_ref = &target.link_ref;
    match result? {
        cycle::Deactivated::Inactive => {
            tracing::info!(invoice, link = %link_ref, "link deactivated by the operator");
            Ok(Outcome::ok())
        }
        cycle::Deactivated::Unknown => {
            tracing::warn!(invoice, link = %link_ref, "CM does not know the link; recorded as inactive");
            Ok(Outcome::ok())
        }
        cycle::Deactivated::Paid { double } => Ok(Outcome::attention(format!(
            "link {link_ref} of {invoice:?} was already paid; the invoice is recorded as paid{}",
            if double {
                " (it was paid twice: refund one)"
            } else {
                ""
            }
        ))),
        cycle::Deactivated::Left(why) => Ok(Outcome::attention(format!(
            "could not deactivate link {link_ref} of {invoice:?} now ({why}); it stays payable until the next cycle deactivates it"
        ))),
    }
}

pub(super) fn resend(config: &Config, invoice: &str) -> anyhow::Result<Outcome> {
    let store = open_existing(config)?;
    let Some(reference) = known(&store, invoice)? else {
        return Ok(no_invoice(invoice));
    };
    match crate::store::outbox::requeue(&store, &reference, crate::clock::timestamp())? {
        Some(_) => {
            tracing::info!(invoice, "mail queued again; the next cycle sends it");
            Ok(Outcome::ok())
        }
        None => Ok(Outcome {
            exit: Exit::Fatal,
            message: Some(format!(
                "the invoice {invoice:?} has no active link to mail (see `status {invoice}`)"
            )),
        }),
    }
}

/// The sentence for a reference no export ever listed.
fn no_invoice(invoice: &str) -> Outcome {
    Outcome {
        exit: Exit::Fatal,
        message: Some(format!(
            "no invoice {invoice:?}: no export has listed that reference (see `status`)"
        )),
    }
}
