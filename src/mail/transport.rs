//! Transports: handing a built message to an SMTP relay or writing it as an `.eml` file.
//!
//! Owns the connection to the relay (plain, STARTTLS required, or implicit TLS; optional
//! AUTH; a pool so that one connection carries many mails; a bound on every attempt), the
//! rate limit of `email.messages_per_second`, and the one decision the outbox needs from
//! a failure: [`SendError::Transient`] (keep it queued, try again in a later cycle) or
//! [`SendError::Permanent`] (this mail will never be accepted: mark it failed). Both carry
//! the relay's reply text. It never touches the database, never retries by itself and
//! never puts the SMTP password in an error or a log line.
//!
//! # How failures are sorted
//!
//! - connection refused, DNS, TLS, I/O errors, timeouts, 4xx replies: transient;
//! - a 5xx reply (or a refusal by lettre itself, such as a non-ASCII address the relay
//!   cannot take) is permanent *only if the session itself still works*: the mailer then
//!   opens a fresh session (EHLO, TLS, AUTH, NOOP). If that fails too, the problem is the
//!   relay or our settings (a wrong password answers 535 for every mail), not this
//!   mail, and the error is transient, so that no queue is marked failed by a config typo.
//!
//! A timeout after the data was sent may hide a delivery that did happen; the retry then
//! carries the same Message-ID ([`super::message_id`]), so the receiving side can tell.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::MailError;
use crate::config::{Email, MailTransport, SmtpTls};

/// How many pooled connections may stay open to the relay. Sending is sequential in the
/// cycle, so one is used; the headroom serves concurrent callers.
const POOL_MAX_SIZE: u32 = 4;
/// How long an idle pooled connection is kept before it is closed.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The outcome of a failed send, as the outbox must act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: the relay was unreachable, slow, refused the session, or answered
    /// 4xx. The text says what happened (with the reply, when there was one).
    #[error("mail not sent, will retry: {0}")]
    Transient(String),
    /// The relay refused this mail for good (5xx): retrying will not help. The text is the
    /// relay's reply, e.g. `550 5.1.1 <x@example.com>: mailbox unavailable`.
    #[error("mail refused: {0}")]
    Permanent(String),
}

impl SendError {
    /// True for [`SendError::Permanent`].
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent(_))
    }

    /// The reason, without the "will retry" / "refused" prefix, for `status`.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient(s) | SendError::Permanent(s) => s,
        }
    }
}

/// Where mails go: an SMTP relay or a folder of `.eml` files.
///
/// Built once per process (or cycle) and reused: the SMTP variant keeps its connection
/// open between mails. Must be used, and dropped, inside a Tokio runtime.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per process: size does not matter, access does
pub enum Mailer {
    /// An SMTP relay, `email.transport = "smtp"`.
    Smtp(SmtpMailer),
    /// One `.eml` file per mail in `email.file_dir`, `email.transport = "file"`.
    File(FileMailer),
}

impl Mailer {
    /// The mailer `[email]` describes. Checks `from` and `reply_to`, reads the CA file and
    /// the SMTP password (when a username is set), creates `file_dir` for the file
    /// transport. Does not connect: the first send (or [`Mailer::test_connection`]) does.
    pub fn from_config(cfg: &Email) -> Result<Mailer, MailError> {
        check_sender(cfg)?;
        match cfg.transport {
            MailTransport::File => FileMailer::new(&cfg.file_dir).map(Mailer::File),
            MailTransport::Smtp => SmtpMailer::from_config(cfg).map(Mailer::Smtp),
        }
    }

    /// Sends one message. See the module docs for how failures are sorted.
    pub async fn send(&self, msg: &Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(smtp) => smtp.send(msg).await,
            Mailer::File(file) => file.send(msg).await,
        }
    }

    /// Checks that mail could be handed over now, for the `check` command: a full SMTP
    /// session (connect, TLS, AUTH, NOOP), or a writable `file_dir`.
    pub async fn test_connection(&self) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(smtp) => smtp.test_connection().await,
            Mailer::File(file) => file.test_connection(),
        }
    }

    /// Closes pooled connections politely (QUIT). Optional: dropping closes them too.
    pub async fn shutdown(&self) {
        if let Mailer::Smtp(smtp) = self {
            smtp.shutdown().await;
        }
    }

    /// Where mail goes, for logs and `check`: `smtp.example:587 (starttls)` or a folder.
    /// Never contains the password.
    pub fn endpoint(&self) -> String {
        match self {
            Mailer::Smtp(smtp) => smtp.endpoint.clone(),
            Mailer::File(file) => file.dir.display().to_string(),
        }
    }
}

fn check_sender(cfg: &Email) -> Result<(), MailError> {
    if cfg.from.trim().is_empty() {
        return Err(MailError::Config(
            "`email.from` is not set: mails need a sender such as \"Accounts <billing@merchant.example>\"".into(),
        ));
    }
    let parse = |key: &'static str, value: &str| -> Result<(), MailError> {
        if value.contains(|c: char| c.is_control()) {
            return Err(MailError::HeaderInjection {
                field: key,
                value: value.into(),
            });
        }
        value
            .trim()
            .parse::<Mailbox>()
            .map(drop)
            .map_err(|e| MailError::Address {
                field: key,
                value: value.to_string(),
                reason: e.to_string(),
            })
    };
    parse("sender (email.from)", &cfg.from)?;
    if let Some(reply_to) = cfg.reply_to.as_deref().filter(|r| !r.trim().is_empty()) {
        parse("reply address (email.reply_to)", reply_to)?;
    }
    Ok(())
}

/// An SMTP relay with a pool of connections, built lazily on first use.
pub struct SmtpMailer {
    builder: AsyncSmtpTransportBuilder,
    /// Built on first use (it needs a runtime); replaced after a timeout, because a
    /// connection abandoned mid-command must never be reused.
    transport: Mutex<Option<AsyncSmtpTransport<Tokio1Executor>>>,
    timeout: Duration,
    endpoint: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    fn from_config(cfg: &Email) -> Result<SmtpMailer, MailError> {
        let host = cfg.smtp_host.trim();
        if host.is_empty() {
            return Err(MailError::Config("`email.smtp_host` is empty".into()));
        }
        if cfg.smtp_timeout_seconds == 0 {
            return Err(MailError::Config(
                "`email.smtp_timeout_seconds` must be at least 1".into(),
            ));
        }
        let timeout = Duration::from_secs(cfg.smtp_timeout_seconds);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(cfg.smtp_port)
            .timeout(Some(timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(POOL_MAX_SIZE)
                    .idle_timeout(POOL_IDLE),
            );
        let mode = match cfg.smtp_tls {
            SmtpTls::None => {
                builder = builder.tls(Tls::None);
                "plain"
            }
            SmtpTls::Starttls => {
                builder = builder.tls(Tls::Required(tls_parameters(host, cfg)?));
                "starttls"
            }
            SmtpTls::Tls => {
                builder = builder.tls(Tls::Wrapper(tls_parameters(host, cfg)?));
                "tls"
            }
        };
        if let Some(user) = cfg.smtp_username.as_deref().filter(|u| !u.is_empty()) {
            let password = cfg.smtp_password_source().resolve()?;
            builder = builder
                .credentials(Credentials::new(
                    user.to_string(),
                    password.expose_secret().to_string(),
                ))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if cfg.smtp_tls == SmtpTls::None && !loopback {
                tracing::warn!(
                    host,
                    "email.smtp_username is set but email.smtp_tls = \"none\": the login would cross the network unencrypted; use \"starttls\" or \"tls\""
                );
            }
        }
        Ok(SmtpMailer {
            builder,
            transport: Mutex::new(None),
            timeout,
            endpoint: format!("{host}:{} ({mode})", cfg.smtp_port),
        })
    }

    /// One connection per mail instead of a reused one: for relays that handle long-lived
    /// sessions badly, and for the benchmark that measures what reuse is worth.
    pub fn without_connection_reuse(mut self) -> Self {
        self.builder = self
            .builder
            .pool_config(PoolConfig::new().max_size(0).idle_timeout(POOL_IDLE));
        *self.transport.get_mut().expect("not poisoned") = None;
        self
    }

    fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        let mut slot = self.transport.lock().expect("not poisoned");
        slot.get_or_insert_with(|| self.builder.clone().build())
            .clone()
    }

    /// Drops the pool (its connections are closed) so the next send starts afresh.
    fn reset(&self) {
        self.transport.lock().expect("not poisoned").take();
    }

    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let transport = self.transport();
        let raw = msg.formatted();
        match tokio::time::timeout(self.timeout, transport.send_raw(msg.envelope(), &raw)).await {
            Ok(Ok(_)) => {
                // lettre parks the connection in a spawned task; give it the chance to
                // run so that the next mail finds the connection instead of opening one.
                tokio::task::yield_now().await;
                Ok(())
            }
            Ok(Err(e)) => Err(self.classify(e, &transport).await),
            Err(_) => {
                self.reset();
                Err(SendError::Transient(self.timed_out()))
            }
        }
    }

    async fn classify(
        &self,
        e: lettre::transport::smtp::Error,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
    ) -> SendError {
        let reason = describe(&e);
        if !(e.is_permanent() || e.is_client()) {
            return SendError::Transient(format!("{}: {reason}", self.endpoint));
        }
        // A 5xx: for this mail, or for every mail (login refused, relay refuses us)?
        match tokio::time::timeout(self.timeout, transport.test_connection()).await {
            Ok(Ok(true)) => SendError::Permanent(reason),
            Ok(Ok(false)) => SendError::Transient(format!(
                "{}: {reason} (and the session does not answer NOOP)",
                self.endpoint
            )),
            Ok(Err(session)) => SendError::Transient(format!(
                "{}: the relay refuses the session itself ({}); check the [email] settings — mails stay queued",
                self.endpoint,
                describe(&session)
            )),
            Err(_) => {
                self.reset();
                SendError::Transient(self.timed_out())
            }
        }
    }

    fn timed_out(&self) -> String {
        format!(
            "{}: no answer within {} s (email.smtp_timeout_seconds)",
            self.endpoint,
            self.timeout.as_secs()
        )
    }

    async fn test_connection(&self) -> Result<(), SendError> {
        let transport = self.transport();
        match tokio::time::timeout(self.timeout, transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(SendError::Transient(format!(
                "{}: connected, but the relay does not answer NOOP",
                self.endpoint
            ))),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(format!(
                "{}: {}",
                self.endpoint,
                describe(&e)
            ))),
            Ok(Err(e)) => Err(SendError::Transient(format!(
                "{}: {}",
                self.endpoint,
                describe(&e)
            ))),
            Err(_) => {
                self.reset();
                Err(SendError::Transient(self.timed_out()))
            }
        }
    }

    async fn shutdown(&self) {
        let transport = self.transport.lock().expect("not poisoned").take();
        if let Some(transport) = transport {
            transport.shutdown().await;
        }
    }
}

/// `550 5.1.1 <x@y>: mailbox unavailable` for a reply; lettre's description otherwise.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    match (e.status(), std::error::Error::source(e)) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        _ => {
            // lettre nests its own errors: "Connection error: Connection error: refused".
            let mut text = e.to_string();
            while let Some((head, rest)) = text.split_once(": ") {
                if !rest.starts_with(&format!("{head}: ")) {
                    break;
                }
                text = rest.to_string();
            }
            text
        }
    }
}

fn tls_parameters(host: &str, cfg: &Email) -> Result<TlsParameters, MailError> {
    // lettre's rustls needs a process-wide provider when more than one is compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = &cfg.smtp_ca_file {
        builder = builder.add_root_certificate(read_ca_file(path)?);
    }
    builder
        .build_rustls()
        .map_err(|e| MailError::Config(format!("cannot set up TLS for {host}: {e}")))
}

fn read_ca_file(path: &Path) -> Result<Certificate, MailError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let pem = std::fs::read(path)
        .map_err(|e| MailError::io_path("cannot read email.smtp_ca_file", path, e))?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            MailError::Config(format!(
                "`email.smtp_ca_file` {}: not a PEM certificate file ({e})",
                path.display()
            ))
        })?
        .len();
    if count == 0 {
        return Err(MailError::Config(format!(
            "`email.smtp_ca_file` {}: holds no PEM certificate",
            path.display()
        )));
    }
    Certificate::from_pem(&pem)
        .map_err(|e| MailError::Config(format!("`email.smtp_ca_file` {}: {e}", path.display())))
}

/// Writes each mail as one `.eml` file (lettre names it by a UUID), for demos and dry
/// runs: nothing leaves the machine.
pub struct FileMailer {
    dir: PathBuf,
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl std::fmt::Debug for FileMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMailer")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FileMailer {
    /// A file mailer writing into `dir`, created if missing.
    pub fn new(dir: &Path) -> Result<FileMailer, MailError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            MailError::io_path("cannot create the mail folder (email.file_dir)", dir, e)
        })?;
        Ok(FileMailer {
            dir: dir.to_path_buf(),
            transport: AsyncFileTransport::new(dir),
        })
    }

    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        self.transport
            .send_raw(msg.envelope(), &msg.formatted())
            .await
            .map(drop)
            .map_err(|e| {
                SendError::Transient(format!(
                    "cannot write the mail into {}: {e}",
                    self.dir.display()
                ))
            })
    }

    fn test_connection(&self) -> Result<(), SendError> {
        tempfile::NamedTempFile::new_in(&self.dir)
            .map(drop)
            .map_err(|e| {
                SendError::Transient(format!("cannot write into {}: {e}", self.dir.display()))
            })
    }
}

/// A [`Mailer`] behind the `email.messages_per_second` limit.
///
/// The limit protects the relay and our sender reputation when a large export produces
/// thousands of mails at once: `send` waits for a permit, then sends.
#[derive(Debug)]
pub struct MailSender {
    mailer: Mailer,
    limiter: DefaultDirectRateLimiter,
}

impl MailSender {
    /// `mailer` limited to `messages_per_second` (at least 1), with a burst of as many.
    pub fn new(mailer: Mailer, messages_per_second: u32) -> MailSender {
        let rate = NonZeroU32::new(messages_per_second).unwrap_or(NonZeroU32::MIN);
        MailSender {
            mailer,
            limiter: RateLimiter::direct(Quota::per_second(rate)),
        }
    }

    /// The mailer and limit `[email]` describes.
    pub fn from_config(cfg: &Email) -> Result<MailSender, MailError> {
        Ok(Self::new(
            Mailer::from_config(cfg)?,
            cfg.messages_per_second,
        ))
    }

    /// Waits for a permit, then sends `msg`.
    pub async fn send(&self, msg: &Message) -> Result<(), SendError> {
        self.limiter.until_ready().await;
        self.mailer.send(msg).await
    }

    /// The mailer, for `test_connection`, `shutdown` and `endpoint`.
    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }
}
