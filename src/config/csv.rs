//! `[csv]` and `[csv.columns]`: how exports are read.

use serde::Deserialize;

/// `csv.delimiter`: `"auto"` or one single-byte delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    /// Decided from the file.
    Auto,
    /// This byte.
    Byte(u8),
}

impl<'de> Deserialize<'de> for Delimiter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "auto" => Ok(Delimiter::Auto),
            "," => Ok(Delimiter::Byte(b',')),
            ";" => Ok(Delimiter::Byte(b';')),
            "\t" | "\\t" | "tab" => Ok(Delimiter::Byte(b'\t')),
            "|" => Ok(Delimiter::Byte(b'|')),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not a delimiter: use \"auto\", \",\", \";\", \"\\t\" or \"|\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
/// `csv.encoding`.
pub enum Encoding {
    /// Decided from the file.
    Auto,
    #[serde(alias = "utf8")]
    /// UTF-8 (a BOM is skipped).
    Utf8,
    #[serde(alias = "cp1252")]
    /// Windows-1252, as older Windows software writes.
    Windows1252,
}

pub use crate::domain::money::DecimalSeparator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// `csv.settlement`.
pub enum Settlement {
    /// Only rows say an invoice is settled (status column or zero outstanding).
    Status,
    /// Each file is the complete list of open invoices.
    Snapshot,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[csv]`.
pub struct CsvSettings {
    /// `auto`, `,`, `;`, `\t` (or `tab`), `|`.
    pub delimiter: Delimiter,
    /// `auto` (UTF-8 with or without BOM, else Windows-1252), `utf-8`, `windows-1252`.
    pub encoding: Encoding,
    /// `auto`, `.`, `,`.
    pub decimal_separator: DecimalSeparator,
    /// Tried in order (chrono `strftime` syntax).
    pub date_formats: Vec<String>,
    /// Status values meaning paid (case-insensitive).
    pub paid_values: Vec<String>,
    /// `status`, or `snapshot`: every file is the complete list of open invoices.
    pub settlement: Settlement,
    /// `[csv.columns]`: the header names of the export.
    pub columns: Columns,
}

impl Default for CsvSettings {
    fn default() -> Self {
        Self {
            delimiter: Delimiter::Auto,
            encoding: Encoding::Auto,
            decimal_separator: DecimalSeparator::Auto,
            date_formats: vec!["%Y-%m-%d".into(), "%d-%m-%Y".into(), "%d/%m/%Y".into()],
            paid_values: vec!["paid".into(), "betaald".into(), "voldaan".into()],
            settlement: Settlement::Status,
            columns: Columns::default(),
        }
    }
}

/// One column's header name in the export, or a list of accepted names (so that one
/// config reads the layouts of several accounting packages). Matched case-insensitively,
/// trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames(pub Vec<String>);

impl ColumnNames {
    fn one(name: &str) -> Self {
        ColumnNames(vec![name.to_string()])
    }

    /// Whether a header cell is one of these names.
    pub fn matches(&self, header: &str) -> bool {
        self.0
            .iter()
            .any(|n| !n.trim().is_empty() && n.trim().eq_ignore_ascii_case(header))
    }

    /// The names for messages: `amount` or `amount`/`Bedrag`.
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl<'de> Deserialize<'de> for ColumnNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a header name or a list of header names")
        })? {
            OneOrMany::One(s) => Ok(ColumnNames(vec![s])),
            OneOrMany::Many(v) if v.is_empty() => Err(serde::de::Error::custom(
                "the list of header names is empty",
            )),
            OneOrMany::Many(v) => Ok(ColumnNames(v)),
        }
    }
}

/// Header names in the export (`[csv.columns]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// Header name(s) of the invoice reference column.
    pub invoice_reference: ColumnNames,
    /// Header name(s) of the customer e-mail column.
    pub customer_email: ColumnNames,
    /// Header name(s) of the optional customer name column.
    pub customer_name: ColumnNames,
    /// Header name(s) of the amount column.
    pub amount: ColumnNames,
    /// Header name(s) of the optional outstanding balance column.
    pub outstanding: ColumnNames,
    /// Header name(s) of the optional currency column.
    pub currency: ColumnNames,
    /// Header name(s) of the due date column.
    pub due_date: ColumnNames,
    /// Header name(s) of the optional status column.
    pub status: ColumnNames,
    /// Header name(s) of the optional language column.
    pub language: ColumnNames,
    /// Header name(s) of the optional country column.
    pub country_code: ColumnNames,
    /// Header name(s) of the optional customer type column (`b2b` | `b2c`).
    pub customer_type: ColumnNames,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            invoice_reference: ColumnNames::one("invoice_reference"),
            customer_email: ColumnNames::one("customer_email"),
            customer_name: ColumnNames::one("customer_name"),
            amount: ColumnNames::one("amount"),
            outstanding: ColumnNames::one("outstanding"),
            currency: ColumnNames::one("currency"),
            due_date: ColumnNames::one("due_date"),
            status: ColumnNames::one("status"),
            language: ColumnNames::one("language"),
            country_code: ColumnNames::one("country_code"),
            customer_type: ColumnNames::one("customer_type"),
        }
    }
}

impl CsvSettings {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.date_formats.is_empty() {
            return Err(("csv.date_formats", "needs at least one format".into()));
        }
        for f in &self.date_formats {
            use chrono::format::{Item, StrftimeItems};
            if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                return Err((
                    "csv.date_formats",
                    format!("`{f}` is not a valid date format"),
                ));
            }
        }
        let c = &self.columns;
        for (key, v) in [
            ("csv.columns.invoice_reference", &c.invoice_reference),
            ("csv.columns.customer_email", &c.customer_email),
            ("csv.columns.amount", &c.amount),
            ("csv.columns.due_date", &c.due_date),
        ] {
            if v.0.iter().all(|n| n.trim().is_empty()) {
                return Err((key, "a required column needs a header name".into()));
            }
        }
        Ok(())
    }
}
