//! [`Timestamp`]: an instant to the second, in UTC, the one form every time the program
//! records takes, from the clock to the database and back.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use super::DomainError;

/// An instant, to the second, in UTC. It is stored as one text form,
/// `2026-12-07T10:00:00Z`, so that two stored instants compare as their texts do (the
/// store's queries compare them in SQL); it reads back any RFC 3339 form (an offset of
/// `+00:00`, another zone), so rows older than the one form still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The instant, cut to the second.
    pub fn at(t: DateTime<Utc>) -> Timestamp {
        use chrono::Timelike;
        Timestamp(t.with_nanosecond(0).unwrap_or(t))
    }

    /// Reads an RFC 3339 time with any offset.
    pub fn parse(s: &str) -> Result<Timestamp, DomainError> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Timestamp::at(t.with_timezone(&Utc)))
            .map_err(|e| DomainError(format!("{s:?} is not an RFC 3339 time: {e}")))
    }

    /// The instant, for arithmetic and for local dates.
    pub fn instant(self) -> DateTime<Utc> {
        self.0
    }

    /// The one stored form: `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn to_text(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Timestamp {
        Timestamp::at(t)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_whatever_form_it_was_read_from() {
        for text in [
            "2026-11-23T10:11:12Z",
            "2026-11-23T10:11:12+00:00",
            "2026-11-23T11:11:12+01:00",
            "2026-11-23T10:11:12.999Z",
        ] {
            assert_eq!(
                Timestamp::parse(text).unwrap().to_text(),
                "2026-11-23T10:11:12Z",
                "{text}"
            );
        }
        assert!(Timestamp::parse("2026-11-23").is_err());
        assert!(Timestamp::parse("").is_err());
    }

    #[test]
    fn texts_compare_as_the_instants_do() {
        let a = Timestamp::parse("2026-11-23T23:59:59+01:00").unwrap();
        let b = Timestamp::parse("2026-11-23T23:00:00Z").unwrap();
        assert!(a < b);
        assert!(a.to_text() < b.to_text());
    }
}
