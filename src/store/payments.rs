//! Payments received (paid links and iDEAL QR payments), as `export-paid` lists them.
//! Only reads.

use super::Store;
use crate::domain::InvoiceRef;
use crate::domain::Timestamp;
use chrono::NaiveDate;
use rusqlite::params;

/// Where a payment came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    /// A payment link (its `links` row).
    Link,
    /// An iDEAL QR transaction (its `qr_transactions` row).
    Qr,
    /// A bank transfer matched from a statement (its `bank_entries` row).
    Transfer,
}

impl PaymentKind {
    /// Every kind.
    pub const ALL: [PaymentKind; 3] = [PaymentKind::Link, PaymentKind::Qr, PaymentKind::Transfer];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentKind::Link => "link",
            PaymentKind::Qr => "qr",
            PaymentKind::Transfer => "transfer",
        }
    }

    /// The `method` column of the CSV export: `link`, `ideal_qr` or `transfer`.
    pub fn method(self) -> &'static str {
        match self {
            PaymentKind::Link => "link",
            PaymentKind::Qr => "ideal_qr",
            PaymentKind::Transfer => "transfer",
        }
    }
}

/// One payment received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The invoice it paid.
    pub reference: InvoiceRef,
    /// The amount paid.
    pub amount: crate::domain::Money,
    /// When it was seen (RFC 3339 UTC).
    pub paid_at: Timestamp,
    /// The link ref, or the iDEAL QR transaction id.
    pub payment_ref: String,
    /// The customer's name on the revision it paid (may be empty).
    pub customer_name: String,
    /// Link or QR.
    pub kind: PaymentKind,
    /// Its row id (in `links` or `qr_transactions`).
    pub id: i64,
}

/// Which payments an export lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Seen on or after this day (UTC).
    pub since: Option<NaiveDate>,
    /// Seen on or before this day (UTC).
    pub until: Option<NaiveDate>,
    /// Only payments no earlier `--new` export wrote.
    pub only_new: bool,
    /// Also the transfers matched from the merchant's own statements (the CSV lists them;
    /// the camt.053 of the clearing account never does: the bank's own statement books
    /// them).
    pub transfers: bool,
}

/// The payments, as one query over links, QR transactions and matched transfers (`?1`
/// since, `?2` before, `?3` only new, `?4` with transfers), with the columns [`for_each_paid`] reads.
const PAID: &str =
    "SELECT reference, amount, currency, paid_at, payment_ref, customer_name, kind, id FROM (
         SELECT i.reference, l.amount_minor AS amount, l.currency, l.paid_at,
                l.link_ref AS payment_ref, r.customer_name, 'link' AS kind, l.id
         FROM links l JOIN invoices i ON i.id = l.invoice_id
         JOIN revisions r ON r.invoice_id = l.invoice_id AND r.revision = l.revision
         WHERE l.state = 'paid'
         UNION ALL
         SELECT i.reference, q.amount_cents, 'EUR', q.paid_at, q.cm_id, r.customer_name, 'qr', q.id
         FROM qr_transactions q JOIN invoices i ON i.id = q.invoice_id
         JOIN revisions r ON r.invoice_id = q.invoice_id AND r.revision = q.revision
         WHERE q.state = 'success'
         UNION ALL
         SELECT i.reference, b.amount_minor, b.currency, b.booking_date || 'T00:00:00Z',
                coalesce(b.bank_reference, 'bank entry ' || b.id), r.customer_name,
                'transfer', b.id
         FROM bank_entries b JOIN invoices i ON i.id = b.invoice_id
         JOIN revisions r ON r.invoice_id = i.id AND r.revision = i.revision
         WHERE ?4 = 1 AND b.outcome = 'matched') p
     WHERE (?1 IS NULL OR paid_at >= ?1) AND (?2 IS NULL OR paid_at < ?2)
       AND (?3 = 0 OR NOT EXISTS (SELECT 1 FROM statement_payments s
                                  WHERE s.kind = p.kind AND s.payment_id = p.id))";

fn bounds(filter: Filter) -> (Option<String>, Option<String>) {
    let since = filter.since.map(|d| format!("{d}T00:00:00Z"));
    let before = filter
        .until
        .and_then(|d| d.succ_opt())
        .map(|d| format!("{d}T00:00:00Z"));
    (since, before)
}

/// Calls `each` for every payment the filter selects, oldest first (by currency first
/// when `by_currency`), streaming: memory does not grow with the number of payments.
pub fn for_each_paid(
    db: &Store,
    filter: Filter,
    by_currency: bool,
    mut each: impl FnMut(Payment) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (since, before) = bounds(filter);
    let order = if by_currency {
        "ORDER BY currency, paid_at, reference"
    } else {
        "ORDER BY paid_at, reference"
    };
    let mut stmt = db.conn.prepare(&format!("{PAID} {order}"))?;
    let mut rows = stmt.query(params![since, before, filter.only_new, filter.transfers])?;
    while let Some(r) = rows.next()? {
        each(Payment {
            reference: r.get(0)?,
            amount: crate::domain::Money {
                minor: r.get(1)?,
                currency: r.get(2)?,
            },
            paid_at: r.get(3)?,
            payment_ref: r.get(4)?,
            customer_name: r.get(5)?,
            kind: r.get(6)?,
            id: r.get(7)?,
        })?;
    }
    Ok(())
}

/// Per currency, how many payments the filter selects and their sum in minor units.
pub fn totals(
    db: &Store,
    filter: Filter,
) -> anyhow::Result<Vec<(crate::domain::Currency, i64, i64)>> {
    let (since, before) = bounds(filter);
    let mut stmt = db.conn.prepare(&format!(
        "SELECT currency, count(*), sum(amount) FROM ({PAID}) GROUP BY currency ORDER BY currency"
    ))?;
    let rows = stmt.query_map(
        params![since, before, filter.only_new, filter.transfers],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
