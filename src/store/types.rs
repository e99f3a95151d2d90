//! How the validated domain values cross into SQL and back: each is stored as the text
//! it is known by (`EUR`, `nl`, `NL`, the address, the name) and read back through its
//! own `parse`, so no caller re-parses a column and a stored value that no longer
//! validates is an error, never a silent default. Dates use rusqlite's `YYYY-MM-DD`.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::money::Currency;
use crate::domain::statement::{Booking, Direction};
use crate::domain::text::{CustomerName, EmailAddress, InvoiceRef, LinkRef, MerchantRef};
use crate::domain::{Country, CustomerType, Language, MailKind, ReminderKind, Timestamp};
use crate::store::bank::{MatchedBy, Outcome, PaidBy};
use crate::store::imports::ImportSource;
use crate::store::invoices::{RevisionReason, State};
use crate::store::links::{DeactivateReason, LinkState};
use crate::store::outbox::MailState;
use crate::store::payments::PaymentKind;

/// Reads a text column through `parse`.
fn parsed<T, E: std::fmt::Display>(
    value: ValueRef<'_>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> FromSqlResult<T> {
    let text = value.as_str()?;
    parse(text).map_err(|e| FromSqlError::Other(e.to_string().into()))
}

macro_rules! text_column {
    ($ty:ty, $as_str:ident, $parse:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                let text: &str = self.$as_str();
                Ok(ToSqlOutput::from(text))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                parsed(value, $parse)
            }
        }
    };
}

/// Stores an enum as its name (`as_str`) and reads it back by finding the value of that
/// name among all of its values: a name this program does not know (a newer program
/// wrote it, or a hand edit) is an error that names the column's text, never a default.
macro_rules! name_column {
    ($ty:ty, $what:literal, $all:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $all.into_iter()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| {
                        FromSqlError::Other(format!("unknown {} {text:?}", $what).into())
                    })
            }
        }
    };
}

name_column!(State, "invoice state", State::ALL);
name_column!(MailKind, "mail kind", MailKind::ALL);
name_column!(MailState, "mail state", MailState::ALL);
name_column!(ReminderKind, "reminder kind", ReminderKind::ALL);
name_column!(LinkState, "link state", LinkState::ALL);
name_column!(
    DeactivateReason,
    "deactivation reason",
    DeactivateReason::ALL
);
name_column!(PaymentKind, "payment kind", PaymentKind::ALL);
name_column!(ImportSource, "import source", ImportSource::ALL);
name_column!(RevisionReason, "revision reason", RevisionReason::ALL);
name_column!(Outcome, "bank entry outcome", Outcome::ALL);
name_column!(MatchedBy, "way of matching", MatchedBy::ALL);
name_column!(PaidBy, "way of paying", PaidBy::ALL);
name_column!(Direction, "credit/debit indicator", Direction::ALL);
name_column!(Booking, "entry status", Booking::ALL);

text_column!(Currency, code, Currency::parse);
text_column!(InvoiceRef, as_str, InvoiceRef::parse);
text_column!(MerchantRef, as_str, MerchantRef::parse);
text_column!(LinkRef, as_str, LinkRef::parse);

impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_text()))
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        parsed(value, Timestamp::parse)
    }
}
text_column!(Language, as_str, Language::parse);
text_column!(Country, as_str, Country::parse);
text_column!(EmailAddress, as_str, EmailAddress::parse);
text_column!(CustomerName, as_str, CustomerName::parse);
text_column!(CustomerType, as_str, CustomerType::parse);

/// A date bound as `YYYY-MM-DD`, written by hand: chrono's `%F` formatting took a tenth of
/// a million-row import's own time.
pub struct IsoDate(pub chrono::NaiveDate);

impl ToSql for IsoDate {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use chrono::Datelike;
        let (y, m, d) = (self.0.year(), self.0.month(), self.0.day());
        if !(0..=9999).contains(&y) {
            return Ok(ToSqlOutput::from(self.0.format("%Y-%m-%d").to_string()));
        }
        let digits = |n: u32, out: &mut [u8]| {
            let mut n = n;
            for b in out.iter_mut().rev() {
                *b = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        let mut text = [b'-'; 10];
        digits(y as u32, &mut text[..4]);
        digits(m, &mut text[5..7]);
        digits(d, &mut text[8..]);
        let text = String::from_utf8(text.to_vec()).expect("ASCII digits and dashes");
        Ok(ToSqlOutput::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn domain_values_round_trip_and_bad_text_is_an_error() {
        let conn = Connection::open_in_memory().unwrap();
        let (c, l, k): (Currency, Language, Country) = conn
            .query_row(
                "SELECT ?1, ?2, ?3",
                rusqlite::params![
                    Currency::parse("jpy").unwrap(),
                    Language::parse("NL").unwrap(),
                    Country::parse("be").unwrap()
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (c.code(), c.exponent(), l.as_str(), k.as_str()),
            ("JPY", 0, "nl", "BE")
        );
        let bad: rusqlite::Result<Currency> = conn.query_row("SELECT 'XYZ'", [], |r| r.get(0));
        assert!(bad.is_err());
    }

    #[test]
    fn every_stored_name_reads_back_and_an_unknown_one_is_an_error() {
        let conn = Connection::open_in_memory().unwrap();
        fn round<T: ToSql + FromSql + PartialEq + std::fmt::Debug + Copy>(
            conn: &Connection,
            values: &[T],
        ) {
            for v in values {
                let back: T = conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
                assert_eq!(back, *v);
            }
            let unknown: rusqlite::Result<T> =
                conn.query_row("SELECT 'no-such-name'", [], |r| r.get(0));
            let e = unknown.expect_err("an unknown name is an error, not a default");
            assert!(e.to_string().contains("\"no-such-name\""), "{e}");
        }
        round(&conn, &State::ALL);
        round(&conn, &MailKind::ALL);
        round(&conn, &MailState::ALL);
        round(&conn, &ReminderKind::ALL);
        round(&conn, &LinkState::ALL);
        round(&conn, &DeactivateReason::ALL);
        round(&conn, &PaymentKind::ALL);
        round(&conn, &ImportSource::ALL);
        round(&conn, &RevisionReason::ALL);
        round(&conn, &Outcome::ALL);
        round(&conn, &MatchedBy::ALL);
        round(&conn, &PaidBy::ALL);
        round(&conn, &Direction::ALL);
        round(&conn, &Booking::ALL);
    }

    #[test]
    fn iso_dates_are_written_as_chrono_writes_them() {
        for (y, m, d) in [
            (2027, 1, 5),
            (1999, 12, 31),
            (7, 3, 9),
            (12345, 6, 7),
            (-5, 1, 1),
        ] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let ToSqlOutput::Owned(rusqlite::types::Value::Text(t)) =
                IsoDate(date).to_sql().unwrap()
            else {
                panic!("text expected")
            };
            assert_eq!(t, date.format("%Y-%m-%d").to_string());
        }
    }
}
