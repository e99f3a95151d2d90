//! `[cm]` and `[ideal_qr]`: the CM accounts, their limits and defaults.

use std::num::NonZeroU32;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::SecretSource;
use crate::domain::{Country, Language};

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
    #[serde(deserialize_with = "super::at_least_one")]
    pub requests_per_second: NonZeroU32,
    /// How many requests may start at once before the rate applies.
    #[serde(deserialize_with = "super::at_least_one")]
    pub burst: NonZeroU32,
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
    #[serde(deserialize_with = "language")]
    pub default_language: Language,
    /// ISO 3166-1 alpha-2 country when a row has none (payment methods shown).
    #[serde(deserialize_with = "country")]
    pub default_country: Country,
}

impl Default for Cm {
    fn default() -> Self {
        Self {
            base_url: "https://api.cmpayments.com".into(),
            client_id: String::new(),
            client_secret: None,
            client_secret_env: None,
            client_secret_file: None,
            requests_per_second: NonZeroU32::new(10).expect("not zero"),
            burst: NonZeroU32::new(10).expect("not zero"),
            max_in_flight: 8,
            timeout_seconds: 30,
            callback_url: None,
            link_expiry_days_after_due: 30,
            provisional_expiry_hours: 48,
            default_language: Language::parse("NL").expect("an ISO 639-1 code"),
            default_country: Country::parse("NL").expect("an ISO 3166-1 code"),
        }
    }
}

impl Cm {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_in_flight == 0 {
            return Err(("cm.max_in_flight", "must be at least 1".into()));
        }
        if self.provisional_expiry_hours == 0 {
            return Err((
                "cm.provisional_expiry_hours",
                "must be at least 1 (a link is created to expire this many hours ahead until it is recorded)".into(),
            ));
        }
        if self.timeout_seconds == 0 {
            return Err(("cm.timeout_seconds", "must be at least 1".into()));
        }
        Ok(())
    }

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
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.enabled
            && self
                .return_url
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
        {
            return Err((
                "ideal_qr.return_url",
                "is required when ideal_qr.enabled = true (the iDEAL QR API needs a return URL)"
                    .into(),
            ));
        }
        if self.description.trim().is_empty() {
            return Err((
                "ideal_qr.description",
                "must not be empty (the iDEAL QR API needs a description)".into(),
            ));
        }
        if !(100..=2000).contains(&self.size) {
            return Err(("ideal_qr.size", "must be between 100 and 2000".into()));
        }
        Ok(())
    }

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

/// `cm.default_language`, parsed once as it is read.
fn language<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Language, D::Error> {
    super::parsed(d, |s| {
        Language::parse(s).map_err(|_| format!("`{s}` is not an ISO 639-1 code"))
    })
}

/// `cm.default_country`, parsed once as it is read.
fn country<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Country, D::Error> {
    super::parsed(d, |s| {
        Country::parse(s).map_err(|_| format!("`{s}` is not an ISO 3166-1 alpha-2 code"))
    })
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_refused, parse};

    /// The defaults are read once into the codes a link and a mail use, in any case.
    #[test]
    fn the_default_language_and_country_are_read_into_codes() {
        let c = parse("[cm]\ndefault_language = \"EN\"\ndefault_country = \"gb\"\n").unwrap();
        assert_eq!(c.cm.default_language.as_str(), "en");
        assert_eq!(c.cm.default_country.as_str(), "GB");
        let c = parse("").unwrap();
        assert_eq!(
            (
                c.cm.default_language.as_str(),
                c.cm.default_country.as_str()
            ),
            ("nl", "NL")
        );
    }

    #[test]
    fn a_bad_default_code_is_refused_at_load_with_the_key_named() {
        assert_refused(
            "cm.default_language",
            "\"nld\"",
            "`nld` is not an ISO 639-1 code",
        );
        assert_refused(
            "cm.default_country",
            "\"UK\"",
            "`UK` is not an ISO 3166-1 alpha-2 code",
        );
    }
}
