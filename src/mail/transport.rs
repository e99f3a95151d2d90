//! Transports: handing a built message to an SMTP relay or writing it as an `.eml` file.
//!
//! Owns the connection to the relay (plain, STARTTLS required, or implicit TLS; optional
//! AUTH; one session kept open so that it carries many mails; a bound on every step), the
//! rate limit of `email.messages_per_second`, and the one decision the outbox needs from
//! a failure: [`SendError::Transient`] (keep it queued, try again in a later cycle) or
//! [`SendError::Permanent`] (this mail will never be accepted: mark it failed). Both carry
//! the relay's reply text. It never touches the database, never retries by itself and
//! never puts the SMTP password in an error or a log line.
//!
//! # How failures are sorted
//!
//! - connection refused, DNS, TLS, I/O errors, timeouts, `421` (service not available):
//!   transient — the relay is unavailable, which is one fault for the whole queue;
//! - another 4xx reply to the mail's own MAIL, RCPT or DATA: deferred — about this mail
//!   (a greylisted or full mailbox), so this mail alone backs off;
//! - any failure while opening the session (greeting, EHLO, STARTTLS, AUTH), even a 5xx
//!   such as `535` for a wrong password: transient. It says nothing about the mail, and
//!   a settings mistake must not mark a whole queue failed;
//! - a 5xx reply to the mail's own MAIL, RCPT or DATA: permanent;
//! - a mail the relay cannot take by what it offers in its EHLO reply: permanent, in plain
//!   words. An address with a non-ASCII local part (`rené@example.com`) needs SMTPUTF8
//!   (RFC 6531), which lettre uses when the relay offers it; to a relay that does not,
//!   such a mail can never go, and fails with [`NO_SMTPUTF8`] before any command is sent
//!   (the session stays open for the next mail). `check` says whether the relay offers it.
//!
//! A relay that answers 5xx to every recipient (say `554 relay access denied` because
//! the login is missing) therefore fails mails permanently, with that reply for `status`.
//!
//! A timeout after the data was sent may hide a delivery that did happen; the retry then
//! carries the same Message-ID ([`super::message_id`]), so the receiving side can tell.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, Tls, TlsParameters,
};
use lettre::transport::smtp::extension::{ClientId, Extension};
use secrecy::ExposeSecret;

use super::MailError;
use crate::config::{Email, MailTransport, SmtpTls};

/// Why a mail to an address with a non-ASCII local part failed for good: the relay does
/// not offer SMTPUTF8, so it cannot take such an address.
pub const NO_SMTPUTF8: &str = "the mail server does not accept non-ASCII addresses (SMTPUTF8)";

/// What `check` learns about the mail transport besides "it answers".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayInfo {
    /// Whether the relay offers SMTPUTF8 (mail to `rené@example.com` needs it); `None`
    /// for the file transport, which writes any address.
    pub smtputf8: Option<bool>,
}

/// The outcome of a failed send, as the outbox must act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: the relay was unreachable, slow, refused the session, or answered
    /// 4xx. The text says what happened (with the reply, when there was one).
    #[error("mail not sent, will retry: {0}")]
    Transient(String),
    /// The relay answered 4xx about this mail (a recipient greylisted, a mailbox full,
    /// its data refused for now): this mail backs off, the others go on.
    #[error("mail deferred by the relay, will retry: {0}")]
    Deferred(String),
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
            SendError::Transient(s) | SendError::Deferred(s) | SendError::Permanent(s) => s,
        }
    }
}

/// Where mails go: an SMTP relay or a folder of `.eml` files.
///
/// Built once per process (or cycle) and reused: the SMTP variant keeps its connection
/// open between mails. `send` and friends must run inside a Tokio runtime.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per process: size does not matter, access does
pub enum Mailer {
    /// An SMTP relay, `email.transport = "smtp"`.
    Smtp(SmtpMailer),
    /// One `.eml` file per mail in `email.file_dir`, `email.transport = "file"`.
    File(FileMailer),
}

impl Mailer {
    /// The mailer `[email]` describes. Checks that a sender is set (the config read it, and
    /// `reply_to`, as mailboxes), reads the CA file and the SMTP password (when a username
    /// is set), creates `file_dir` for the file transport. Does not connect: the first send
    /// (or [`Mailer::check_relay`]) does.
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
    /// session (connect, TLS, AUTH, NOOP), or a writable `file_dir`; and what the relay
    /// offers: whether it takes addresses with non-ASCII local parts (SMTPUTF8).
    pub async fn check_relay(&self) -> Result<RelayInfo, SendError> {
        match self {
            Mailer::Smtp(smtp) => smtp.test_connection().await.map(|smtputf8| RelayInfo {
                smtputf8: Some(smtputf8),
            }),
            Mailer::File(file) => file
                .test_connection()
                .map(|()| RelayInfo { smtputf8: None }),
        }
    }

    /// Closes the open SMTP session politely (QUIT). Optional: dropping closes it too.
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
    // The sender and Reply-To were read as mailboxes when the config was loaded.
    if cfg.from.is_none() {
        return Err(MailError::Config(
            "`email.from` is not set: mails need a sender such as \"Accounts <billing@merchant.example>\"".into(),
        ));
    }
    Ok(())
}

/// An SMTP relay, reached through one session that carries every mail in turn.
///
/// The session is opened on first use (connect, EHLO, STARTTLS, AUTH), kept open after
/// each mail and checked with NOOP before the next; a session that broke, timed out or
/// was refused is dropped and the next mail opens a new one. Mails are handed over one
/// at a time, as SMTP allows on one connection.
///
/// Not lettre's `AsyncSmtpTransport` pool: that pool hands a used connection back from a
/// spawned task, so on a multi-thread runtime the next mail often finds the pool empty
/// and opens a second connection (measured: two connections alternating). Holding the
/// session here makes "one connection for many mails" deterministic, and tells apart a
/// failure to open the session (the relay or our settings: transient) from a refusal of
/// the mail itself (5xx to MAIL, RCPT or DATA: permanent).
pub struct SmtpMailer {
    host: String,
    port: u16,
    tls: Tls,
    /// The rustls setup for `smtp_tls = "tls"`: the same roots as lettre's STARTTLS
    /// (webpki roots and `smtp_ca_file`), used on our own socket.
    implicit_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    reuse: bool,
    endpoint: String,
    session: tokio::sync::Mutex<Option<AsyncSmtpConnection>>,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("endpoint", &self.endpoint)
            .field("login", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .field("reuse", &self.reuse)
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
        let (tls, mode) = match cfg.smtp_tls {
            SmtpTls::None => (Tls::None, "plain"),
            SmtpTls::Starttls => (Tls::Required(tls_parameters(host, cfg)?), "starttls"),
            SmtpTls::Tls => (Tls::Wrapper(tls_parameters(host, cfg)?), "tls"),
        };
        let mut credentials = None;
        if let Some(user) = cfg.smtp_username.as_deref().filter(|u| !u.is_empty()) {
            let password = cfg.smtp_password_source().resolve()?;
            credentials = Some(Credentials::new(
                user.to_string(),
                password.expose_secret().to_string(),
            ));
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if cfg.smtp_tls == SmtpTls::None && !loopback {
                tracing::warn!(
                    host,
                    "email.smtp_username is set but email.smtp_tls = \"none\": the login would cross the network unencrypted; use \"starttls\" or \"tls\""
                );
            }
        }
        let implicit_tls = match cfg.smtp_tls {
            SmtpTls::Tls => Some(implicit_tls_config(cfg)?),
            _ => None,
        };
        Ok(SmtpMailer {
            host: host.to_string(),
            port: cfg.smtp_port,
            tls,
            implicit_tls,
            credentials,
            hello: ClientId::default(),
            timeout: Duration::from_secs(cfg.smtp_timeout_seconds),
            reuse: true,
            endpoint: format!("{host}:{} ({mode})", cfg.smtp_port),
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// One connection per mail instead of a reused one: for relays that handle long-lived
    /// sessions badly, and for the benchmark that measures what reuse is worth.
    pub fn without_connection_reuse(mut self) -> Self {
        self.reuse = false;
        self
    }

    /// Connect, EHLO, STARTTLS (when required), AUTH (when a username is set).
    async fn open(&self) -> Result<AsyncSmtpConnection, OpenFailure> {
        let stream = self.connect_stream().await?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let Tls::Required(parameters) = &self.tls {
            conn.starttls(parameters.clone(), &self.hello).await?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(conn)
    }

    /// The TCP connection to the relay, with Nagle's algorithm off (TCP_NODELAY), and the
    /// TLS handshake on it for implicit TLS.
    ///
    /// lettre writes a mail's closing `.` apart from its body; with Nagle on, that last
    /// small segment waits until the relay ACKs the body, and relays (Postfix, aiosmtpd)
    /// delay their ACKs by ~40 ms: every mail stalled that long, capping delivery near 22
    /// mails a second whatever `messages_per_second` said. lettre's own connect leaves
    /// Nagle on, so the socket is made here and handed over.
    async fn connect_stream(&self) -> Result<Box<dyn AsyncTokioStream>, OpenFailure> {
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(OpenFailure::Io(format!("cannot connect: {e}"))),
            Err(_) => return Err(OpenFailure::Io("cannot connect: timed out".into())),
        };
        tcp.set_nodelay(true)
            .map_err(|e| OpenFailure::Io(format!("cannot set TCP_NODELAY: {e}")))?;
        match &self.tls {
            Tls::Wrapper(_) => {
                let config = self
                    .implicit_tls
                    .clone()
                    .ok_or_else(|| OpenFailure::Io("implicit TLS is not set up".into()))?;
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| OpenFailure::Io(format!("`{}`: {e}", self.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| OpenFailure::Io(format!("TLS handshake failed: {e}")))?;
                Ok(Box::new(ImplicitTls(tls)))
            }
            _ => Ok(Box::new(tcp)),
        }
    }

    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let mut session = self.session.lock().await;
        // One deadline for the whole attempt. On timeout the connection, which `transact`
        // took out of the slot, is dropped: abandoned mid-command, it is never reused.
        match tokio::time::timeout(self.timeout, self.transact(&mut session, msg)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Transient(self.timed_out())),
        }
    }

    async fn transact(
        &self,
        session: &mut Option<AsyncSmtpConnection>,
        msg: &Message,
    ) -> Result<(), SendError> {
        // The open session, if it still answers NOOP; else a new one.
        let reused = match session.take() {
            Some(mut conn) if self.reuse => conn.test_connected().await.then_some(conn),
            _ => None,
        };
        let mut conn = match reused {
            Some(conn) => conn,
            None => self.open().await.map_err(|e| self.session_failed(&e))?,
        };
        // lettre refuses this too, as an "internal client error"; here it is said in
        // plain words. Nothing was sent, so the session serves the next mail.
        if needs_smtputf8(msg.envelope()) && !offers_smtputf8(&conn) {
            if self.reuse {
                *session = Some(conn);
            } else {
                let _ = conn.quit().await;
            }
            return Err(SendError::Permanent(NO_SMTPUTF8.into()));
        }
        match conn.send(msg.envelope(), &msg.formatted()).await {
            Ok(_) if self.reuse => {
                *session = Some(conn);
                Ok(())
            }
            Ok(_) => {
                let _ = conn.quit().await;
                Ok(())
            }
            // A refusal of this mail. lettre has closed the session; the next mail opens
            // a new one.
            Err(e) if e.is_permanent() || e.is_client() => Err(SendError::Permanent(describe(&e))),
            // A 4xx about this mail; 421 is the relay closing its service, not a word
            // about the mail.
            Err(e) if e.is_transient() && e.status().is_some_and(|c| c.to_string() != "421") => {
                Err(SendError::Deferred(describe(&e)))
            }
            Err(e) => Err(SendError::Transient(format!(
                "{}: {}",
                self.endpoint,
                describe(&e)
            ))),
        }
    }

    /// A session that could not be opened says nothing about the mail: transient, even
    /// for a 5xx such as a refused login, so that a settings mistake fails no mail.
    fn session_failed(&self, e: &OpenFailure) -> SendError {
        if e.is_permanent() {
            SendError::Transient(format!(
                "{}: the relay refuses the session ({}); check the [email] settings — mails stay queued",
                self.endpoint,
                e.describe()
            ))
        } else {
            SendError::Transient(format!("{}: {}", self.endpoint, e.describe()))
        }
    }

    fn timed_out(&self) -> String {
        format!(
            "{}: no answer within {} s (email.smtp_timeout_seconds)",
            self.endpoint,
            self.timeout.as_secs()
        )
    }

    /// For `check`: a 5xx while opening the session (a refused login) is permanent here,
    /// because it will not go away until the settings change. Ok says whether the relay
    /// offers SMTPUTF8 (after STARTTLS, when used: its second EHLO reply).
    async fn test_connection(&self) -> Result<bool, SendError> {
        let check = async {
            let mut conn = self.open().await.map_err(|e| {
                let text = format!("{}: {}", self.endpoint, e.describe());
                if e.is_permanent() {
                    SendError::Permanent(text)
                } else {
                    SendError::Transient(text)
                }
            })?;
            let smtputf8 = offers_smtputf8(&conn);
            let answered = conn.test_connected().await;
            let _ = conn.quit().await;
            if answered {
                Ok(smtputf8)
            } else {
                Err(SendError::Transient(format!(
                    "{}: connected, but the relay does not answer NOOP",
                    self.endpoint
                )))
            }
        };
        match tokio::time::timeout(self.timeout, check).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Transient(self.timed_out())),
        }
    }

    async fn shutdown(&self) {
        if let Some(mut conn) = self.session.lock().await.take() {
            let _ = tokio::time::timeout(self.timeout, conn.quit()).await;
        }
    }
}

/// Why a session could not be opened: our own connect, or lettre's protocol steps.
#[derive(Debug)]
enum OpenFailure {
    Io(String),
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for OpenFailure {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        OpenFailure::Smtp(e)
    }
}

impl OpenFailure {
    /// A 5xx while opening the session (a refused login): it will not go away by itself.
    fn is_permanent(&self) -> bool {
        matches!(self, OpenFailure::Smtp(e) if e.is_permanent() || e.is_client())
    }

    fn describe(&self) -> String {
        match self {
            OpenFailure::Io(text) => text.clone(),
            OpenFailure::Smtp(e) => describe(e),
        }
    }
}

/// Implicit TLS over our own socket, as the stream lettre's `connect_with_transport`
/// takes.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Whether a mail's envelope needs SMTPUTF8: an address (sender or recipient) that is not
/// ASCII, as lettre decides it.
fn needs_smtputf8(envelope: &lettre::address::Envelope) -> bool {
    envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii())
}

/// Whether the relay's EHLO reply offered SMTPUTF8.
fn offers_smtputf8(conn: &AsyncSmtpConnection) -> bool {
    conn.server_info().supports_feature(Extension::SmtpUtfEight)
}

/// `550 5.1.1 <x@y>: mailbox unavailable` for a reply; for lettre's own refusal of a mail
/// the relay cannot take, plain words; lettre's description otherwise.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    match (e.status(), std::error::Error::source(e)) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        (None, Some(text)) if e.is_client() => {
            let text = text.to_string();
            if text.contains("SMTPUTF8") {
                NO_SMTPUTF8.into()
            } else if text.contains("8BITMIME") {
                "the mail server does not accept 8-bit mail (8BITMIME)".into()
            } else {
                format!("the mail cannot be handed to this mail server: {text}")
            }
        }
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

/// The rustls client setup for implicit TLS: the platform's trust store (the one
/// verifier reqwest and lettre's STARTTLS use too) plus the certificates of
/// `email.smtp_ca_file`, on the one crypto provider (ring).
fn implicit_tls_config(cfg: &Email) -> Result<std::sync::Arc<rustls::ClientConfig>, MailError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut extra = Vec::new();
    if let Some(path) = &cfg.smtp_ca_file {
        read_ca_file(path)?; // the same checks and messages as for STARTTLS
        let pem = std::fs::read(path)
            .map_err(|e| MailError::io_path("cannot read email.smtp_ca_file", path, e))?;
        extra.extend(CertificateDer::pem_slice_iter(&pem).flatten());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| MailError::Config(format!("cannot set up TLS: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MailError::Config(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
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

/// The name a mail is written under until it is whole.
const PARTIAL_PREFIX: &str = ".partial-";

/// Writes each mail as one `.eml` file named after the invoice and revision it announces
/// (`INV-1-r2.eml`; `-2`, `-3`, … for a resend or a repeat), for demos and dry runs:
/// nothing leaves the machine, and an operator finds a customer's mail by its reference.
pub struct FileMailer {
    dir: PathBuf,
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
        // A process killed while writing a mail leaves its partial file behind; the mail
        // itself is still queued (it was never marked sent) and is written again whole.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(PARTIAL_PREFIX)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(FileMailer {
            dir: dir.to_path_buf(),
        })
    }

    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let stem = eml_stem(msg);
        let bytes = msg.formatted();
        let dir = self.dir.clone();
        let write = move || -> std::io::Result<PathBuf> {
            // Written whole under a temporary name, then given a name no other mail has.
            let mut tmp = tempfile::Builder::new()
                .prefix(PARTIAL_PREFIX)
                .suffix(".tmp")
                .tempfile_in(&dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            let mut n = 1;
            loop {
                let name = if n == 1 {
                    format!("{stem}.eml")
                } else {
                    format!("{stem}-{n}.eml")
                };
                match tmp.persist_noclobber(dir.join(&name)) {
                    Ok(_) => return Ok(dir.join(name)),
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                        tmp = e.file;
                        n += 1;
                    }
                    Err(e) => return Err(e.error),
                }
            }
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| SendError::Transient(format!("the mail writer failed: {e}")))?
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

/// The file name (without `.eml`) for a mail: its invoice and revision (`INV-1-r2`) from
/// the [`super::message::INVOICE_HEADER`], with anything a file name should not hold
/// replaced by `_`; `mail` for a message without it.
fn eml_stem(msg: &Message) -> String {
    let Some(tag) = msg.headers().get_raw(super::message::INVOICE_HEADER) else {
        return "mail".into();
    };
    let stem: String = tag
        .trim()
        .replace(' ', "-")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    match stem.trim_start_matches('.') {
        "" => "mail".into(),
        s => s.to_string(),
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
    /// `mailer` limited to `messages_per_second`, with a burst of as many.
    pub fn new(mailer: Mailer, messages_per_second: NonZeroU32) -> MailSender {
        MailSender {
            mailer,
            limiter: RateLimiter::direct(Quota::per_second(messages_per_second)),
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
