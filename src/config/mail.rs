//! `[email]`: how mail is sent, and who it comes from.

use std::num::NonZeroU32;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::SecretSource;

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
    /// The sender, `Name <address>`; its display name signs the mails. Not set (absent or
    /// blank) is `None`: no mail can go then.
    #[serde(deserialize_with = "optional_mailbox")]
    pub from: Option<Mailbox>,
    /// The Reply-To address, when replies should go elsewhere.
    #[serde(deserialize_with = "optional_mailbox")]
    pub reply_to: Option<Mailbox>,
    /// Overrides of the built-in templates (see *Mail*).
    pub templates_dir: Option<PathBuf>,
    /// Mail rate limit.
    #[serde(deserialize_with = "super::at_least_one")]
    pub messages_per_second: NonZeroU32,
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
            from: None,
            reply_to: None,
            templates_dir: None,
            messages_per_second: NonZeroU32::new(10).expect("not zero"),
            smtp_ca_file: None,
            smtp_timeout_seconds: 30,
        }
    }
}

impl Email {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        // The sender and Reply-To were read as mailboxes at load, as the mail step uses
        // them, so `check` and the first cycle refuse one the relay would never see.
        Ok(())
    }

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

/// A mailbox as `[email]` gives it (`Name <address>` or a bare address), read once, at
/// load, into what the mail carries in its `From:` or `Reply-To:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox(lettre::message::Mailbox);

impl Mailbox {
    /// Reads a mailbox; the reason, in plain words, when it is none a mail can carry.
    pub fn parse(value: &str) -> Result<Mailbox, String> {
        if value.contains(['\r', '\n']) {
            return Err("must be on one line".into());
        }
        value.trim().parse().map(Mailbox).map_err(|_| {
            format!(
                "{value:?} is not a sender address a mail can carry; write it as `Name <billing@example.com>` (quote a name with a comma: `\"Acme, Inc.\" <billing@example.com>`) or just `billing@example.com`"
            )
        })
    }

    /// The mailbox, for the message builder.
    pub fn mailbox(&self) -> &lettre::message::Mailbox {
        &self.0
    }

    /// The name that signs mails: the display name, else the address.
    pub fn signature(&self) -> String {
        self.0
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| self.0.email.to_string())
    }
}

impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A mailbox key: absent or blank is `None`.
fn optional_mailbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mailbox>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    Mailbox::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
