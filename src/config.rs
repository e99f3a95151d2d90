//! Typed settings: the TOML file (README, *Configuration reference*), validated once at load.
//!
//! Layering: built-in defaults, then the file. Unknown keys and wrong types are errors that
//! name the key path (`csv.columns.amont`) and the file. Relative paths are resolved
//! against the config file's folder. Secrets are read lazily through [`SecretSource`]
//! (value, `*_env`, `*_file`, or `$CREDENTIALS_DIRECTORY/<name>`), so that `import` never
//! needs the CM secret, and they are held in [`secrecy::SecretString`], whose `Debug` prints
//! `[REDACTED]`. This module never logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

/// Where the config is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/invoice-sync/invoice-sync.toml";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "INVOICE_SYNC_CONFIG";

/// A config problem, always naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "there is no config file at {path}; name one with --config PATH or the INVOICE_SYNC_CONFIG variable"
    )]
    /// The config file does not exist.
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    // The source is the cause in the chain, not repeated in this message (it would
    // print "(os error 13)" twice).
    #[error("cannot read the config file {path}")]
    /// The config file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        /// What the operating system said.
        source: std::io::Error,
    },
    #[error("config file {path}: key `{key}`: {message}")]
    /// A key has a wrong value.
    Key {
        /// The file.
        path: PathBuf,
        /// The config key.
        key: String,
        /// What is wrong.
        message: String,
    },
    #[error("config file {path}: {message}")]
    /// The file is not valid TOML (or not of the expected shape).
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration, paths resolved.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[storage]`: where the database is.
    pub storage: Storage,
    /// `[inbox]`: where exports arrive and go.
    pub inbox: Inbox,
    /// `[csv]`: how exports are read.
    pub csv: CsvSettings,
    /// `[cm]`: the Payment Link API account and its limits.
    pub cm: Cm,
    /// `[ideal_qr]`: iDEAL QR codes beside the links.
    pub ideal_qr: IdealQr,
    /// `[email]`: how mail is sent.
    pub email: Email,
    /// `[merchant]`: who the mails come from, shown in every mail.
    pub merchant: Merchant,
    /// `[reminders]`: the reminder ladder.
    pub reminders: Reminders,
    /// `[reconciliation]`: the account camt.053 statements describe.
    pub reconciliation: Reconciliation,
    /// `[daemon]`: the schedule and the listeners.
    pub daemon: Daemon,
    /// The file this was read from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[storage]`.
pub struct Storage {
    /// The SQLite file (its folder is created).
    pub database: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            database: "/var/lib/invoice-sync/invoice-sync.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[inbox]`.
pub struct Inbox {
    /// Where CSV drops land.
    pub dir: PathBuf,
    /// Applied files, as `<stem>.<UTC timestamp>.<ext>`.
    pub archive_dir: PathBuf,
    /// Rejection reports and files set aside.
    pub rejected_dir: PathBuf,
    /// Glob for inbox file names.
    pub pattern: String,
    /// A file modified more recently is left for the next cycle.
    pub settle_seconds: u64,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            dir: "/var/lib/invoice-sync/inbox".into(),
            archive_dir: "/var/lib/invoice-sync/archive".into(),
            rejected_dir: "/var/lib/invoice-sync/rejected".into(),
            pattern: "*.csv".into(),
            settle_seconds: 5,
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[cm]`: the Payment Link API account.
pub struct Cm {
    /// `https://api.cmpayments.com`, or `sandbox` for a simulator started in-process.
    pub base_url: String,
    /// The OAuth client id of the CM account.
    pub client_id: String,
    /// The client secret, written in the file (prefer `client_secret_env` / `_file` or a credential).
    pub client_secret: Option<SecretString>,
    /// An environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// A file holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// The rate all CM requests share.
    pub requests_per_second: u32,
    /// How many requests may start at once before the rate applies.
    pub burst: u32,
    /// CM requests at once.
    pub max_in_flight: usize,
    /// Per request.
    pub timeout_seconds: u64,
    /// Sent with each link; CM calls it when a link's status changes (point it at the daemon's listener).
    pub callback_url: Option<String>,
    /// Every link expires at the end of the day due date + this many days (UTC).
    pub link_expiry_days_after_due: u32,
    /// A link is created to expire this many hours ahead, and given its real expiry only
    /// once recorded: a link whose answer was lost stops being payable by itself.
    pub provisional_expiry_hours: u32,
    /// ISO 639-1 language when a row has none (payment page and mail).
    pub default_language: String,
    /// ISO 3166-1 alpha-2 country when a row has none (payment methods shown).
    pub default_country: String,
}

impl Default for Cm {
    fn default() -> Self {
        Self {
            base_url: "https://api.cmpayments.com".into(),
            client_id: String::new(),
            client_secret: None,
            client_secret_env: None,
            client_secret_file: None,
            requests_per_second: 10,
            burst: 10,
            max_in_flight: 8,
            timeout_seconds: 30,
            callback_url: None,
            link_expiry_days_after_due: 30,
            provisional_expiry_hours: 48,
            default_language: "NL".into(),
            default_country: "NL".into(),
        }
    }
}

impl Cm {
    /// Where the CM client secret comes from.
    pub fn client_secret_source(&self) -> SecretSource {
        SecretSource {
            key: "cm.client_secret",
            credential: "cm_client_secret",
            value: self.client_secret.clone(),
            env: self.client_secret_env.clone(),
            file: self.client_secret_file.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[ideal_qr]`.
pub struct IdealQr {
    /// Whether EUR invoices also get an iDEAL QR code.
    pub enabled: bool,
    /// `POST …/api/v1/paymentmethods/idealqr/v1/transactions`, `GET …/transactions/<id>`; `sandbox` with `cm.base_url = "sandbox"`.
    pub base_url: String,
    /// Its own OAuth endpoint (client credentials).
    pub token_url: String,
    /// Defaults to the `[cm]` credentials when absent.
    pub client_id: Option<String>,
    /// The iDEAL QR client secret, when it has its own credentials.
    pub client_secret: Option<SecretString>,
    /// An environment variable holding the iDEAL QR client secret.
    pub client_secret_env: Option<String>,
    /// A file holding the iDEAL QR client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Image size in pixels, 100–2000.
    pub size: u32,
    /// Where the customer lands after paying.
    pub return_url: Option<String>,
    /// Shown in the banking app; at most 255 characters.
    pub description: String,
}

impl Default for IdealQr {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://api.pay.cm.com".into(),
            token_url: "https://api.pay.cm.com/api/v1/authorization/oauth2/token".into(),
            client_id: None,
            client_secret: None,
            client_secret_env: None,
            client_secret_file: None,
            size: 300,
            return_url: None,
            description: "Invoice {invoice_reference}".into(),
        }
    }
}

impl IdealQr {
    /// Where the iDEAL QR client secret comes from, when it has credentials of its own.
    pub fn client_secret_source(&self) -> SecretSource {
        SecretSource {
            key: "ideal_qr.client_secret",
            credential: "ideal_qr_client_secret",
            value: self.client_secret.clone(),
            env: self.client_secret_env.clone(),
            file: self.client_secret_file.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// `email.transport`.
pub enum MailTransport {
    /// An SMTP relay.
    Smtp,
    /// One `.eml` file per mail in `email.file_dir`.
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// `email.smtp_tls`.
pub enum SmtpTls {
    /// Plain SMTP.
    None,
    /// STARTTLS, required.
    Starttls,
    /// Implicit TLS from the first byte.
    Tls,
}

/// `[merchant]`: the identity every mail shows, so that a customer can see who asks for
/// the money and how else to reach or pay them. Every key is optional; the name falls
/// back to the display name of `email.from`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Merchant {
    /// The company name.
    pub name: Option<String>,
    /// The postal address, on one line.
    pub address: Option<String>,
    /// The Chamber of Commerce (KvK) number: eight digits.
    pub kvk: Option<String>,
    /// A phone number.
    pub phone: Option<String>,
    /// The website (`https://…`).
    pub website: Option<String>,
    /// The account a customer may transfer to instead of paying by link.
    pub iban: Option<String>,
}

impl Merchant {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let fields = [
            ("merchant.name", &self.name),
            ("merchant.address", &self.address),
            ("merchant.kvk", &self.kvk),
            ("merchant.phone", &self.phone),
            ("merchant.website", &self.website),
            ("merchant.iban", &self.iban),
        ];
        for (key, value) in fields {
            if value.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
                return Err((key, "must be on one line".into()));
            }
        }
        if let Some(kvk) = &self.kvk
            && !(kvk.trim().len() == 8 && kvk.trim().bytes().all(|b| b.is_ascii_digit()))
        {
            return Err((
                "merchant.kvk",
                format!("{kvk:?} is not a KvK number (eight digits)"),
            ));
        }
        if let Some(w) = &self.website
            && !(w.starts_with("https://") || w.starts_with("http://"))
        {
            return Err((
                "merchant.website",
                format!("{w:?} must start with https://"),
            ));
        }
        if let Some(iban) = &self.iban
            && !iban_is_valid(iban)
        {
            return Err((
                "merchant.iban",
                format!("{iban:?} is not a valid IBAN (its check digits do not match)"),
            ));
        }
        Ok(())
    }
}

/// An IBAN's form and its ISO 13616 check digits (mod 97); spaces are allowed.
fn iban_is_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rotated {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[email]`.
pub struct Email {
    /// `smtp`, or `file`: one `.eml` per mail in `file_dir` (demos, dry setups).
    pub transport: MailTransport,
    /// The relay's host name.
    pub smtp_host: String,
    /// The relay's port.
    pub smtp_port: u16,
    /// `none`, `starttls` (required, not opportunistic) or `tls` (implicit, port 465).
    pub smtp_tls: SmtpTls,
    /// The SMTP login; without it no password is read.
    pub smtp_username: Option<String>,
    /// The SMTP password, written in the file (prefer `smtp_password_env` / `_file` or a credential).
    pub smtp_password: Option<SecretString>,
    /// An environment variable holding the SMTP password.
    pub smtp_password_env: Option<String>,
    /// A file holding the SMTP password.
    pub smtp_password_file: Option<PathBuf>,
    /// For `transport = "file"`.
    pub file_dir: PathBuf,
    /// The sender, `Name <address>`; its display name signs the mails.
    pub from: String,
    /// The Reply-To address, when replies should go elsewhere.
    pub reply_to: Option<String>,
    /// Overrides of the built-in templates (see *Mail*).
    pub templates_dir: Option<PathBuf>,
    /// Mail rate limit.
    pub messages_per_second: u32,
    /// PEM file with extra CA certificates to trust for `starttls` / `tls`, for a relay
    /// whose certificate comes from a private CA. Added to the built-in roots.
    pub smtp_ca_file: Option<PathBuf>,
    /// Bounds one whole SMTP attempt (connect, greeting, TLS, login, transaction), so that
    /// a relay that stops answering delays a cycle instead of hanging it.
    pub smtp_timeout_seconds: u64,
}

impl Default for Email {
    fn default() -> Self {
        Self {
            transport: MailTransport::Smtp,
            smtp_host: "localhost".into(),
            smtp_port: 25,
            smtp_tls: SmtpTls::None,
            smtp_username: None,
            smtp_password: None,
            smtp_password_env: None,
            smtp_password_file: None,
            file_dir: "/var/lib/invoice-sync/outbox".into(),
            from: String::new(),
            reply_to: None,
            templates_dir: None,
            messages_per_second: 10,
            smtp_ca_file: None,
            smtp_timeout_seconds: 30,
        }
    }
}

impl Email {
    /// Where the SMTP password comes from.
    pub fn smtp_password_source(&self) -> SecretSource {
        SecretSource {
            key: "email.smtp_password",
            credential: "smtp_password",
            value: self.smtp_password.clone(),
            env: self.smtp_password_env.clone(),
            file: self.smtp_password_file.clone(),
        }
    }
}

/// `[reconciliation]`: the (clearing) account the camt.053 statements of `export-paid
/// --format camt053` describe.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Reconciliation {
    /// The account's IBAN (required for camt.053).
    pub account_iban: Option<String>,
    /// The account's name.
    pub account_name: Option<String>,
}

impl Reconciliation {
    /// The IBAN as a statement writes it: without spaces, upper case.
    pub fn iban(&self) -> Option<String> {
        self.account_iban.as_deref().map(|i| {
            i.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_uppercase()
        })
    }
}

/// `[reminders]`: mails after the link mail, at days relative to the due date
/// (README, *Reminders*).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Reminders {
    /// Off by default: no reminder is planned or sent.
    pub enabled: bool,
    /// The steps, in days relative to the due date (negative: before it), ascending.
    pub days: Vec<i32>,
    /// Never two mails to one invoice within this many calendar days (a mail on the 1st
    /// allows the next on the 1st + this).
    pub min_gap_days: u32,
    /// `HH:MM-HH:MM`, local time: reminders are queued only inside it.
    pub send_window: String,
    /// Whether reminders may go out on Saturday and Sunday.
    pub send_weekends: bool,
    /// For consumers, the last step is the statutory notice before collection costs.
    pub final_notice: bool,
    /// The customer type of rows without a `customer_type` value.
    pub default_customer_type: crate::domain::CustomerType,
}

impl Default for Reminders {
    fn default() -> Self {
        Self {
            enabled: false,
            days: vec![-3, 7, 21],
            min_gap_days: 3,
            send_window: "09:00-17:00".into(),
            send_weekends: false,
            final_notice: false,
            default_customer_type: crate::domain::CustomerType::B2b,
        }
    }
}

/// The send window as minutes after local midnight: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// The first minute inside the window.
    pub start: u32,
    /// The first minute after it (1440 for `24:00`).
    pub end: u32,
}

impl SendWindow {
    /// Reads `HH:MM-HH:MM` (`24:00` may end it); the start must come before the end.
    pub fn parse(s: &str) -> Result<SendWindow, String> {
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let shape = || format!("{s:?} is not a window of the form HH:MM-HH:MM (e.g. 09:00-17:00)");
        let (a, b) = s.split_once('-').ok_or_else(shape)?;
        let (start, end) = (minutes(a).ok_or_else(shape)?, minutes(b).ok_or_else(shape)?);
        if start >= end {
            return Err(format!(
                "{s:?} ends before it starts (a window does not run past midnight)"
            ));
        }
        Ok(SendWindow { start, end })
    }

    /// Whether the local time `t` is inside the window.
    pub fn contains(&self, t: chrono::NaiveTime) -> bool {
        use chrono::Timelike;
        let m = t.hour() * 60 + t.minute();
        self.start <= m && m < self.end
    }
}

impl Reminders {
    /// The parsed send window (validated when the config was read).
    pub fn window(&self) -> SendWindow {
        SendWindow::parse(&self.send_window).unwrap_or(SendWindow {
            start: 0,
            end: 24 * 60,
        })
    }

    fn validate(&self, merchant: &Merchant) -> Result<(), (&'static str, String)> {
        SendWindow::parse(&self.send_window).map_err(|e| ("reminders.send_window", e))?;
        if let Some(d) = self.days.iter().find(|d| d.abs() > 3650) {
            return Err((
                "reminders.days",
                format!("{d} is more than ten years from the due date"),
            ));
        }
        if self.days.windows(2).any(|w| w[0] >= w[1]) {
            return Err((
                "reminders.days",
                format!(
                    "{:?} must be in ascending order without repeats (days relative to the due date)",
                    self.days
                ),
            ));
        }
        if self.min_gap_days > 365 {
            return Err(("reminders.min_gap_days", "must be at most 365".into()));
        }
        if self.enabled && self.days.is_empty() {
            return Err((
                "reminders.days",
                "is empty while reminders.enabled = true; name at least one step".into(),
            ));
        }
        if self.enabled && self.final_notice {
            for (key, value) in [
                ("merchant.name", &merchant.name),
                ("merchant.address", &merchant.address),
            ] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    return Err((
                        key,
                        "is required when reminders.final_notice = true: the statutory notice must say who the creditor is".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[daemon]`.
pub struct Daemon {
    /// Cron expression: 6 fields (seconds first), 7 (a year last), or the classic 5 (minute hour day month weekday; weekday 0–7, Sunday 0 or 7); in local time.
    pub schedule: String,
    /// `ADDR:PORT` of the callback listener, e.g. `127.0.0.1:8089`.
    pub callback_listen: Option<SocketAddr>,
    /// Its path.
    pub callback_path: String,
    /// `ADDR:PORT` of `/metrics` and `/healthz`, e.g. `127.0.0.1:9189` (never the
    /// callback listener's).
    pub status_listen: Option<SocketAddr>,
}

impl Default for Daemon {
    fn default() -> Self {
        Self {
            schedule: "0 */5 * * * *".into(),
            callback_listen: None,
            callback_path: "/callback".into(),
            status_listen: None,
        }
    }
}

/// Where one secret comes from: the config value, `<key>_env`, `<key>_file`, or
/// `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), in that order of
/// preference. At most one of the three keys may be set.
#[derive(Debug, Clone)]
pub struct SecretSource {
    /// The config key, for messages (`cm.client_secret`).
    pub key: &'static str,
    /// The systemd credential name (`cm_client_secret`).
    pub credential: &'static str,
    /// The value written in the config file.
    pub value: Option<SecretString>,
    /// The environment variable that may hold it.
    pub env: Option<String>,
    /// The file that may hold it.
    pub file: Option<PathBuf>,
}

/// Why a secret could not be had. Never carries the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("`{key}`, `{key}_env` and `{key}_file` are alternatives: set only one")]
    /// More than one source is set for the secret.
    Ambiguous {
        /// The config key.
        key: &'static str,
    },
    #[error("`{key}_env` names the environment variable {var}, which is not set")]
    /// The named environment variable is not set.
    EnvMissing {
        /// The config key.
        key: &'static str,
        /// The variable.
        var: String,
    },
    #[error("`{key}_file`: cannot read {path}: {source}")]
    /// One `.eml` file per mail in `email.file_dir`.
    File {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        #[source]
        /// What the operating system said.
        source: std::io::Error,
    },
    #[error(
        "no `{key}` is configured (set `{key}`, `{key}_env`, `{key}_file`, or provide the systemd credential `{credential}`)"
    )]
    /// No source holds the secret.
    Missing {
        /// The config key.
        key: &'static str,
        /// The credential name.
        credential: &'static str,
    },
}

impl SecretSource {
    /// Whether any source is configured or available (for optional secrets such as SMTP AUTH).
    pub fn is_configured(&self) -> bool {
        self.value.is_some()
            || self.env.is_some()
            || self.file.is_some()
            || credentials_dir().is_some_and(|d| d.join(self.credential).is_file())
    }

    /// Reads the secret. A trailing newline of a file or credential is dropped.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        self.resolve_in(credentials_dir().as_deref())
    }

    /// [`SecretSource::resolve`] with the systemd credentials folder given.
    pub fn resolve_in(&self, credentials: Option<&Path>) -> Result<SecretString, SecretError> {
        let set = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(SecretError::Ambiguous { key: self.key });
        }
        if let Some(v) = &self.value {
            return Ok(v.clone());
        }
        if let Some(var) = &self.env {
            return std::env::var(var).map(SecretString::from).map_err(|_| {
                SecretError::EnvMissing {
                    key: self.key,
                    var: var.clone(),
                }
            });
        }
        if let Some(path) = &self.file {
            return read_secret_file(path).map_err(|source| SecretError::File {
                key: self.key,
                path: path.clone(),
                source,
            });
        }
        if let Some(path) = credentials.map(|d| d.join(self.credential))
            && path.is_file()
        {
            return read_secret_file(&path).map_err(|source| SecretError::File {
                key: self.key,
                path,
                source,
            });
        }
        Err(SecretError::Missing {
            key: self.key,
            credential: self.credential,
        })
    }
}

fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn read_secret_file(path: &Path) -> std::io::Result<SecretString> {
    let mut s = std::fs::read_to_string(path)?;
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    Ok(SecretString::from(s))
}

impl Config {
    /// The config path from `--config`, else `INVOICE_SYNC_CONFIG`, else the default.
    pub fn locate(cli: Option<&Path>) -> PathBuf {
        if let Some(p) = cli {
            return p.to_path_buf();
        }
        match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ConfigError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses `text` as if read from `path` (used for messages and relative paths).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // A parser's message may quote the offending line or value: secrets written in
        // the file are redacted from it, in every spelling.
        let secrets = crate::redact::secrets_in_config(text);
        let clean = |m: String| crate::redact::scrub(&m, secrets.iter().map(String::as_str));
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: clean(one_line(&e.to_string())),
        })?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = clean(one_line(&e.into_inner().to_string()));
            if key.is_empty() || key == "." {
                ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message,
                }
            } else {
                ConfigError::Key {
                    path: path.to_path_buf(),
                    key,
                    message,
                }
            }
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths(&base);
        config.source = Some(path.to_path_buf());
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.storage.database);
        abs(&mut self.inbox.dir);
        abs(&mut self.inbox.archive_dir);
        abs(&mut self.inbox.rejected_dir);
        abs(&mut self.email.file_dir);
        if let Some(p) = &mut self.email.templates_dir {
            if p.as_os_str().is_empty() {
                self.email.templates_dir = None;
            } else {
                abs(p);
            }
        }
        for p in [
            &mut self.cm.client_secret_file,
            &mut self.ideal_qr.client_secret_file,
            &mut self.email.smtp_password_file,
            &mut self.email.smtp_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
    }

    /// Checks the values serde cannot: formats, ranges, shapes.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError::Key {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.csv.date_formats.is_empty() {
            return Err(err("csv.date_formats", "needs at least one format".into()));
        }
        for f in &self.csv.date_formats {
            use chrono::format::{Item, StrftimeItems};
            if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                return Err(err(
                    "csv.date_formats",
                    format!("`{f}` is not a valid date format"),
                ));
            }
        }
        if self.inbox.pattern.is_empty() {
            return Err(err("inbox.pattern", "must not be empty".into()));
        }
        let c = &self.csv.columns;
        for (key, v) in [
            ("csv.columns.invoice_reference", &c.invoice_reference),
            ("csv.columns.customer_email", &c.customer_email),
            ("csv.columns.amount", &c.amount),
            ("csv.columns.due_date", &c.due_date),
        ] {
            if v.0.iter().all(|n| n.trim().is_empty()) {
                return Err(err(key, "a required column needs a header name".into()));
            }
        }
        if self.cm.requests_per_second == 0 {
            return Err(err("cm.requests_per_second", "must be at least 1".into()));
        }
        if self.cm.burst == 0 {
            return Err(err("cm.burst", "must be at least 1".into()));
        }
        if self.cm.max_in_flight == 0 {
            return Err(err("cm.max_in_flight", "must be at least 1".into()));
        }
        if self.cm.provisional_expiry_hours == 0 {
            return Err(err(
                "cm.provisional_expiry_hours",
                "must be at least 1 (a link is created to expire this many hours ahead until it is recorded)".into(),
            ));
        }
        if self.cm.timeout_seconds == 0 {
            return Err(err("cm.timeout_seconds", "must be at least 1".into()));
        }
        if self.email.messages_per_second == 0 {
            return Err(err(
                "email.messages_per_second",
                "must be at least 1".into(),
            ));
        }
        self.merchant
            .validate()
            .map_err(|(key, why)| err(key, why))?;
        self.reminders
            .validate(&self.merchant)
            .map_err(|(key, why)| err(key, why))?;
        if let Some(iban) = &self.reconciliation.account_iban
            && !iban_is_valid(iban)
        {
            return Err(err(
                "reconciliation.account_iban",
                format!("{iban:?} is not a valid IBAN (its check digits do not match)"),
            ));
        }
        if let Some(name) = &self.reconciliation.account_name
            && name.contains(['\r', '\n'])
        {
            return Err(err(
                "reconciliation.account_name",
                "must be on one line".into(),
            ));
        }
        // Read here as the mail step reads them, so that `check` and the first cycle
        // refuse a sender the relay would never see instead of failing every mail.
        for (key, value) in [
            ("email.from", Some(self.email.from.as_str())),
            ("email.reply_to", self.email.reply_to.as_deref()),
        ] {
            if let Some(value) = value.filter(|v| !v.trim().is_empty())
                && let Some(why) = bad_mailbox(value)
            {
                return Err(err(key, why));
            }
        }
        if self.ideal_qr.enabled
            && self
                .ideal_qr
                .return_url
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
        {
            return Err(err(
                "ideal_qr.return_url",
                "is required when ideal_qr.enabled = true (the iDEAL QR API needs a return URL)"
                    .into(),
            ));
        }
        if self.ideal_qr.description.trim().is_empty() {
            return Err(err(
                "ideal_qr.description",
                "must not be empty (the iDEAL QR API needs a description)".into(),
            ));
        }
        if !(100..=2000).contains(&self.ideal_qr.size) {
            return Err(err("ideal_qr.size", "must be between 100 and 2000".into()));
        }
        if crate::domain::Language::parse(&self.cm.default_language).is_err() {
            return Err(err(
                "cm.default_language",
                format!("`{}` is not an ISO 639-1 code", self.cm.default_language),
            ));
        }
        if crate::domain::Country::parse(&self.cm.default_country).is_err() {
            return Err(err(
                "cm.default_country",
                format!(
                    "`{}` is not an ISO 3166-1 alpha-2 code",
                    self.cm.default_country
                ),
            ));
        }
        if let Err(e) = crate::schedule::Schedule::parse(&self.daemon.schedule) {
            return Err(err("daemon.schedule", e));
        }
        if let (Some(a), Some(b)) = (self.daemon.status_listen, self.daemon.callback_listen)
            && a == b
        {
            return Err(err(
                "daemon.status_listen",
                "must differ from daemon.callback_listen: metrics are never served where callbacks from the internet arrive".into(),
            ));
        }
        if !self.daemon.callback_path.starts_with('/') {
            return Err(err("daemon.callback_path", "must start with `/`".into()));
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    plain_types(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A parser's message in plain words: `expected u64` says which numbers are meant.
fn plain_types(s: &str) -> String {
    const TYPES: [(&str, &str); 7] = [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        (
            "expected u64",
            "expected a whole number from 0 to 18446744073709551615",
        ),
        ("expected usize", "expected a whole number from 0 up"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ];
    let mut out = s.to_string();
    for (rust, plain) in TYPES {
        if let Some(i) = out.find(rust) {
            let end = i + rust.len();
            // Only the whole word: `u16` is not the start of `u160`.
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.replace_range(i..end, plain);
            }
        }
    }
    out
}

/// Why `value` is no usable mailbox (`Name <address>` or a bare address), as the mail
/// step would find; `None` when it is one.
fn bad_mailbox(value: &str) -> Option<String> {
    if value.contains(['\r', '\n']) {
        return Some("must be on one line".into());
    }
    match value.trim().parse::<lettre::message::Mailbox>() {
        Ok(_) => None,
        Err(_) => Some(format!(
            "{value:?} is not a sender address a mail can carry; write it as `Name <billing@example.com>` (quote a name with a comma: `\"Acme, Inc.\" <billing@example.com>`) or just `billing@example.com`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/x/invoice-sync.toml"))
    }

    #[test]
    fn defaults_match_the_product_contract() {
        let c = parse("").unwrap();
        assert_eq!(c.inbox.pattern, "*.csv");
        assert_eq!(c.inbox.settle_seconds, 5);
        assert_eq!(c.csv.delimiter, Delimiter::Auto);
        assert_eq!(c.csv.encoding, Encoding::Auto);
        assert_eq!(c.csv.date_formats, ["%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y"]);
        assert_eq!(c.csv.paid_values, ["paid", "betaald", "voldaan"]);
        assert_eq!(c.csv.settlement, Settlement::Status);
        assert_eq!(c.csv.columns.outstanding.0, ["outstanding"]);
        assert_eq!(c.cm.requests_per_second, 10);
        assert_eq!(c.cm.max_in_flight, 8);
        assert_eq!(c.daemon.callback_path, "/callback");
        assert_eq!(
            c.storage.database,
            PathBuf::from("/var/lib/invoice-sync/invoice-sync.db")
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c =
            parse("[storage]\ndatabase = \"state/db.sqlite\"\n[inbox]\ndir = \"in\"\n").unwrap();
        assert_eq!(c.storage.database, PathBuf::from("/etc/x/state/db.sqlite"));
        assert_eq!(c.inbox.dir, PathBuf::from("/etc/x/in"));
    }

    #[test]
    fn unknown_key_is_named_with_its_path_and_the_file() {
        let e = parse("[csv.columns]\namont = \"Bedrag\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("csv.columns.amont"), "{msg}");
        assert!(msg.contains("/etc/x/invoice-sync.toml"), "{msg}");
    }

    #[test]
    fn a_column_takes_one_name_or_a_list() {
        let c =
            parse("[csv.columns]\namount = [\"amount\", \"Bedrag\"]\ndue_date = \"Vervaldatum\"\n")
                .unwrap();
        assert!(c.csv.columns.amount.matches("bedrag"));
        assert!(c.csv.columns.due_date.matches("VERVALDATUM"));
        assert!(!c.csv.columns.due_date.matches("due_date"));
        let e = parse("[csv.columns]\namount = 5\n").unwrap_err();
        assert!(e.to_string().contains("csv.columns.amount"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse("[inbox]\nsettle_seconds = \"five\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("inbox.settle_seconds"), "{msg}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let e = parse("[csv]\nsettlement = \"sometimes\"\n").unwrap_err();
        assert!(e.to_string().contains("csv.settlement"), "{e}");
        let e = parse("[csv]\ndelimiter = \"::\"\n").unwrap_err();
        assert!(e.to_string().contains("csv.delimiter"), "{e}");
    }

    #[test]
    fn bad_date_format_is_named() {
        let e = parse("[csv]\ndate_formats = [\"%Q\"]\n").unwrap_err();
        assert!(e.to_string().contains("csv.date_formats"), "{e}");
    }

    #[test]
    fn secret_from_value_is_redacted_in_debug() {
        let c = parse("[cm]\nclient_secret = \"hunter2-very-secret\"\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let s = c.cm.client_secret_source().resolve().unwrap();
        assert_eq!(s.expose_secret(), "hunter2-very-secret");
    }

    #[test]
    fn secret_from_file_drops_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "from-file\n").unwrap();
        let cfg = dir.path().join("c.toml");
        let c = Config::from_toml("[email]\nsmtp_password_file = \"s\"\n", &cfg).unwrap();
        let s = c.email.smtp_password_source().resolve().unwrap();
        assert_eq!(s.expose_secret(), "from-file");
    }

    #[test]
    fn two_secret_sources_are_an_error_without_the_secret() {
        let c = parse("[cm]\nclient_secret = \"abc-secret\"\nclient_secret_env = \"X\"\n").unwrap();
        let e = c.cm.client_secret_source().resolve().unwrap_err();
        assert!(e.to_string().contains("cm.client_secret"));
        assert!(!e.to_string().contains("abc-secret"));
    }

    #[test]
    fn secret_from_systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cm_client_secret"), "cred-value\n").unwrap();
        let c = parse("").unwrap();
        let s =
            c.cm.client_secret_source()
                .resolve_in(Some(dir.path()))
                .unwrap();
        assert_eq!(s.expose_secret(), "cred-value");
        // a configured value wins over the credential
        let c = parse("[cm]\nclient_secret = \"inline\"\n").unwrap();
        let s =
            c.cm.client_secret_source()
                .resolve_in(Some(dir.path()))
                .unwrap();
        assert_eq!(s.expose_secret(), "inline");
        // nothing anywhere: the error names the key and the credential
        let e = parse("")
            .unwrap()
            .email
            .smtp_password_source()
            .resolve_in(Some(dir.path()))
            .unwrap_err();
        assert!(
            e.to_string().contains("email.smtp_password")
                && e.to_string().contains("smtp_password")
        );
    }

    #[test]
    fn missing_env_secret_names_the_variable() {
        let c = parse("[cm]\nclient_secret_env = \"INVOICE_SYNC_TEST_UNSET_VAR\"\n").unwrap();
        let e = c.cm.client_secret_source().resolve().unwrap_err();
        assert!(e.to_string().contains("INVOICE_SYNC_TEST_UNSET_VAR"), "{e}");
    }

    #[test]
    fn ibans_are_checked_by_their_check_digits() {
        assert!(iban_is_valid("NL91ABNA0417164300"));
        assert!(iban_is_valid("NL91 ABNA 0417 1643 00"));
        assert!(iban_is_valid("DE89370400440532013000"));
        assert!(!iban_is_valid("NL92ABNA0417164300"));
        assert!(!iban_is_valid("NL91ABNA04171643"));
        assert!(!iban_is_valid("not an iban at all"));
    }
}
