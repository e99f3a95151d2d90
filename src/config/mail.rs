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
    /// The sender, `Name <address>`; its display name signs the mails.
    pub from: String,
    /// The Reply-To address, when replies should go elsewhere.
    pub reply_to: Option<String>,
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
            from: String::new(),
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
        // Read here as the mail step reads them, so that `check` and the first cycle
        // refuse a sender the relay would never see instead of failing every mail.
        for (key, value) in [
            ("email.from", Some(self.from.as_str())),
            ("email.reply_to", self.reply_to.as_deref()),
        ] {
            if let Some(value) = value.filter(|v| !v.trim().is_empty())
                && let Some(why) = bad_mailbox(value)
            {
                return Err((key, why));
            }
        }
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
