//! `export-paid`: the CSV of payments received through payment links, for import into the
//! accounting software (README and ARCHITECTURE.md).
//!
//! Every paid link and every iDEAL QR payment (its transaction id in `link_ref`) is one
//! line, also for an invoice that was paid twice (the accounting
//! must see every payment it has to book or refund). Values a spreadsheet would run as a
//! formula are neutralised. It formats; the query is the store's.

use std::io::Write;

use chrono::NaiveDate;
use rusqlite::Connection;

use crate::domain::money::format_minor;
use crate::store::payments;

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
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut n = 0;
    payments::for_each_paid(conn, since, |p| {
        w.write_record([
            neutralise(&p.reference).as_ref(),
            &format_minor(p.amount.minor, p.amount.currency.exponent()),
            p.amount.currency.code(),
            &p.paid_at,
            neutralise(&p.payment_ref).as_ref(),
        ])?;
        n += 1;
        Ok(())
    })?;
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
