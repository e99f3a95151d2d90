//! How the validated domain values cross into SQL and back: each is stored as the text
//! it is known by (`EUR`, `nl`, `NL`, the address, the name) and read back through its
//! own `parse`, so no caller re-parses a column and a stored value that no longer
//! validates is an error, never a silent default. Dates use rusqlite's `YYYY-MM-DD`.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::money::Currency;
use crate::domain::text::{CustomerName, EmailAddress};
use crate::domain::{Country, Language};

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

text_column!(Currency, code, Currency::parse);
text_column!(Language, as_str, Language::parse);
text_column!(Country, as_str, Country::parse);
text_column!(EmailAddress, as_str, EmailAddress::parse);
text_column!(CustomerName, as_str, CustomerName::parse);

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
}
