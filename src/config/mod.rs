//! Typed settings: the TOML file (README, *Configuration reference*), validated once at load.
//!
//! Layering: built-in defaults, then the file. Unknown keys and wrong types are errors that
//! name the key path (`csv.columns.amont`) and the file. Relative paths are resolved
//! against the config file's folder. Secrets are read lazily through [`SecretSource`]
//! (value, `*_env`, `*_file`, or `$CREDENTIALS_DIRECTORY/<name>`), so that `import` never
//! needs the CM secret, and they are held in [`secrecy::SecretString`], whose `Debug` prints
//! `[REDACTED]`. This module never logs.
//!
//! A value with a shape of its own is parsed once, as it is read, into its type: the
//! schedule ([`Schedule`](crate::schedule::Schedule)), the send window ([`SendWindow`]),
//! the default language and country, the rates (never zero), the inbox glob. Its error
//! names the key. What serde cannot see (ranges, one key against another) is checked
//! once after, section by section. The daemon, the steps and the limiters take these
//! values as they are.
//!
//! This file holds [`Config`], its loading and the validation pass; each section's type
//! lives in a submodule (`bank`, `cm`, `csv`, `daemon`, `mail`, `merchant`, `reminders`,
//! `secrets`, `storage`) and is re-exported here, so every type is `config::X`.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod bank;
mod cm;
mod csv;
mod daemon;
mod mail;
mod merchant;
mod reminders;
mod secrets;
mod storage;

pub use bank::{Bank, normalise_account};
pub use cm::{Cm, IdealQr};
pub use csv::{
    ColumnNames, Columns, CsvSettings, DecimalSeparator, Delimiter, Encoding, Settlement,
};
pub use daemon::Daemon;
pub use mail::{Email, MailTransport, Mailbox, SmtpTls};
pub use merchant::{Merchant, Reconciliation};
pub use reminders::{Reminders, SendWindow};
pub use secrets::{SecretError, SecretSource};
pub use storage::{Inbox, Storage};

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
    /// `[bank]`: the merchant's own bank statements.
    pub bank: Bank,
    /// `[daemon]`: the schedule and the listeners.
    pub daemon: Daemon,
    /// The file this was read from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
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
        abs(&mut self.bank.inbox);
        abs(&mut self.bank.archive_dir);
        abs(&mut self.bank.rejected_dir);
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

    /// Checks the values serde cannot: formats, ranges, shapes; section by section, the
    /// first problem named with its key.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.check().map_err(|(key, message)| ConfigError::Key {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        })
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        self.csv.validate()?;
        self.cm.validate()?;
        self.email.validate()?;
        self.merchant.validate()?;
        self.reminders.validate(&self.merchant)?;
        self.reconciliation.validate()?;
        self.bank.validate()?;
        self.ideal_qr.validate()?;
        self.daemon.validate()
    }
}

/// A count that must be at least 1 (`cm.burst`): zero is refused as it is read.
fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    NonZeroU32::new(u32::deserialize(d)?)
        .ok_or_else(|| serde::de::Error::custom("must be at least 1"))
}

/// Reads a string value and parses it with `parse`, once, at load: its error, in plain
/// words, is reported under the key being read (`daemon.schedule`).
fn parsed<'de, D, T, E>(d: D, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: std::fmt::Display,
{
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
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

/// What the section tests share.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use super::{Config, ConfigError};

    /// `text` read as if from `/etc/x/invoice-sync.toml`.
    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/x/invoice-sync.toml"))
    }

    /// Asserts that `key` (`section.name`) set to `value` (TOML) is refused at load, with
    /// the key named and `why` said.
    pub(super) fn assert_refused(key: &str, value: &str, why: &str) {
        let (section, name) = key.split_once('.').expect("section.name");
        let e = parse(&format!("[{section}]\n{name} = {value}\n")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("key `{key}`")), "{msg}");
        assert!(msg.contains(why), "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_refused, parse};
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_match_the_product_contract() {
        let c = parse("").unwrap();
        assert_eq!(c.inbox.pattern.as_str(), "*.csv");
        assert_eq!(c.inbox.settle_seconds, 5);
        assert_eq!(c.csv.delimiter, Delimiter::Auto);
        assert_eq!(c.csv.encoding, Encoding::Auto);
        assert_eq!(c.csv.date_formats, ["%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y"]);
        assert_eq!(c.csv.paid_values, ["paid", "betaald", "voldaan"]);
        assert_eq!(c.csv.settlement, Settlement::Status);
        assert_eq!(c.csv.columns.outstanding.0, ["outstanding"]);
        assert_eq!(c.cm.requests_per_second.get(), 10);
        assert_eq!(c.cm.max_in_flight, 8);
        assert_eq!(c.daemon.callback_path, "/callback");
        assert_eq!(
            c.storage.database,
            PathBuf::from("/var/lib/invoice-sync/invoice-sync.db")
        );
    }

    /// The configs the project ships read into the typed values they spell.
    #[test]
    fn the_shipped_configs_load_into_typed_values() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["samples/invoice-sync.toml", "packaging/invoice-sync.toml"] {
            let c = Config::load(&repo.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(c.daemon.schedule.to_string(), "0 */5 * * * *", "{file}");
            assert_eq!(c.reminders.send_window.to_string(), "09:00-17:00", "{file}");
            assert_eq!(c.cm.default_language.as_str(), "nl", "{file}");
            assert_eq!(c.cm.default_country.as_str(), "NL", "{file}");
            assert_eq!(c.cm.requests_per_second.get(), 10, "{file}");
            assert_eq!(c.cm.burst.get(), 10, "{file}");
            assert_eq!(c.email.messages_per_second.get(), 10, "{file}");
        }
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

    /// Rates are read into non-zero numbers: the limiters take them as they are, with no
    /// zero raised to one behind the operator's back.
    #[test]
    fn rates_are_non_zero_and_a_zero_is_named() {
        let c =
            parse("[cm]\nrequests_per_second = 3\nburst = 2\n[email]\nmessages_per_second = 7\n")
                .unwrap();
        assert_eq!(
            (
                c.cm.requests_per_second.get(),
                c.cm.burst.get(),
                c.email.messages_per_second.get()
            ),
            (3, 2, 7)
        );
        for key in [
            "cm.requests_per_second",
            "cm.burst",
            "email.messages_per_second",
        ] {
            assert_refused(key, "0", "must be at least 1");
            assert_refused(key, "-1", "expected a whole number");
        }
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
}
