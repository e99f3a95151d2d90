//! The link step: deactivate the links that must go, then create the missing ones, each
//! intent committed before its request; a link CM records with another amount is
//! switched off at once.

use anyhow::Context;
use chrono::{Days, NaiveDate, Utc};
use futures_util::StreamExt;
use rusqlite::Connection;

use super::{Report, check_time, note_failure};
use crate::cm::{CmClient, CmError, CreateLink, LinkStatus};
use crate::config::Config;
use crate::domain::money::exponent_of;
use crate::store::links::{self, ToCreate};
use crate::store::now_text;
use crate::store::outbox::{self, MailKind};

pub(super) async fn deactivate_step(
    conn: &Connection,
    cfg: &Config,
    cm: &CmClient,
    report: &mut Report,
) -> anyhow::Result<()> {
    let list = links::plan_deactivations(conn)?;
    if list.is_empty() {
        return Ok(());
    }
    conn.execute_batch("BEGIN")?;
    for d in &list {
        links::mark_deactivating(conn, d.link_id, d.reason)?;
    }
    conn.execute_batch("COMMIT")?;
    let mut results = futures_util::stream::iter(list)
        .map(|d| async move {
            let r = cm.deactivate_link(&d.link_ref).await;
            (d, r)
        })
        .buffer_unordered(cfg.cm.max_in_flight);
    while let Some((d, result)) = results.next().await {
        let now = now_text();
        match result {
            Ok(link) if link.status == LinkStatus::Paid => {
                // Paid before it could be switched off: the payment is what happened.
                if links::record_paid(conn, d.link_id, d.invoice_id, &now)? {
                    report.double_payments.push(d.reference.clone());
                }
                report.payments_seen += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref,
                    "the link to deactivate was already paid; the invoice is recorded as paid");
            }
            Ok(_) => {
                links::record_deactivated(conn, d.link_id, None, &now)?;
                report.links_deactivated += 1;
                tracing::info!(invoice = %d.reference, link = %d.link_ref, reason = d.reason.as_str(), "link deactivated");
            }
            Err(e) if e.is_not_found() => {
                links::record_deactivated(
                    conn,
                    d.link_id,
                    Some("CM no longer knows this link"),
                    &now,
                )?;
                report.links_deactivated += 1;
                tracing::warn!(invoice = %d.reference, link = %d.link_ref, "CM does not know the link to deactivate; recorded as inactive");
            }
            Err(e) => {
                let message = e.to_string();
                links::record_link_error(conn, d.link_id, &message)?;
                note_failure(report, &e);
                tracing::warn!(invoice = %d.reference, link = %d.link_ref, "deactivation left for the next cycle: {message}");
            }
        }
    }
    Ok(())
}

/// The fields of the create request for one invoice revision.
pub fn create_request(c: &ToCreate, cfg: &Config, today: NaiveDate) -> CreateLink {
    let exponent = exponent_of(&c.data.currency);
    let language = c
        .data
        .language
        .clone()
        .unwrap_or_else(|| cfg.cm.default_language.clone())
        .to_uppercase();
    let country = c
        .data
        .country_code
        .clone()
        .unwrap_or_else(|| cfg.cm.default_country.clone())
        .to_uppercase();
    CreateLink {
        amount_minor: c.data.due_minor,
        exponent,
        currency_code: c.data.currency.clone(),
        invoice_reference: c.reference.clone(),
        invoice_due_date: format!("{}T00:00:00+00:00", c.data.due_date),
        merchant_reference: c.merchant_reference(),
        language_code: language,
        country_code: country,
        expiry_date: expiry_date(&c.data.due_date, cfg.cm.link_expiry_days_after_due, today),
        callback_url: cfg.cm.callback_url.clone(),
    }
}

/// `link_expiry_days_after_due` days after the due date, at the end of that day (UTC);
/// for an invoice already that far overdue, the same number of days from today, so that
/// a link is never born expired.
pub fn expiry_date(due: &str, days: Option<u32>, today: NaiveDate) -> Option<String> {
    let days = days?;
    let due = NaiveDate::parse_from_str(due, "%Y-%m-%d").ok()?;
    let mut expiry = due.checked_add_days(Days::new(days.into()))?;
    if expiry <= today {
        expiry = today.checked_add_days(Days::new(days.max(1).into()))?;
    }
    Some(format!("{expiry}T23:59:59+00:00"))
}

pub(super) async fn create_step(
    conn: &Connection,
    cfg: &Config,
    cm: &CmClient,
    report: &mut Report,
) -> anyhow::Result<()> {
    let plan = links::plan_creates(conn)?;
    if plan.is_empty() {
        return Ok(());
    }
    let today = Utc::now().date_naive();
    let mut mismatched = false;
    let mut results = futures_util::stream::iter(plan)
        .map(|c| {
            // Runs when the stream pulls the item, just before the request is built: the
            // intent is committed before anything is sent.
            let request = create_request(&c, cfg, today);
            let intent =
                links::record_intent(conn, &c, request.expiry_date.as_deref(), &now_text());
            async move {
                let outcome = match intent {
                    Ok(link_id) => Ok((link_id, cm.create_link(&request).await)),
                    Err(e) => Err(e),
                };
                (c, outcome)
            }
        })
        .buffer_unordered(cfg.cm.max_in_flight);
    while let Some((c, outcome)) = results.next().await {
        let (link_id, result) = outcome.context("cannot record the intent to create a link")?;
        crate::failpoint("link-after-create");
        let now = now_text();
        match result {
            Ok(link) if echoed_amount_differs(&link, &c) => {
                // CM holds another amount than the invoice asks: never announce it.
                let message = format!(
                    "CM recorded the amount {} for a link that asked {}; the link is switched off and was not mailed",
                    link.amount.as_deref().unwrap_or("?"),
                    crate::domain::money::format_minor(
                        c.data.due_minor,
                        exponent_of(&c.data.currency)
                    )
                );
                links::record_amount_mismatch(
                    conn,
                    link_id,
                    c.invoice_id,
                    &link.reference,
                    &link.uri,
                    &message,
                    &now,
                )?;
                report.links_failed += 1;
                mismatched = true;
                tracing::error!(invoice = %c.reference, link = %link.reference, "{message}");
            }
            Ok(link) => {
                let next = check_time(Utc::now(), 0);
                // The link and the mail announcing it are one fact: one transaction.
                conn.execute_batch("BEGIN IMMEDIATE")?;
                let recorded =
                    links::record_created(conn, link_id, &link.reference, &link.uri, &now, &next)
                        .and_then(|()| {
                            let kind = if c.replaces {
                                MailKind::Replacement
                            } else {
                                MailKind::Link
                            };
                            outbox::enqueue(conn, c.invoice_id, c.revision, link_id, kind, &now)
                        });
                match recorded {
                    Ok(_) => conn.execute_batch("COMMIT")?,
                    Err(e) => {
                        conn.execute_batch("ROLLBACK")?;
                        return Err(e.into());
                    }
                }
                report.links_created += 1;
                if c.replaces {
                    report.links_replaced += 1;
                }
                tracing::info!(invoice = %c.reference, link = %link.reference, "link created");
            }
            Err(e @ (CmError::Permanent { .. } | CmError::Invalid(_))) => {
                let message = e.to_string();
                links::record_create_refused(conn, link_id, c.invoice_id, &message, &now)?;
                report.links_failed += 1;
                tracing::warn!(invoice = %c.reference, "CM refused the link for this revision: {message}");
            }
            Err(e) => {
                let message = e.to_string();
                links::record_create_deferred(conn, link_id, &message, e.maybe_applied())?;
                note_failure(report, &e);
                tracing::warn!(invoice = %c.reference, "link creation left for the next cycle: {message}");
            }
        }
    }
    drop(results);
    if mismatched {
        Box::pin(deactivate_step(conn, cfg, cm, report)).await?;
    }
    Ok(())
}

/// Whether CM says it holds another amount than the revision asks (an absent echo is
/// not a difference: the document does not promise one).
fn echoed_amount_differs(link: &crate::cm::PaymentLink, c: &ToCreate) -> bool {
    link.amount.is_some()
        && link.amount_minor(exponent_of(&c.data.currency)) != Some(c.data.due_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_after_the_due_date_and_never_in_the_past() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(expiry_date("2026-12-01", None, today), None);
        assert_eq!(
            expiry_date("2026-12-01", Some(14), today).as_deref(),
            Some("2026-12-15T23:59:59+00:00")
        );
        assert_eq!(
            expiry_date("2026-01-01", Some(14), today).as_deref(),
            Some("2026-12-05T23:59:59+00:00")
        );
    }
}
