//! Payments received (paid links and iDEAL QR payments), as `export-paid` lists them.
//! Only reads.

use chrono::NaiveDate;
use rusqlite::{Connection, params};

/// One payment received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The invoice it paid.
    pub reference: String,
    /// The amount paid.
    pub amount: crate::domain::Money,
    /// When it was seen (RFC 3339 UTC).
    pub paid_at: String,
    /// The link ref, or the iDEAL QR transaction id.
    pub payment_ref: String,
}

/// Calls `each` for every payment seen on or after `since` (all when `None`), oldest
/// first, streaming: memory does not grow with the number of payments.
pub fn for_each_paid(
    conn: &Connection,
    since: Option<NaiveDate>,
    mut each: impl FnMut(Payment) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let since = since.map(|d| format!("{d}T00:00:00Z"));
    let mut stmt = conn.prepare(
        "SELECT reference, amount, currency, paid_at, payment_ref FROM (
             SELECT i.reference, l.amount_minor AS amount, l.currency, l.paid_at,
                    l.link_ref AS payment_ref
             FROM links l JOIN invoices i ON i.id = l.invoice_id
             WHERE l.state = 'paid'
             UNION ALL
             SELECT i.reference, q.amount_cents, 'EUR', q.paid_at, q.cm_id
             FROM qr_transactions q JOIN invoices i ON i.id = q.invoice_id
             WHERE q.state = 'success')
         WHERE ?1 IS NULL OR paid_at >= ?1
         ORDER BY paid_at, reference",
    )?;
    let mut rows = stmt.query(params![since])?;
    while let Some(r) = rows.next()? {
        each(Payment {
            reference: r.get(0)?,
            amount: crate::domain::Money {
                minor: r.get(1)?,
                currency: r.get(2)?,
            },
            paid_at: r.get(3)?,
            payment_ref: r.get(4)?,
        })?;
    }
    Ok(())
}
