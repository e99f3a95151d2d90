//! Column mapping and row validation: from a CSV record to a validated [`Row`], a skip,
//! or the list of reasons it was rejected (one per bad column).

use std::borrow::Cow;
use std::fmt::Display;

use chrono::NaiveDate;

use crate::config::{ColumnNames, Columns, CsvSettings};
use crate::domain::text::strip_invisible;
use crate::domain::{
    Country, Currency, CustomerName, CustomerType, EmailAddress, InvoiceRef, Language, Money,
};
use crate::store::invoices::RevisionData;

/// Positions of the configured columns in a file's header.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    reference: usize,
    email: usize,
    name: Option<usize>,
    amount: usize,
    outstanding: Option<usize>,
    currency: Option<usize>,
    due_date: usize,
    status: Option<usize>,
    language: Option<usize>,
    country: Option<usize>,
    customer_type: Option<usize>,
    /// The header names as written in the file, for reports.
    headers: Vec<String>,
}

impl ColumnMap {
    /// Maps the header; a missing required column is the reason the whole file is refused.
    pub fn from_header(header: &csv::ByteRecord, cols: &Columns) -> Result<ColumnMap, String> {
        let headers: Vec<String> = header
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_string()
            })
            .collect();
        let find = |names: &ColumnNames| headers.iter().position(|h| names.matches(h));
        // A column the config maps that the file names twice: which one holds the
        // amount (or the address) is a guess, so the file is refused, not read.
        let mapped = [
            &cols.invoice_reference,
            &cols.customer_email,
            &cols.customer_name,
            &cols.amount,
            &cols.outstanding,
            &cols.currency,
            &cols.due_date,
            &cols.status,
            &cols.language,
            &cols.country_code,
            &cols.customer_type,
        ];
        for names in mapped {
            let hits: Vec<usize> = headers
                .iter()
                .enumerate()
                .filter(|(_, h)| names.matches(h))
                .map(|(i, _)| i + 1)
                .collect();
            if hits.len() > 1 {
                return Err(format!(
                    "the header names the column {} {} times (columns {}); which one to read is a guess, so the file is not imported: rename or remove the extra one",
                    names.display(),
                    hits.len(),
                    hits.iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ));
            }
        }
        let mut missing = Vec::new();
        let mut required = |names: &ColumnNames| {
            find(names).unwrap_or_else(|| {
                missing.push(names.display());
                usize::MAX
            })
        };
        let reference = required(&cols.invoice_reference);
        let email = required(&cols.customer_email);
        let amount = required(&cols.amount);
        let due_date = required(&cols.due_date);
        if !missing.is_empty() {
            let list = missing.join(", ");
            let found = headers
                .iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let noun = if missing.len() == 1 {
                "column"
            } else {
                "columns"
            };
            return Err(format!(
                "the header lacks the required {noun} {list} (found {found}); \
                 map the export's names under [csv.columns]"
            ));
        }
        Ok(ColumnMap {
            reference,
            email,
            name: find(&cols.customer_name),
            amount,
            outstanding: find(&cols.outstanding),
            currency: find(&cols.currency),
            due_date,
            status: find(&cols.status),
            language: find(&cols.language),
            country: find(&cols.country_code),
            customer_type: find(&cols.customer_type),
            headers,
        })
    }

    /// The file's name for a column position.
    pub fn header(&self, idx: usize) -> &str {
        self.headers.get(idx).map(String::as_str).unwrap_or("?")
    }

    /// The reference column's header name.
    pub fn reference_header(&self) -> &str {
        self.header(self.reference)
    }
}

/// A valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The invoice reference.
    pub reference: InvoiceRef,
    /// What the revision asks of the customer.
    pub data: RevisionData,
    /// The export says it is paid (status in `paid_values`, or nothing outstanding).
    pub settled: bool,
    /// An outstanding balance below the amount: a partial payment elsewhere.
    pub partial: bool,
}

/// One reason a row was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The column, as named in the file.
    pub column: String,
    /// Why, in words or as a kind.
    pub reason: String,
}

/// What a record turned out to be.
#[derive(Debug)]
pub enum Checked {
    /// A valid row.
    Row(Row),
    /// A credit note (negative) or a zero amount: counted, not imported.
    Skipped(String),
    /// Every field empty (spreadsheets leave such lines): ignored.
    Blank,
    /// Refused, with every problem found.
    Rejected(Vec<Problem>),
}

/// Validates records against one file's column map and the `[csv]` settings.
pub struct Validator<'a> {
    map: &'a ColumnMap,
    settings: &'a CsvSettings,
    paid_values: Vec<String>,
    dates: DateFormats,
    due_range: DueRange,
}

/// The earliest due date taken: an earlier one is a typo (a two-digit year read as a
/// four-digit one), never an invoice.
pub const EARLIEST_DUE: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
/// The last day CM takes in a date: ISO 8601 dates have four-digit years.
pub const LAST_CM_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();

/// The due dates CM can take: from [`EARLIEST_DUE`] to the day whose link expiry (due
/// date + `cm.link_expiry_days_after_due`) is still [`LAST_CM_DATE`].
#[derive(Debug, Clone, Copy)]
pub struct DueRange {
    /// `cm.link_expiry_days_after_due`.
    days_after_due: u32,
    /// The last due date taken; `None` when the expiry days reach past 9999 from any.
    latest: Option<NaiveDate>,
}

impl DueRange {
    /// The range for links that expire `days_after_due` days after their due date.
    pub fn new(days_after_due: u32) -> DueRange {
        DueRange {
            days_after_due,
            latest: LAST_CM_DATE
                .checked_sub_days(chrono::Days::new(days_after_due.into()))
                .filter(|d| *d >= EARLIEST_DUE),
        }
    }

    /// Why `due` (read from `text`) cannot be a due date, or `None` when it can.
    pub fn check(&self, due: NaiveDate, text: &str) -> Option<String> {
        let days = self.days_after_due;
        if due < EARLIEST_DUE {
            return Some(format!(
                "the due date {} is before {EARLIEST_DUE}: a due date has a four-digit year from 1900 (a two-digit year?)",
                quote(text)
            ));
        }
        match self.latest {
            Some(latest) if due <= latest => None,
            Some(latest) => Some(format!(
                "the due date {} is after {latest}: its payment link would expire {days} day(s) later (cm.link_expiry_days_after_due), and CM takes no date after {LAST_CM_DATE}",
                quote(text)
            )),
            None => Some(format!(
                "the due date {} leaves no room for its payment link's expiry: cm.link_expiry_days_after_due = {days} reaches past {LAST_CM_DATE}, the last date CM takes",
                quote(text)
            )),
        }
    }
}

/// `csv.date_formats`, parsed once (chrono would re-read a format string on every call).
pub struct DateFormats(Vec<Vec<chrono::format::Item<'static>>>);

impl DateFormats {
    /// Parses the configured formats (validated when the config was loaded).
    pub fn new(formats: &[String]) -> DateFormats {
        DateFormats(
            formats
                .iter()
                .filter_map(|f| chrono::format::StrftimeItems::new(f).parse_to_owned().ok())
                .collect(),
        )
    }

    /// The first format that reads `s` as a whole.
    pub fn parse(&self, s: &str) -> Option<NaiveDate> {
        self.0.iter().find_map(|items| {
            let mut parsed = chrono::format::Parsed::new();
            chrono::format::parse(&mut parsed, s, items.iter()).ok()?;
            parsed.to_naive_date().ok()
        })
    }
}

impl<'a> Validator<'a> {
    /// A validator for one file. `days_after_due` (`cm.link_expiry_days_after_due`)
    /// bounds the due dates: a link's expiry must be a date CM takes.
    pub fn new(map: &'a ColumnMap, settings: &'a CsvSettings, days_after_due: u32) -> Self {
        Validator {
            map,
            settings,
            paid_values: settings
                .paid_values
                .iter()
                .map(|v| v.trim().to_lowercase())
                .collect(),
            dates: DateFormats::new(&settings.date_formats),
            due_range: DueRange::new(days_after_due),
        }
    }

    /// Checks one record: its fields' text, the values they hold, the rules between
    /// columns, then the row they make.
    pub fn check(&self, rec: &csv::ByteRecord) -> Checked {
        if rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            return Checked::Blank;
        }
        let mut problems = Problems::new(self.map);
        let fields = Fields::read(rec, self.map, &mut problems);
        let values = self.values(&fields, &mut problems);
        if let Some(why) = skipped(values.amount, &problems) {
            return Checked::Skipped(why);
        }
        self.check_outstanding(&fields, &values, &mut problems);
        if !problems.found.is_empty() {
            return Checked::Rejected(problems.found);
        }
        self.row(&fields.status, values)
    }

    /// Reads each field's value, in the order their problems are reported: the currency
    /// before the amounts it scales.
    fn values(&self, f: &Fields, problems: &mut Problems) -> Values {
        let m = self.map;
        let reference = problems.parse(m.reference, &f.reference, InvoiceRef::parse);
        let email = problems.parse(m.email, &f.email, EmailAddress::parse);
        let name = problems.parse(m.name, &f.name, CustomerName::parse);
        let currency = match f.currency.as_deref() {
            None => Some(Currency::EUR),
            Some(c) => problems.parse(m.currency, c, Currency::parse),
        };
        let sep = self.settings.decimal_separator;
        let money_currency = currency.unwrap_or(Currency::EUR);
        let money = |s: &str| Money::parse(s, sep, money_currency).map(|v| v.minor);
        Values {
            reference,
            email,
            name,
            currency,
            amount: problems.required(m.amount, &f.amount, "the amount is empty", money),
            outstanding: problems.optional(m.outstanding, f.outstanding.as_deref(), money),
            due_date: problems.required(m.due_date, &f.due_date, "the due date is empty", |s| {
                self.due_date(s)
            }),
            language: problems.optional(m.language, f.language.as_deref(), Language::parse),
            country: problems.optional(m.country, f.country.as_deref(), Country::parse),
            customer_type: problems.optional(
                m.customer_type,
                f.customer_type.as_deref(),
                CustomerType::parse,
            ),
        }
    }

    /// The rule between columns: the outstanding balance is at most the amount.
    fn check_outstanding(&self, f: &Fields, v: &Values, problems: &mut Problems) {
        if let (Some(a), Some(o)) = (v.amount, v.outstanding)
            && o > a
        {
            problems.push(
                self.map.outstanding,
                format!(
                    "the outstanding balance {} is more than the amount {}",
                    quote(f.outstanding.as_deref().unwrap_or("")),
                    quote(&f.amount)
                ),
            );
        }
    }

    /// The row that values without a problem make; `status` says whether it is paid.
    fn row(&self, status: &str, v: Values) -> Checked {
        let (
            Some(reference),
            Some(email),
            Some(name),
            Some(currency),
            Some(amount_minor),
            Some(due_date),
        ) = (
            v.reference,
            v.email,
            v.name,
            v.currency,
            v.amount,
            v.due_date,
        )
        else {
            // Every None above pushed a problem, so this is unreachable in practice;
            // refuse rather than guess.
            return Checked::Rejected(vec![Problem {
                column: self.map.reference_header().to_string(),
                reason: "the row could not be read".into(),
            }]);
        };
        let due_minor = v.outstanding.unwrap_or(amount_minor);
        let settled = self.is_paid(status) || due_minor <= 0;
        let partial = !settled && due_minor < amount_minor;
        Checked::Row(Row {
            reference,
            data: RevisionData {
                customer_email: email,
                customer_name: name,
                amount: Money {
                    minor: amount_minor,
                    currency,
                },
                due: Money {
                    minor: due_minor,
                    currency,
                },
                due_date,
                language: v.language,
                country: v.country,
                customer_type: v.customer_type,
            },
            settled,
            partial,
        })
    }

    /// Whether the status is one of `csv.paid_values` (case-insensitive).
    fn is_paid(&self, status: &str) -> bool {
        !status.is_empty() && self.paid_values.contains(&status.to_lowercase())
    }

    /// The due date `text` holds, or why it is not one CM can take.
    fn due_date(&self, text: &str) -> Result<NaiveDate, String> {
        let date = self.dates.parse(text).ok_or_else(|| {
            format!(
                "{} is not a date in any of the formats {}",
                quote(text),
                self.settings.date_formats.join(", ")
            )
        })?;
        match self.due_range.check(date, text) {
            None => Ok(date),
            Some(why) => Err(why),
        }
    }
}

/// One record's fields as text, without bidirectional controls and invisible format
/// characters (what is validated, and stored, and mailed, is what shows) and trimmed. A
/// field that is not there (a column the file lacks, a short record, bytes that are not
/// UTF-8) is empty text; the `Option` ones are also `None` when empty.
struct Fields<'r> {
    reference: Cow<'r, str>,
    email: Cow<'r, str>,
    name: Cow<'r, str>,
    amount: Cow<'r, str>,
    outstanding: Option<Cow<'r, str>>,
    currency: Option<Cow<'r, str>>,
    due_date: Cow<'r, str>,
    status: Cow<'r, str>,
    language: Option<Cow<'r, str>>,
    country: Option<Cow<'r, str>>,
    customer_type: Option<Cow<'r, str>>,
}

impl<'r> Fields<'r> {
    /// Reads the fields in the column map's order, which is the order a field whose bytes
    /// are not UTF-8 is reported in.
    fn read(rec: &'r csv::ByteRecord, m: &ColumnMap, problems: &mut Problems) -> Fields<'r> {
        let mut text = |idx: Option<usize>| field_text(rec, idx, problems);
        Fields {
            reference: text(Some(m.reference)).unwrap_or_default(),
            email: text(Some(m.email)).unwrap_or_default(),
            name: text(m.name).unwrap_or_default(),
            amount: text(Some(m.amount)).unwrap_or_default(),
            outstanding: non_empty(text(m.outstanding)),
            currency: non_empty(text(m.currency)),
            due_date: text(Some(m.due_date)).unwrap_or_default(),
            status: text(m.status).unwrap_or_default(),
            language: non_empty(text(m.language)),
            country: non_empty(text(m.country)),
            customer_type: non_empty(text(m.customer_type)),
        }
    }
}

/// The text of the field at `idx` (see [`Fields`]); `None` for a column the file lacks,
/// beyond the record's end, or (a problem) not UTF-8.
fn field_text<'r>(
    rec: &'r csv::ByteRecord,
    idx: Option<usize>,
    problems: &mut Problems,
) -> Option<Cow<'r, str>> {
    let idx = idx?;
    let Ok(s) = std::str::from_utf8(rec.get(idx)?) else {
        problems.push(
            idx,
            "the value is not valid UTF-8 (set csv.encoding)".into(),
        );
        return None;
    };
    Some(match strip_invisible(s) {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    })
}

/// The text of an optional field, `None` when empty.
fn non_empty(text: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    text.filter(|s| !s.is_empty())
}

/// What one record's fields hold: `None` where a field has a problem or an optional one
/// is empty. Amounts are in minor units of the currency.
struct Values {
    reference: Option<InvoiceRef>,
    email: Option<EmailAddress>,
    name: Option<CustomerName>,
    currency: Option<Currency>,
    amount: Option<i64>,
    outstanding: Option<i64>,
    due_date: Option<NaiveDate>,
    language: Option<Language>,
    country: Option<Country>,
    customer_type: Option<CustomerType>,
}

/// Why a credit note or zero amount is skipped: only when nothing else is wrong with the
/// row (the amount included); otherwise it is an ordinary rejection.
fn skipped(amount: Option<i64>, problems: &Problems) -> Option<String> {
    let a = amount.filter(|a| *a <= 0 && problems.found.is_empty())?;
    let what = if a < 0 {
        "a negative amount (credit note)"
    } else {
        "a zero amount"
    };
    Some(format!("{what} is not invoiced"))
}

/// The problems found in one record, in the order they were found.
struct Problems<'m> {
    map: &'m ColumnMap,
    found: Vec<Problem>,
}

impl<'m> Problems<'m> {
    fn new(map: &'m ColumnMap) -> Self {
        Problems {
            map,
            found: Vec::new(),
        }
    }

    /// Records `reason` against the column at `column` (`?` for one the file lacks).
    fn push(&mut self, column: impl Into<Option<usize>>, reason: String) {
        let idx = column.into().unwrap_or(usize::MAX);
        self.found.push(Problem {
            column: self.map.header(idx).to_string(),
            reason,
        });
    }

    /// What `parse` reads from `text`, or `None` with its error recorded against `column`.
    fn parse<T, E: Display>(
        &mut self,
        column: impl Into<Option<usize>>,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match parse(text) {
            Ok(value) => Some(value),
            Err(e) => {
                self.push(column, e.to_string());
                None
            }
        }
    }

    /// [`Problems::parse`] for a field that must hold a value: `empty` is the problem
    /// when there is no text.
    fn required<T, E: Display>(
        &mut self,
        column: usize,
        text: &str,
        empty: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        if text.is_empty() {
            self.push(column, empty.to_string());
            return None;
        }
        self.parse(column, text, parse)
    }

    /// [`Problems::parse`] for a field that may be left out: no text is no value and no
    /// problem.
    fn optional<T, E: Display>(
        &mut self,
        column: Option<usize>,
        text: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        self.parse(column, text?, parse)
    }
}

/// The first of `formats` that reads `s` as a whole.
pub fn parse_date(s: &str, formats: &[String]) -> Option<NaiveDate> {
    DateFormats::new(formats).parse(s)
}

fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(40).collect();
    if q.len() < s.len() {
        q.push('…');
    }
    format!("\"{q}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    fn map_for(header: &[&str], settings: &CsvSettings) -> ColumnMap {
        ColumnMap::from_header(&rec(header), &settings.columns).unwrap()
    }

    const HEADER: &[&str] = &[
        "invoice_reference",
        "customer_email",
        "customer_name",
        "amount",
        "due_date",
        "status",
        "outstanding",
        "currency",
        "language",
        "country_code",
    ];

    fn check(fields: &[&str]) -> Checked {
        let s = CsvSettings::default();
        let m = map_for(HEADER, &s);
        Validator::new(&m, &s, 30).check(&rec(fields))
    }

    fn row(fields: &[&str]) -> Row {
        match check(fields) {
            Checked::Row(r) => r,
            other => panic!("expected a row, got {other:?}"),
        }
    }

    fn problems(fields: &[&str]) -> Vec<Problem> {
        match check(fields) {
            Checked::Rejected(p) => p,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_good_row() {
        let r = row(&[
            "INV-1",
            "a@example.com",
            "Ann",
            "1.234,56",
            "2026-12-01",
            "",
            "",
            "",
            "nl",
            "nl",
        ]);
        assert_eq!(r.reference, "INV-1");
        assert_eq!(r.data.amount.minor, 123456);
        assert_eq!(r.data.due.minor, 123456);
        assert_eq!(r.data.currency().code(), "EUR");
        assert_eq!(r.data.due_date.to_string(), "2026-12-01");
        assert_eq!(
            r.data.language.map(|l| l.as_str().to_string()).as_deref(),
            Some("nl")
        );
        assert_eq!(
            r.data.country.map(|c| c.as_str().to_string()).as_deref(),
            Some("NL")
        );
        assert!(!r.settled && !r.partial);
    }

    #[test]
    fn bidi_controls_are_removed_from_every_field() {
        let r = row(&[
            "\u{202A}INV-1\u{202C}",
            "a@example.com\u{200E}",
            "Jan\u{202E}kcaJ",
            "\u{2066}10,00\u{2069}",
            "2026-12-01\u{200F}",
            "\u{202D}paid\u{202C}",
            "",
            "\u{061C}EUR",
            "nl\u{2067}",
            "\u{2068}NL",
        ]);
        assert_eq!(r.reference, "INV-1");
        assert_eq!(r.data.customer_email.as_str(), "a@example.com");
        assert_eq!(r.data.customer_name.as_str(), "JankcaJ");
        assert_eq!(r.data.amount.minor, 1000);
        assert_eq!(r.data.due_date.to_string(), "2026-12-01");
        assert!(r.settled, "the status is read without its controls");
    }

    #[test]
    fn due_dates_are_those_cm_can_take() {
        let due = |d: &str| {
            let fields = ["INV-1", "a@example.com", "", "10", d, "", "", "", "", ""];
            match check(&fields) {
                Checked::Row(r) => Ok(r.data.due_date.to_string()),
                Checked::Rejected(p) => {
                    assert_eq!(p.len(), 1, "{p:?}");
                    assert_eq!(p[0].column, "due_date");
                    Err(p[0].reason.clone())
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(due("1900-01-01").unwrap(), "1900-01-01");
        assert_eq!(due("9999-12-01").unwrap(), "9999-12-01");
        for (d, why) in [
            ("-0001-01-01", "is before 1900-01-01"),
            ("+10000-01-01", "is after 9999-12-01"),
            ("10000-01-01", "is not a date"),
            ("1899-12-31", "is before 1900-01-01"),
            ("0024-05-01", "(a two-digit year?)"),
            ("01-05-24", "is before 1900-01-01"),
            ("9999-12-02", "would expire 30 day(s) later"),
        ] {
            let e = due(d).unwrap_err();
            assert!(e.contains(why), "{d}: {e}");
        }
        assert_eq!(DueRange::new(0).check(LAST_CM_DATE, "x"), None);
        let none = DueRange::new(u32::MAX).check(EARLIEST_DUE, "1900-01-01");
        assert!(none.unwrap().contains("leaves no room"));
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert!(DueRange::new(3_000_000).check(d, "x").is_some());
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_trimmed() {
        let s = CsvSettings::default();
        let m = ColumnMap::from_header(
            &rec(&[
                " Invoice_Reference",
                "CUSTOMER_EMAIL ",
                "amount",
                "Due_Date",
            ]),
            &s.columns,
        );
        assert!(m.is_ok());
    }

    #[test]
    fn missing_required_columns_are_named() {
        let s = CsvSettings::default();
        let e =
            ColumnMap::from_header(&rec(&["invoice_reference", "amount"]), &s.columns).unwrap_err();
        assert!(
            e.contains("`customer_email`") && e.contains("`due_date`"),
            "{e}"
        );
    }

    #[test]
    fn date_formats_in_order() {
        let f = CsvSettings::default().date_formats;
        assert_eq!(
            parse_date("31-12-2026", &f),
            NaiveDate::from_ymd_opt(2026, 12, 31)
        );
        assert_eq!(
            parse_date("31/12/2026", &f),
            NaiveDate::from_ymd_opt(2026, 12, 31)
        );
        assert_eq!(
            parse_date("2026-12-31", &f),
            NaiveDate::from_ymd_opt(2026, 12, 31)
        );
        assert_eq!(parse_date("2026-02-30", &f), None);
        assert_eq!(parse_date("12/31/2026", &f), None);
    }

    #[test]
    fn every_bad_column_is_reported() {
        let p = problems(&[
            "INV-2",
            "not-an-address",
            "Bob",
            "12.345",
            "tomorrow",
            "",
            "",
            "EURO",
            "xx",
            "ZZ",
        ]);
        let cols: Vec<_> = p.iter().map(|p| p.column.as_str()).collect();
        assert_eq!(
            cols,
            [
                "customer_email",
                "currency",
                "amount",
                "due_date",
                "language",
                "country_code"
            ]
        );
    }

    #[test]
    fn empty_required_values_are_rejected() {
        let p = problems(&["", "a@example.com", "", "", "", "open", "", "", "", ""]);
        let cols: Vec<_> = p.iter().map(|p| p.column.as_str()).collect();
        assert_eq!(cols, ["invoice_reference", "amount", "due_date"]);
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert!(matches!(
            check(&["", " ", "", "", "", "", "", "", "", ""]),
            Checked::Blank
        ));
    }

    #[test]
    fn credit_notes_and_zero_amounts_are_skipped() {
        assert!(matches!(
            check(&[
                "C-1",
                "a@example.com",
                "",
                "-10,00",
                "2026-12-01",
                "",
                "",
                "",
                "",
                ""
            ]),
            Checked::Skipped(_)
        ));
        assert!(matches!(
            check(&[
                "C-2",
                "a@example.com",
                "",
                "0",
                "2026-12-01",
                "",
                "",
                "",
                "",
                ""
            ]),
            Checked::Skipped(_)
        ));
    }

    #[test]
    fn paid_values_are_case_insensitive() {
        let r = row(&[
            "INV-3",
            "a@example.com",
            "",
            "10",
            "2026-12-01",
            "BETAALD",
            "",
            "",
            "",
            "",
        ]);
        assert!(r.settled);
        let r = row(&[
            "INV-3",
            "a@example.com",
            "",
            "10",
            "2026-12-01",
            "Open",
            "",
            "",
            "",
            "",
        ]);
        assert!(!r.settled);
    }

    #[test]
    fn outstanding_zero_settles_and_below_amount_is_partial() {
        let r = row(&[
            "INV-4",
            "a@example.com",
            "",
            "100,00",
            "2026-12-01",
            "",
            "0,00",
            "",
            "",
            "",
        ]);
        assert!(r.settled);
        let r = row(&[
            "INV-4",
            "a@example.com",
            "",
            "100,00",
            "2026-12-01",
            "",
            "40,00",
            "",
            "",
            "",
        ]);
        assert!(r.partial && !r.settled);
        assert_eq!((r.data.amount.minor, r.data.due.minor), (10000, 4000));
        let p = problems(&[
            "INV-4",
            "a@example.com",
            "",
            "100,00",
            "2026-12-01",
            "",
            "140,00",
            "",
            "",
            "",
        ]);
        assert_eq!(p[0].column, "outstanding");
    }

    #[test]
    fn jpy_has_no_decimals() {
        let r = row(&[
            "INV-5",
            "a@example.com",
            "",
            "1.234",
            "2026-12-01",
            "",
            "",
            "JPY",
            "",
            "",
        ]);
        assert_eq!(
            (r.data.amount.minor, r.data.currency().code()),
            (1234, "JPY")
        );
        let p = problems(&[
            "INV-5",
            "a@example.com",
            "",
            "12.5",
            "2026-12-01",
            "",
            "",
            "JPY",
            "",
            "",
        ]);
        assert_eq!(p[0].column, "amount");
    }

    #[test]
    fn names_that_span_lines_are_folded_not_rejected() {
        let r = row(&[
            "INV-6",
            "a@example.com",
            "Ann\r\nBcc: x@y.z",
            "10",
            "2026-12-01",
            "",
            "",
            "",
            "",
            "",
        ]);
        assert_eq!(r.data.customer_name.as_str(), "Ann Bcc: x@y.z");
    }

    #[test]
    fn short_rows_report_missing_fields() {
        let p = problems(&["INV-7", "a@example.com"]);
        let cols: Vec<_> = p.iter().map(|p| p.column.as_str()).collect();
        assert_eq!(cols, ["amount", "due_date"]);
    }

    /// Problems as (column, reason), for comparing whole lists.
    fn listed(checked: Checked) -> Vec<(String, String)> {
        match checked {
            Checked::Rejected(p) => p.into_iter().map(|p| (p.column, p.reason)).collect(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Checks a good row with `changes` (by column name) made to it, in a file that maps
    /// every column and has them in another order than the checks go.
    fn check_changed(changes: &[(&str, &[u8])]) -> Checked {
        const GOOD: &[(&str, &str)] = &[
            ("customer_type", "b2c"),
            ("country_code", "NL"),
            ("status", "open"),
            ("due_date", "2026-12-01"),
            ("amount", "10,00"),
            ("language", "nl"),
            ("currency", "EUR"),
            ("outstanding", ""),
            ("customer_name", "Ann"),
            ("customer_email", "a@example.com"),
            ("invoice_reference", "INV-1"),
        ];
        let header: Vec<&str> = GOOD.iter().map(|(column, _)| *column).collect();
        let fields: Vec<&[u8]> = GOOD
            .iter()
            .map(|(column, good)| {
                changes
                    .iter()
                    .find(|(changed, _)| changed == column)
                    .map_or(good.as_bytes(), |(_, value)| *value)
            })
            .collect();
        let s = CsvSettings::default();
        let m = map_for(&header, &s);
        Validator::new(&m, &s, 30).check(&csv::ByteRecord::from(fields))
    }

    #[test]
    fn problems_in_every_column_are_all_reported_in_order_under_their_names() {
        assert!(matches!(check_changed(&[]), Checked::Row(_)));
        let reference = "R".repeat(101);
        let name = "N".repeat(201);
        let p = listed(check_changed(&[
            ("customer_type", b"b2x"),
            ("country_code", b"ZZ"),
            ("status", b"open\xff"),
            ("due_date", b"tomorrow"),
            ("amount", b"twelve"),
            ("language", b"xx"),
            ("currency", b"EURO"),
            ("outstanding", b"lots"),
            ("customer_name", name.as_bytes()),
            ("customer_email", b"not-an-address"),
            ("invoice_reference", reference.as_bytes()),
        ]));
        let cols: Vec<_> = p.iter().map(|(c, _)| c.as_str()).collect();
        // Bytes that are not text first (in the column map's order), then each value in
        // the order it is read: the currency before the amounts it scales.
        assert_eq!(
            cols,
            [
                "status",
                "invoice_reference",
                "customer_email",
                "customer_name",
                "currency",
                "amount",
                "outstanding",
                "due_date",
                "language",
                "country_code",
                "customer_type",
            ]
        );
        assert_eq!(p[0].1, "the value is not valid UTF-8 (set csv.encoding)");
        let formats = CsvSettings::default().date_formats.join(", ");
        assert_eq!(
            p[7].1,
            format!("\"tomorrow\" is not a date in any of the formats {formats}")
        );
        // Each reason is about its own column's value.
        for (i, value) in [
            (1, "\"RRRR"),
            (2, "\"not-an-address\""),
            (3, "\"NNNN"),
            (4, "\"EURO\""),
            (5, "\"twelve\""),
            (6, "\"lots\""),
            (8, "\"xx\""),
            (9, "\"ZZ\""),
            (10, "\"b2x\""),
        ] {
            assert!(p[i].1.contains(value), "{i}: {:?}", p[i]);
        }
    }

    #[test]
    fn cross_column_problems_come_after_each_columns_own() {
        let not_text = "the value is not valid UTF-8 (set csv.encoding)";
        // Bytes that are not text in the column map's order (the file has the status
        // first); a due date that is not text is also empty; the outstanding balance above
        // the amount comes last.
        let p = listed(check_changed(&[
            ("status", b"\xff"),
            ("due_date", b"\xff"),
            ("language", b"xx"),
            ("outstanding", b"12,00"),
        ]));
        let language = "\"xx\" is not an ISO 639-1 language code (two letters, e.g. \"nl\")";
        let over = "the outstanding balance \"12,00\" is more than the amount \"10,00\"";
        assert_eq!(
            p,
            [
                ("due_date", not_text),
                ("status", not_text),
                ("due_date", "the due date is empty"),
                ("language", language),
                ("outstanding", over),
            ]
            .map(|(c, r)| (c.to_string(), r.to_string()))
        );
        let p = listed(check_changed(&[("amount", b"\xff")]));
        assert_eq!(
            p,
            [("amount", not_text), ("amount", "the amount is empty")]
                .map(|(c, r)| (c.to_string(), r.to_string()))
        );
        // A credit note is skipped only when nothing else is wrong with the row.
        let p = listed(check_changed(&[("amount", b"-10,00"), ("language", b"xx")]));
        assert_eq!(p, [("language".to_string(), language.to_string())]);
        assert!(matches!(
            check_changed(&[("amount", b"-10,00")]),
            Checked::Skipped(why) if why == "a negative amount (credit note) is not invoiced"
        ));
    }
}
