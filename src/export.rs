//! `export-paid`: the CSV of payments received through payment links, for import into the
//! accounting software (README and ARCHITECTURE.md).
//!
//! Every paid link and every iDEAL QR payment (its transaction id in `link_ref`) is one
//! line, also for an invoice that was paid twice (the accounting
//! must see every payment it has to book or refund). Values a spreadsheet would run as a
//! formula are neutralised. This module only reads the database.

use std::io::Write;

use chrono::NaiveDate;
use rusqlite::{Connection, params};

use crate::domain::money::{exponent_of, format_minor};

/// The header, in the contract's order.
pub const HEADER: [&str; 5] = [
    "invoice_reference",
    "amount",
    "currency",
    "paid_at",
    "link_ref",
];

/// Writes the paid links (paid on or after `since`, when given) as CSV; returns the number
/// of payments written.
pub fn write_paid(
    conn: &Connection,
    since: Option<NaiveDate>,
    out: impl Write,
) -> anyhow::Result<usize> {
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
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut n = 0;
    let mut rows = stmt.query(params![since])?;
    while let Some(r) = rows.next()? {
        let reference: String = r.get(0)?;
        let minor: i64 = r.get(1)?;
        let currency: String = r.get(2)?;
        let paid_at: String = r.get(3)?;
        let link_ref: String = r.get(4)?;
        let exponent = exponent_of(&currency);
        w.write_record([
            neutralise(&reference).as_ref(),
            &format_minor(minor, exponent),
            neutralise(&currency).as_ref(),
            &paid_at,
            neutralise(&link_ref).as_ref(),
        ])?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// A text value as a spreadsheet must show it: one that starts like a formula (`=`, `+`,
/// `-`, `@`, or a tab / carriage return that some spreadsheets skip) gets a leading `'`.
pub fn neutralise(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+31"), "'+31");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("INV-1"), "INV-1");
        assert_eq!(neutralise(""), "");
    }
}
