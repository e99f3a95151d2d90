//! Mail: turns one invoice's payment link into a mail and hands it to a relay.
//!
//! This module owns the three steps between "a link is recorded" and "a relay accepted
//! the mail":
//!
//! - [`render`](mod@render): subject, plain text and HTML per language from templates (built in for
//!   `nl`, `en`, `de`, `fr`; overridable from `email.templates_dir`), every CSV value
//!   escaped in HTML;
//! - [`message`]: the MIME message (multipart text + HTML, inline QR image), header values
//!   checked for line breaks, and the deterministic Message-ID per invoice revision;
//! - [`transport`]: SMTP (`none` / `starttls` / `tls`, optional AUTH, one kept-open
//!   connection for many mails) or `.eml` files, with every failure sorted into
//!   [`SendError::Transient`] (the relay is unavailable: keep the queue), [`SendError::Deferred`]
//!   (a 4xx about this mail: back it off) or [`SendError::Permanent`] (mark it failed).
//!
//! It never touches the database and never decides when to retry: the outbox (another
//! module) records the intent, calls [`compose`] and [`MailSender::send`], and stores the
//! outcome. Nothing here logs a secret or puts one in an error.

#![warn(missing_docs)]

pub mod message;
pub mod render;
pub mod transport;

pub use message::{build_message, message_id};
pub use render::{MailContext, QrCode, ReminderContext, RenderedMail, Templates, render};
pub use transport::{
    FileMailer, MailSender, Mailer, NO_SMTPUTF8, RelayInfo, SendError, SmtpMailer,
};

/// Why a mail could not be made, or a mailer could not be set up.
///
/// A `MailError` for one message (a bad address, a line break in a header value, a
/// template that fails on this invoice's data) will not go away by retrying: the outbox
/// marks that mail failed and shows the reason. Errors of setup (config, templates folder,
/// CA file) stop the cycle before any mail is attempted.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A template failed to parse or render.
    #[error("mail template {template}: {message}")]
    Template {
        /// The file (or `built-in <name>`) the template came from.
        template: String,
        /// MiniJinja's explanation, with the line.
        message: String,
    },
    /// A header value carries CR, LF or another control character: refused, so that no
    /// value from an export can add a header (`Bcc:`) or end the header block.
    #[error(
        "the {field} contains a line break or control character ({value:?}); a mail header cannot carry it"
    )]
    HeaderInjection {
        /// Which value, in words (`customer name`).
        field: &'static str,
        /// The value as given, shown escaped.
        value: String,
    },
    /// An address (recipient, From, Reply-To) that does not parse as an e-mail address.
    #[error("the {field} {value:?} is not a valid e-mail address: {reason}")]
    Address {
        /// Which address, in words.
        field: &'static str,
        /// The value as given.
        value: String,
        /// lettre's explanation.
        reason: String,
    },
    /// A link that is not an `http(s)` URL, refused so that no `javascript:` or similar
    /// lands in an `href`.
    #[error("the {field} is not an http(s) URL: {value:?}")]
    Url {
        /// Which link, in words.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// lettre refused to assemble the message.
    #[error("cannot build the mail: {0}")]
    Build(String),
    /// A setting in `[email]` that cannot work; the message names the key.
    #[error("[email] settings: {0}")]
    Config(String),
    /// A file or folder the mail layer needs could not be read or created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The SMTP password could not be had (never contains the password).
    #[error(transparent)]
    Secret(#[from] crate::config::SecretError),
}

impl MailError {
    pub(crate) fn io_path(what: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        MailError::Io {
            what: format!("{what} {}", path.display()),
            source,
        }
    }
}

/// Everything the outbox needs to send: the rate-limited sender (one connection for many
/// mails) and the templates, set up once per process and reused across cycles.
pub struct Postman {
    /// Sends, at most `messages_per_second`.
    pub sender: MailSender,
    /// Built-in templates with `templates_dir` overrides.
    pub templates: Templates,
    /// The `[email]` settings (From, Reply-To).
    pub settings: crate::config::Email,
}

impl Postman {
    /// Sets up the transport and loads the templates; errors name what is wrong.
    pub fn from_config(email: &crate::config::Email) -> Result<Postman, MailError> {
        if email.from.is_none() {
            return Err(MailError::Config(
                "`email.from` is not set; mails need a sender address".into(),
            ));
        }
        Ok(Postman {
            sender: MailSender::from_config(email)?,
            templates: Templates::load(email.templates_dir.as_deref())?,
            settings: email.clone(),
        })
    }

    /// The name that signs mails: the display name of `email.from`, else its address.
    pub fn sender_name(&self) -> String {
        self.settings
            .from
            .as_ref()
            .map(crate::config::Mailbox::signature)
            .unwrap_or_default()
    }

    /// Builds the mail of one outbox row with these templates and settings; see
    /// [`compose`].
    pub fn compose(
        &self,
        ctx: &MailContext,
        revision: i64,
        resend: Option<i64>,
    ) -> Result<(lettre::Message, String), MailError> {
        compose(ctx, revision, resend, &self.templates, &self.settings)
    }
}

/// Renders and builds the mail for one invoice revision, as the outbox sends it, and
/// returns it with its Message-ID.
///
/// The one place that derives the Message-ID (from the invoice reference and revision),
/// which is what lets a receiving system recognise a mail sent twice after a crash as
/// the same one. `resend` (the outbox row of `resend INVOICE`) gives the mail an ID of
/// its own, so that a receiver does not drop it as a duplicate of the first; so does each
/// reminder step (`ctx.reminder`).
pub fn compose(
    ctx: &MailContext,
    revision: i64,
    resend: Option<i64>,
    templates: &Templates,
    email: &crate::config::Email,
) -> Result<(lettre::Message, String), MailError> {
    let rendered = render(ctx, templates)?;
    let key = match (resend, &ctx.reminder) {
        (Some(n), _) => format!("{}#resend-{n}", ctx.invoice_reference),
        // One id per reminder step: a retry of the same step is recognisable as one.
        (None, Some(r)) => format!("{}#reminder{}", ctx.invoice_reference, r.step),
        (None, None) => ctx.invoice_reference.to_string(),
    };
    let Some(from) = &email.from else {
        return Err(MailError::Config(
            "`email.from` is not set; mails need a sender address".into(),
        ));
    };
    let id = message_id(&key, revision, &from.to_string());
    let msg = build_message(
        &rendered,
        ctx,
        from.mailbox(),
        email.reply_to.as_ref().map(crate::config::Mailbox::mailbox),
        &id,
        revision,
    )?;
    Ok((msg, id))
}
