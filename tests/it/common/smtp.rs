//! A real SMTP server on loopback, for the mail tests and the mail benchmark.
//!
//! The SMTP side is `mailin-embedded` (a blocking, thread-pooled server built on the
//! `mailin` protocol state machine): it speaks the protocol, offers STARTTLS with a test
//! certificate and AUTH PLAIN, and calls our [`Handler`] to record mails and to answer
//! 550 / 451 where a test asks for it.
//!
//! What `mailin-embedded` cannot do is stop: `Server::serve` runs forever and gives no
//! handle to close its socket. So the port the client sees belongs to a small
//! hand-rolled piece: a TCP front over tokio on its own thread, which counts connections
//! and relays bytes (STARTTLS included, it never looks inside) to the `mailin-embedded`
//! server on a second loopback port. [`SmtpServer::stop`] closes the front's socket and
//! cuts every open session, so clients get "connection refused"; [`SmtpServer::restart`]
//! listens on the same port again. The front ACKs as ordinary peers do (delayed ACKs,
//! no quick ACKs): a client that leaves Nagle's algorithm on and writes a mail's last
//! segment apart stalls ~40 ms per mail here exactly as it does against Postfix.
//!
//! Two more things `mailin` decides that a test must know:
//! - it offers AUTH only after STARTTLS, so a server with a login also has TLS;
//! - after an error reply to the end of DATA its state machine stays in DATA, so the
//!   451 for [`SmtpServer::fail_next_messages`] also closes the session (as real relays
//!   often do), or the client's QUIT would be read as message text.
//!
//! Start one from a test:
//!
//! ```ignore
//! #[path = "common/smtp.rs"]
//! mod smtp;
//! let server = smtp::SmtpServer::start();                 // plain, no login
//! let server = smtp::SmtpServer::builder()
//!     .require_auth("mailer", "s3cret")                   // implies STARTTLS
//!     .start();
//! let server = smtp::SmtpServer::builder()
//!     .smtputf8()                                         // offers SMTPUTF8
//!     .start();
//! let cfg = server.email_config();                        // [email] pointing at it
//! ```
//!
//! `mailin` knows no SMTPUTF8 (RFC 6531): it neither offers it nor parses the `SMTPUTF8`
//! parameter of MAIL. A server started with [`SmtpServerBuilder::smtputf8`] gets it from
//! the front, which then reads the session line by line: it adds `250-SMTPUTF8` to the
//! EHLO reply and takes the parameter off `MAIL FROM` before `mailin` reads it (counting
//! it, [`SmtpServer::smtputf8_mails`]). The UTF-8 addresses themselves `mailin` takes as
//! they are. Without the option (the default) the front relays bytes untouched.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mailin_embedded::{Action, AuthMechanism, Handler, Response, Server, SslConfig, response};

/// The From address the test configs use.
pub const TEST_FROM: &str = "Accounts <billing@merchant.example>";

/// One mail the server accepted: the envelope and the raw message as received.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses that were accepted.
    pub to: Vec<String>,
    /// The message data, dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
}

impl Delivered {
    /// The message as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The raw value of the first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_string());
            }
        }
        found
    }
}

#[derive(Default)]
struct State {
    delivered: Mutex<Vec<Delivered>>,
    reject_permanent: Mutex<HashSet<String>>,
    reject_transient: Mutex<HashSet<String>>,
    fail_next: AtomicUsize,
    connections: AtomicUsize,
    credentials: Option<(String, String)>,
    logins_refused: AtomicUsize,
    smtputf8: bool,
    smtputf8_mails: AtomicUsize,
}

/// One SMTP session's handler; `mailin-embedded` clones it per connection.
#[derive(Clone)]
struct Session {
    state: Arc<State>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

fn bare(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

impl Handler for Session {
    fn rcpt(&mut self, to: &str) -> Response {
        let to = bare(to);
        if self.state.reject_permanent.lock().unwrap().contains(&to) {
            return Response::custom(550, format!("5.1.1 <{to}>: mailbox unavailable"));
        }
        if self.state.reject_transient.lock().unwrap().contains(&to) {
            return Response::custom(451, format!("4.7.1 <{to}>: greylisted, try again later"));
        }
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = bare(from);
        self.to = to.iter().map(|t| bare(t)).collect();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let fail = self
            .state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            let mut reply =
                Response::custom(451, "4.3.0 temporary local problem, try again later".into());
            reply.action = Action::Close;
            return reply;
        }
        self.state.delivered.lock().unwrap().push(Delivered {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        });
        response::OK
    }

    fn auth_plain(&mut self, _authorization_id: &str, user: &str, password: &str) -> Response {
        match &self.state.credentials {
            Some((u, p)) if u == user && p == password => response::AUTH_OK,
            _ => {
                self.state.logins_refused.fetch_add(1, Ordering::SeqCst);
                response::INVALID_CREDENTIALS
            }
        }
    }
}

/// The test CA and the `localhost` certificate it signed, as PEM files in a tempdir.
pub struct TlsFiles {
    _dir: tempfile::TempDir,
    /// The CA certificate: what a client must trust (`email.smtp_ca_file`).
    pub ca: PathBuf,
    /// The server certificate for `localhost`.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// A TLS acceptor with this certificate, for implicit TLS on the front.
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn generate() -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "invoice-sync test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap();

        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        std::fs::write(&files.ca, ca_cert.pem()).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// How to start an [`SmtpServer`].
#[derive(Default)]
pub struct SmtpServerBuilder {
    credentials: Option<(String, String)>,
    starttls: bool,
    implicit_tls: bool,
    smtputf8: bool,
}

impl SmtpServerBuilder {
    /// Offer STARTTLS with a fresh test certificate for `localhost`.
    pub fn starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// Require AUTH PLAIN with these credentials before MAIL (implies STARTTLS).
    pub fn require_auth(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_string(), password.to_string()));
        self.starttls = true;
        self
    }

    /// Implicit TLS (`smtp_tls = "tls"`, port 465 style): the front does the TLS
    /// handshake with a fresh test certificate before the greeting and relays the
    /// plain session to the SMTP side. No STARTTLS is offered then.
    pub fn implicit_tls(mut self) -> Self {
        self.implicit_tls = true;
        self.starttls = false;
        self
    }

    /// Offer SMTPUTF8 (RFC 6531), so that mails to addresses with non-ASCII local parts
    /// (`rené@example.com`) are accepted; see the module docs for how. Plain or implicit
    /// TLS only: the front cannot read inside a STARTTLS session.
    pub fn smtputf8(mut self) -> Self {
        self.smtputf8 = true;
        self
    }

    /// Starts the server on a free loopback port.
    pub fn start(self) -> SmtpServer {
        assert!(
            !(self.smtputf8 && self.starttls),
            "SMTPUTF8 is offered by the front, which cannot read a STARTTLS session"
        );
        // rustls needs one process-wide provider when more than one is compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = (self.starttls || self.implicit_tls).then(TlsFiles::generate);
        let state = Arc::new(State {
            credentials: self.credentials,
            smtputf8: self.smtputf8,
            ..State::default()
        });
        let backend = start_backend(&state, tls.as_ref().filter(|_| self.starttls));
        let acceptor = if self.implicit_tls {
            tls.as_ref().map(TlsFiles::acceptor)
        } else {
            None
        };
        let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let front = Front::start(listener, backend, Arc::clone(&state), acceptor.clone());
        SmtpServer {
            state,
            port,
            backend,
            front: Some(front),
            tls,
            acceptor,
        }
    }
}

fn start_backend(state: &Arc<State>, tls: Option<&TlsFiles>) -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::new(Session {
        state: Arc::clone(state),
        from: String::new(),
        to: Vec::new(),
        data: Vec::new(),
    });
    server
        .with_name("localhost")
        .with_num_threads(8)
        .with_tcp_listener(listener);
    if let Some(tls) = tls {
        server
            .with_ssl(SslConfig::SelfSigned {
                cert_path: tls.cert.to_str().unwrap().to_string(),
                key_path: tls.key.to_str().unwrap().to_string(),
            })
            .unwrap();
    }
    if state.credentials.is_some() {
        server.with_auth(AuthMechanism::Plain);
    }
    // Runs until the test process ends: mailin-embedded has no way to stop it.
    std::thread::Builder::new()
        .name("smtp-mailin".into())
        .spawn(move || {
            let _ = server.serve();
        })
        .unwrap();
    addr
}

/// The stoppable front: accepts on the public port, counts, relays to the backend.
struct Front {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    fn start(
        listener: StdTcpListener,
        backend: SocketAddr,
        state: Arc<State>,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) -> Front {
        listener.set_nonblocking(true).unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("smtp-front".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let mut relays = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                if let Ok((client, _)) = accepted {
                                    state.connections.fetch_add(1, Ordering::SeqCst);
                                    relays.spawn(relay(
                                        client,
                                        backend,
                                        acceptor.clone(),
                                        Arc::clone(&state),
                                    ));
                                }
                            }
                            Some(_) = relays.join_next(), if !relays.is_empty() => {}
                        }
                    }
                    drop(listener);
                    relays.abort_all();
                    while relays.join_next().await.is_some() {}
                });
            })
            .unwrap();
        Front {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    backend: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    let _ = client.set_nodelay(true);
    let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    match acceptor {
        Some(acceptor) => {
            let Ok(tls) = acceptor.accept(client).await else {
                return;
            };
            let (from_client, to_client) = tokio::io::split(tls);
            let (from_backend, to_backend) = tokio::io::split(server);
            relay_both(from_client, to_client, from_backend, to_backend, &state).await;
        }
        None => {
            let (from_client, to_client) = tokio::io::split(client);
            let (from_backend, to_backend) = tokio::io::split(server);
            relay_both(from_client, to_client, from_backend, to_backend, &state).await;
        }
    }
}

/// Relays both directions until EOF: bytes untouched, or line by line with SMTPUTF8 added
/// (see the module docs).
async fn relay_both(
    from_client: impl tokio::io::AsyncRead + Unpin,
    to_client: impl tokio::io::AsyncWrite + Unpin,
    from_backend: impl tokio::io::AsyncRead + Unpin,
    to_backend: impl tokio::io::AsyncWrite + Unpin,
    state: &State,
) {
    if state.smtputf8 {
        let client_line = |line: &[u8]| strip_smtputf8(line, &state.smtputf8_mails);
        tokio::join!(
            pipe_lines(from_client, to_backend, client_line),
            pipe_lines(from_backend, to_client, offer_smtputf8)
        );
    } else {
        tokio::join!(pipe(from_client, to_backend), pipe(from_backend, to_client));
    }
}

/// `MAIL FROM:<a> SMTPUTF8 BODY=8BITMIME` → `MAIL FROM:<a> BODY=8BITMIME` (counted);
/// every other line as it is.
fn strip_smtputf8(line: &[u8], count: &AtomicUsize) -> Option<Vec<u8>> {
    if !(line.len() >= 10 && line[..10].eq_ignore_ascii_case(b"MAIL FROM:")) {
        return None;
    }
    let end = line.iter().rposition(|&b| b == b'>')?;
    let params = String::from_utf8_lossy(&line[end + 1..]);
    let words: Vec<&str> = params.split_whitespace().collect();
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !w.eq_ignore_ascii_case("SMTPUTF8"))
        .collect();
    if kept.len() == words.len() {
        return None;
    }
    count.fetch_add(1, Ordering::SeqCst);
    let mut out = line[..=end].to_vec();
    for w in kept {
        out.push(b' ');
        out.extend_from_slice(w.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// The EHLO reply's `8BITMIME` line (`mailin` always lists it first) gets `SMTPUTF8`
/// before it.
fn offer_smtputf8(line: &[u8]) -> Option<Vec<u8>> {
    let text = line.strip_suffix(b"\r\n").unwrap_or(line);
    if text.eq_ignore_ascii_case(b"250-8BITMIME") || text.eq_ignore_ascii_case(b"250 8BITMIME") {
        let mut out = b"250-SMTPUTF8\r\n".to_vec();
        out.extend_from_slice(line);
        return Some(out);
    }
    None
}

/// Copies one direction until EOF, each complete line through `rewrite` (`None`: as it
/// is); a last unfinished line goes as it is.
async fn pipe_lines(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    rewrite: impl Fn(&[u8]) -> Option<Vec<u8>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::with_capacity(pending.len());
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            match rewrite(&line) {
                Some(changed) => out.extend_from_slice(&changed),
                None => out.extend_from_slice(&line),
            }
        }
        if to.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = to.write_all(&pending).await;
    let _ = to.shutdown().await;
}

/// Copies one direction until EOF.
async fn pipe(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A running test SMTP server. Dropping it stops the front (the port refuses connections).
pub struct SmtpServer {
    state: Arc<State>,
    port: u16,
    backend: SocketAddr,
    front: Option<Front>,
    tls: Option<TlsFiles>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl SmtpServer {
    /// A plain server: no TLS, no login.
    pub fn start() -> SmtpServer {
        Self::builder().start()
    }

    /// A server with options (STARTTLS, AUTH).
    pub fn builder() -> SmtpServerBuilder {
        SmtpServerBuilder::default()
    }

    /// The loopback port clients connect to (stays the same across stop / restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA file that makes the server's certificate trusted, when it offers STARTTLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// `[email]` settings that send to this server: host `localhost` (the certificate's
    /// name), STARTTLS and the CA file when the server has TLS, a 5 s timeout and a limit
    /// high enough never to wait.
    pub fn email_config(&self) -> invoice_sync::config::Email {
        use invoice_sync::config::{Email, MailTransport, SmtpTls};
        Email {
            transport: MailTransport::Smtp,
            smtp_host: "localhost".into(),
            smtp_port: self.port,
            smtp_tls: if self.acceptor.is_some() {
                SmtpTls::Tls
            } else if self.tls.is_some() {
                SmtpTls::Starttls
            } else {
                SmtpTls::None
            },
            smtp_ca_file: self.ca_file().map(Path::to_path_buf),
            from: Some(invoice_sync::config::Mailbox::parse(TEST_FROM).unwrap()),
            reply_to: Some(
                invoice_sync::config::Mailbox::parse("billing@merchant.example").unwrap(),
            ),
            messages_per_second: std::num::NonZeroU32::new(1_000_000).unwrap(),
            smtp_timeout_seconds: 5,
            ..Email::default()
        }
    }

    /// Every mail accepted so far, in order.
    pub fn messages(&self) -> Vec<Delivered> {
        self.state.delivered.lock().unwrap().clone()
    }

    /// How many mails were accepted so far.
    pub fn message_count(&self) -> usize {
        self.state.delivered.lock().unwrap().len()
    }

    /// Forgets the accepted mails (the benchmark reuses one server for two runs).
    pub fn clear_messages(&self) {
        self.state.delivered.lock().unwrap().clear();
    }

    /// TCP connections accepted so far, across restarts.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Logins refused so far.
    pub fn logins_refused(&self) -> usize {
        self.state.logins_refused.load(Ordering::SeqCst)
    }

    /// `MAIL FROM` commands that carried the SMTPUTF8 parameter, so far (only counted on
    /// a server started with [`SmtpServerBuilder::smtputf8`]).
    pub fn smtputf8_mails(&self) -> usize {
        self.state.smtputf8_mails.load(Ordering::SeqCst)
    }

    /// Answer `RCPT TO:<address>` with 550 from now on.
    pub fn reject_permanently(&self, address: &str) {
        self.state
            .reject_permanent
            .lock()
            .unwrap()
            .insert(bare(address));
    }

    /// Answer `RCPT TO:<address>` with 451 from now on.
    pub fn reject_temporarily(&self, address: &str) {
        self.state
            .reject_transient
            .lock()
            .unwrap()
            .insert(bare(address));
    }

    /// Stop answering `address` with an error.
    pub fn accept_again(&self, address: &str) {
        let address = bare(address);
        self.state.reject_permanent.lock().unwrap().remove(&address);
        self.state.reject_transient.lock().unwrap().remove(&address);
    }

    /// Answer the end of DATA of the next `n` mails with 451 (and close the session).
    pub fn fail_next_messages(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Server down: the port refuses connections and open sessions are cut.
    pub fn stop(&mut self) {
        if let Some(mut front) = self.front.take() {
            front.stop();
        }
    }

    /// Server up again on the same port, with the same mails, rules and certificate.
    pub fn restart(&mut self) {
        self.stop();
        let listener = StdTcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.front = Some(Front::start(
            listener,
            self.backend,
            Arc::clone(&self.state),
            self.acceptor.clone(),
        ));
    }
}
