//! The long-running service (README, *Payment status, the daemon and callbacks*): a cycle at every tick of
//! `daemon.schedule`, the callback listener, signals and sd_notify.
//!
//! One loop owns the database connection and does all the work, so two cycles never run
//! at once; ticks that pass while a cycle runs coalesce into one more cycle right after
//! it. The listener only answers and hands the named link refs to the loop, which marks
//! them due and fetches their status from the API — a callback is never proof of
//! payment; a link named again within 30 s is not read again, and ticks are served
//! before callbacks. SIGTERM/SIGINT let the running cycle finish, then the daemon exits
//! 0; a second SIGINT stops at once; SIGHUP is ignored. The daemon stops when its
//! database file is removed or replaced, and pings the watchdog only while work
//! progresses.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::schedule::Schedule;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use chrono::Local;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::cycle;
use crate::lock::RunLock;
use crate::services::Services;
use crate::store::{Store, links, now_text};

/// The largest callback body accepted; larger ones get 413.
pub const CALLBACK_BODY_LIMIT: usize = 64 * 1024;

/// sd_notify, when `NOTIFY_SOCKET` is set; failures are logged, never fatal.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Runs the daemon until `shutdown` resolves (or SIGTERM/SIGINT when given
/// [`signals`]).
pub async fn serve(config: &Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let schedule = config.daemon.schedule.clone();
    let store = Store::open(&config.storage.database)?;
    let services = Services::open(config).await?;
    let (tx, mut rx) = mpsc::channel::<Named>(256);

    let listener = match config.daemon.callback_listen {
        Some(addr) => Some(spawn_listener(addr, &config.daemon.callback_path, tx).await?),
        None => {
            drop(tx);
            None
        }
    };

    // Never on the callback listener, which may face the internet.
    let status = match config.daemon.status_listen {
        Some(addr) => Some(spawn_status_listener(addr, config, schedule.clone()).await?),
        None => None,
    };

    let watchdog = sd_notify::watchdog_enabled().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            let mut warned = false;
            loop {
                tick.tick().await;
                match crate::progress::stalled_for() {
                    Some(stall) if stall >= every => {
                        if !warned {
                            tracing::error!(
                                "the running work has made no progress for {} s; watchdog pings stop, so systemd restarts the daemon",
                                stall.as_secs()
                            );
                            warned = true;
                        }
                    }
                    _ => {
                        warned = false;
                        notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                }
            }
        })
    });
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("waiting for the first tick"),
    ]);
    tracing::info!(schedule = %config.daemon.schedule, callback = ?config.daemon.callback_listen, "daemon started");

    let mut shutdown = std::pin::pin!(shutdown);
    let mut fatal: Option<anyhow::Error> = None;
    let mut next = schedule.next_after(Local::now());
    loop {
        let wait = next
            .map(|t| (t - Local::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        // Ticks before callbacks: a flood of callbacks never delays a scheduled cycle.
        let tick = tokio::time::sleep(wait);
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tick, if next.is_some() => {
                if let Err(e) = database_still_there(&store) {
                    fatal = Some(e);
                    break;
                }
                let started = Local::now();
                                crate::progress::set_busy(true);
                let status = run_cycle(&store, config, services.cycle()).await;
                crate::progress::set_busy(false);
                notify(&[sd_notify::NotifyState::Status(&status)]);
                next = schedule.after_cycle(started, Local::now());
                // A cycle that stopped because its database went away ends the daemon.
                if let Err(e) = database_still_there(&store) {
                    fatal = Some(e);
                    break;
                }
            }
            Some(first) = rx.recv() => {
                let mut named = vec![first];
                while let Ok(more) = rx.try_recv() {
                    named.push(more);
                }
                if let Err(e) = database_still_there(&store) {
                    fatal = Some(e);
                    break;
                }
                                crate::progress::set_busy(true);
                check_named(&store, config, services.cycle(), named).await;
                crate::progress::set_busy(false);
            }
        }
    }
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
    tracing::info!("daemon stopping");
    if let Some(w) = watchdog {
        w.abort();
    }
    for (stop, task) in listener.into_iter().chain(status) {
        let _ = stop.send(());
        let _ = task.await;
    }
    services.close().await;
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether the database file is still the one the daemon opened.
fn database_still_there(store: &Store) -> anyhow::Result<()> {
    match store.identity() {
        Some(identity) => identity.check(),
        None => Ok(()),
    }
}

/// Resolves at the first SIGTERM or SIGINT, so the running cycle can finish. SIGHUP is
/// logged and ignored for the whole life of the process (its default would kill the
/// daemon mid-cycle, leaving false orphan reports). After the first SIGINT or SIGTERM, a
/// second SIGINT stops the process at once (exit 130), as an operator at a terminal
/// expects.
pub async fn signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    // A task of its own, so signals are answered at once even while a cycle runs.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stop = Some(stop);
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::warn!("SIGHUP ignored (invoice-sync rereads nothing; restart it to apply a new config)");
                }
                _ = term.recv() => {
                    if let Some(stop) = stop.take() {
                        tracing::info!("SIGTERM: finishing in-flight work (a SIGINT stops at once)");
                        let _ = stop.send(());
                    }
                }
                _ = int.recv() => match stop.take() {
                    Some(stop) => {
                        tracing::info!("SIGINT: finishing in-flight work (a second SIGINT stops at once)");
                        let _ = stop.send(());
                    }
                    None => {
                        tracing::warn!("second SIGINT: stopping at once; the next run repairs whatever was in flight");
                        std::process::exit(130);
                    }
                },
            }
        }
    });
    let _ = stopped.await;
}

/// One scheduled cycle; returns the STATUS= line. Failures are logged, never fatal.
async fn run_cycle(store: &Store, config: &Config, services: cycle::Services<'_>) -> String {
    let lock = match RunLock::try_acquire(&config.storage.database) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::warn!("another cycle holds the run lock; this tick is skipped");
            return "tick skipped: another cycle holds the run lock".into();
        }
        Err(e) => {
            tracing::error!("cannot take the run lock: {e:#}");
            return format!("cycle failed: {e:#}");
        }
    };
    let opts = cycle::Options {
        database: store.identity().cloned(),
        ..cycle::Options::default()
    };
    let started = std::time::Instant::now();
    let status = match cycle::run(store.conn(), config, Some(services), &opts).await {
        Ok(report) => {
            crate::metrics::cycle_completed(&report, started.elapsed());
            let summary = report.summary();
            tracing::info!("cycle: {summary}");
            if let Some(why) = report.attention() {
                tracing::warn!("needs attention: {why}");
            }
            format!("last cycle: {summary}")
        }
        Err(e) => {
            crate::metrics::cycle_failed(started.elapsed());
            tracing::error!("cycle failed: {e:#}");
            format!("last cycle failed: {e:#}")
        }
    };
    drop(lock);
    status
}

/// What a callback or webhook named: payment links, or one iDEAL QR transaction.
#[derive(Debug)]
enum Named {
    Links(Vec<String>),
    Qr(String),
}

/// Fetches the status of what callbacks named (unknown ones are ignored): the body is
/// never proof of payment, the API is asked.
async fn check_named(
    store: &Store,
    config: &Config,
    services: cycle::Services<'_>,
    named: Vec<Named>,
) {
    let now = now_text();
    let mut known = 0;
    for n in &named {
        let marked = match n {
            Named::Links(refs) => links::request_check(store.conn(), refs, &now),
            Named::Qr(key) => crate::store::qr::request_check(store.conn(), key, &now),
        };
        match marked {
            Ok(k) => known += k,
            Err(e) => {
                tracing::error!("cannot record the callback: {e}");
                return;
            }
        }
    }
    if known == 0 {
        tracing::debug!(
            callbacks = named.len(),
            "callback names no known open link or transaction"
        );
        return;
    }
    tracing::info!(
        callbacks = named.len(),
        known,
        "callback: checking the named payments' status"
    );
    // A cycle that holds the lock will check them itself (they are due now).
    let Ok(Some(_lock)) = RunLock::try_acquire(&config.storage.database) else {
        return;
    };
    let mut report = cycle::Report::default();
    if let Err(e) = cycle::check_statuses(store.conn(), config, services, &mut report).await {
        tracing::error!("status check after a callback failed: {e:#}");
    } else if report.payments_seen > 0 {
        tracing::info!(payments = report.payments_seen, "payments seen");
    }
}

#[derive(serde::Deserialize)]
struct CallbackBody {
    paymentlink_refs: Vec<String>,
}

type Listener = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// At most this many callback connections are served at once. A new one at the cap
/// evicts the connection idle longest; when every one has a request in progress, it is
/// answered `503` with `Retry-After` ([`CALLBACK_RETRY_AFTER`]).
pub const CALLBACK_MAX_CONNECTIONS: usize = 256;
/// Sockets beyond the cap that may be open at once: evicted connections still closing,
/// and (as many again) refused ones being answered 503. Beyond those, the 503 is written
/// without waiting for the client to read it.
const CALLBACK_SPARE_SOCKETS: usize = 64;
/// A connection counts as idle, and may be evicted, once nothing has arrived on it for
/// this long: one just accepted may have its request waiting unread.
const CALLBACK_IDLE_GRACE: Duration = Duration::from_millis(250);
/// What a refused connection is told to wait before trying again.
pub const CALLBACK_RETRY_AFTER: Duration = Duration::from_secs(5);
/// A callback connection that has not sent its request head by then is closed.
pub const CALLBACK_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No callback connection lives longer than this (a body sent byte by byte included).
pub const CALLBACK_CONNECTION_LIMIT: Duration = Duration::from_secs(30);
/// A link named again within this time is not read from the API again: a flood of
/// callbacks naming one link costs one status read per 30 seconds.
pub const CALLBACK_COALESCE: Duration = Duration::from_secs(30);
/// How many recently named refs are remembered for coalescing.
const CALLBACK_REMEMBERED: usize = 100_000;

/// What the listener shares between requests: the queue to the main loop and the refs
/// named recently (coalescing).
#[derive(Clone)]
struct ListenerState {
    tx: mpsc::Sender<Named>,
    recent: std::sync::Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
}

impl ListenerState {
    /// The refs not named within [`CALLBACK_COALESCE`], now remembered as named.
    fn fresh(&self, refs: Vec<String>) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= CALLBACK_REMEMBERED {
            recent.retain(|_, at| now.duration_since(*at) < CALLBACK_COALESCE);
        }
        let mut out = Vec::new();
        for r in refs {
            match recent.get(&r) {
                Some(at) if now.duration_since(*at) < CALLBACK_COALESCE => {}
                _ if recent.len() >= CALLBACK_REMEMBERED => {
                    // Too many distinct refs at once: the back-off polling finds them.
                }
                _ => {
                    recent.insert(r.clone(), now);
                    out.push(r);
                }
            }
        }
        out
    }
}

/// One served callback connection, as the accept loop sees it.
struct Slot {
    /// When something last arrived on it or its last request was answered, in
    /// milliseconds since the listener started.
    last_activity: std::sync::atomic::AtomicU64,
    /// Requests in progress (head received, response not yet written).
    busy: std::sync::atomic::AtomicUsize,
    /// Tells the connection to close (gracefully) to make room for a new one.
    evict: tokio::sync::Notify,
}

/// The connections being served, with their activity, so that the one idle longest can
/// be evicted for a new one.
struct Slots {
    started: std::time::Instant,
    open: std::sync::Mutex<HashMap<u64, std::sync::Arc<Slot>>>,
}

impl Slots {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Registers connection `id`. At the cap, evicts the connection idle longest (idle at
    /// least [`CALLBACK_IDLE_GRACE`], no request in progress); `None` when none can be.
    fn admit(&self, id: u64) -> Option<std::sync::Arc<Slot>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= CALLBACK_MAX_CONNECTIONS {
            let idle_before = self
                .now_ms()
                .checked_sub(CALLBACK_IDLE_GRACE.as_millis() as u64)?;
            let (&victim, _) = open
                .iter()
                .filter(|(_, s)| s.busy.load(Relaxed) == 0)
                .map(|(id, s)| (id, s.last_activity.load(Relaxed)))
                .filter(|&(_, last)| last <= idle_before)
                .min_by_key(|&(_, last)| last)?;
            if let Some(slot) = open.remove(&victim) {
                slot.evict.notify_one();
            }
        }
        let slot = std::sync::Arc::new(Slot {
            last_activity: self.now_ms().into(),
            busy: 0.into(),
            evict: tokio::sync::Notify::new(),
        });
        open.insert(id, slot.clone());
        Some(slot)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// A callback connection's socket that notes when something arrives on it.
struct Watched {
    stream: tokio::net::TcpStream,
    slot: std::sync::Arc<Slot>,
    slots: std::sync::Arc<Slots>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.slots.now_ms();
            self.slot
                .last_activity
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Marks a request in progress on its connection until dropped (answered or abandoned).
struct Busy {
    slot: std::sync::Arc<Slot>,
    slots: std::sync::Arc<Slots>,
}

impl Busy {
    fn new(slot: &std::sync::Arc<Slot>, slots: &std::sync::Arc<Slots>) -> Self {
        slot.busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Busy {
            slot: slot.clone(),
            slots: slots.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.slot.last_activity.store(self.slots.now_ms(), Relaxed);
        self.slot.busy.fetch_sub(1, Relaxed);
    }
}

/// The answer to a connection that finds every slot busy.
fn refusal() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        CALLBACK_RETRY_AFTER.as_secs()
    )
}

/// Answers 503 and closes without resetting: what the client already sent is read and
/// dropped (a close with unread data would reset the connection and could lose the
/// answer), for at most two seconds.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limit = Duration::from_secs(2);
    let _ = tokio::time::timeout(limit, async {
        stream.write_all(refusal().as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = CALLBACK_BODY_LIMIT * 2;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

/// Binds the callback listener and serves it in the background: HTTP/1 without
/// keep-alive, a deadline for the request head and for the whole connection, and at
/// most [`CALLBACK_MAX_CONNECTIONS`] served at once (plus a few sockets closing or
/// being refused), so idle or slow clients can never exhaust the daemon's file
/// descriptors. At the cap a new connection evicts the one idle longest; when all are
/// mid-request it is answered 503 with `Retry-After`, never closed without a word.
async fn spawn_listener(
    addr: SocketAddr,
    path: &str,
    tx: mpsc::Sender<Named>,
) -> anyhow::Result<Listener> {
    let state = ListenerState {
        tx,
        recent: Default::default(),
    };
    let app = axum::Router::new()
        .route(path, axum::routing::post(callback))
        .layer(DefaultBodyLimit::max(CALLBACK_BODY_LIMIT))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for callbacks on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, path, "callback listener ready");
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    // The sockets the listener holds: served or closing after eviction, and refused.
    let served = std::sync::Arc::new(tokio::sync::Semaphore::new(
        CALLBACK_MAX_CONNECTIONS + CALLBACK_SPARE_SOCKETS,
    ));
    let refused = std::sync::Arc::new(tokio::sync::Semaphore::new(CALLBACK_SPARE_SOCKETS));
    let slots = std::sync::Arc::new(Slots {
        started: std::time::Instant::now(),
        open: Default::default(),
    });
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        let mut next_id: u64 = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // EMFILE and friends: wait a little instead of spinning.
                            tracing::warn!("callback listener cannot accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    next_id += 1;
                    let id = next_id;
                    let admitted = slots.admit(id).and_then(|slot| {
                        match served.clone().try_acquire_owned() {
                            Ok(socket) => Some((slot, socket)),
                            Err(_) => {
                                // Too many evicted ones are still closing.
                                slots.remove(id);
                                None
                            }
                        }
                    });
                    let Some((slot, socket)) = admitted else {
                        match refused.clone().try_acquire_owned() {
                            Ok(socket) => {
                                connections.spawn(async move {
                                    refuse(stream).await;
                                    drop(socket);
                                });
                            }
                            Err(_) => {
                                // No socket to spare: the 503 goes out as far as it fits.
                                let _ = stream.try_write(refusal().as_bytes());
                            }
                        }
                        continue;
                    };
                    let slots = slots.clone();
                    let app = app.clone();
                    connections.spawn(async move {
                        let service = {
                            let (slot, slots) = (slot.clone(), slots.clone());
                            hyper::service::service_fn(move |req| {
                                let busy = Busy::new(&slot, &slots);
                                let answer = hyper::service::Service::call(
                                    &hyper_util::service::TowerToHyperService::new(app.clone()),
                                    req,
                                );
                                async move {
                                    let answer = answer.await;
                                    drop(busy);
                                    answer
                                }
                            })
                        };
                        let io = Watched {
                            stream,
                            slot: slot.clone(),
                            slots: slots.clone(),
                        };
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(CALLBACK_HEADER_TIMEOUT)
                            .keep_alive(false)
                            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
                        let mut conn = std::pin::pin!(conn);
                        let deadline = tokio::time::Instant::now() + CALLBACK_CONNECTION_LIMIT;
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = tokio::time::sleep_until(deadline) => {}
                            _ = slot.evict.notified() => {
                                // Idle: closes at once; a request that just began is
                                // still answered.
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout_at(deadline, conn).await;
                            }
                        }
                        slots.remove(id);
                        drop(socket);
                    });
                }
            }
        }
        connections.abort_all();
    });
    Ok((stop, task))
}

/// What the status listener's handlers share: their own read-only connection to the
/// database (the loop's is busy with cycles), the schedule, and when the daemon started.
#[derive(Clone)]
struct StatusState {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    schedule: Schedule,
    started: std::time::Instant,
}

/// Serves `GET /metrics` and `GET /healthz` on `daemon.status_listen`.
async fn spawn_status_listener(
    addr: SocketAddr,
    config: &Config,
    schedule: Schedule,
) -> anyhow::Result<Listener> {
    let db = &config.storage.database;
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {} for /metrics", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let state = StatusState {
        conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
        schedule,
        started: std::time::Instant::now(),
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(healthz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr}"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            listen = %addr,
            "daemon.status_listen is beyond loopback: it serves /metrics and /healthz to the network unprotected (no password); it belongs on loopback, e.g. 127.0.0.1:9189"
        );
    }
    tracing::info!(addr = %listener.local_addr()?, "status listener ready (/metrics, /healthz)");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((stop, task))
}

async fn metrics(State(state): State<StatusState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let rendered = tokio::task::spawn_blocking(move || {
        let conn = state.conn.lock().unwrap_or_else(|e| e.into_inner());
        crate::metrics::render(&conn)
    })
    .await;
    match rendered {
        Ok(Ok(text)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn healthz(State(state): State<StatusState>) -> (StatusCode, String) {
    // One schedule interval: the gap between the next two ticks.
    let next = state.schedule.next_after(Local::now());
    let interval = next
        .and_then(|a| state.schedule.next_after(a).map(|b| (b - a).to_std().ok()))
        .flatten()
        .unwrap_or(Duration::from_secs(3600));
    let verdict = tokio::task::spawn_blocking(move || {
        let conn = state.conn.lock().unwrap_or_else(|e| e.into_inner());
        crate::metrics::health(&conn, interval, state.started)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match verdict {
        Ok(why) => (StatusCode::OK, format!("{why}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// `POST <callback_path>`: answers at once; the main loop checks what was named. A
/// payment link callback names refs in its body; an iDEAL QR webhook is recognised by
/// the `idealqr=<purchase id>` query this program put in its URL (its body, which carries
/// no status, is not needed).
async fn callback(
    State(state): State<ListenerState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    crate::metrics::callback();
    let named = if let Some(purchase_id) = query.get("idealqr") {
        if purchase_id.is_empty() || purchase_id.len() > 64 {
            return StatusCode::BAD_REQUEST;
        }
        if state
            .fresh(vec![format!("idealqr:{purchase_id}")])
            .is_empty()
        {
            return StatusCode::OK;
        }
        Named::Qr(purchase_id.clone())
    } else {
        let Ok(parsed) = serde_json::from_slice::<CallbackBody>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        let refs: Vec<String> = parsed
            .paymentlink_refs
            .into_iter()
            .filter(|r| !r.is_empty() && r.len() <= 200)
            .take(1000)
            .collect();
        let refs = state.fresh(refs);
        if refs.is_empty() {
            return StatusCode::OK;
        }
        Named::Links(refs)
    };
    if state.tx.try_send(named).is_err() {
        // Full or closed: the back-off polling still finds the payment.
        tracing::warn!("callback queue full; the payment will be found by polling");
    }
    StatusCode::OK
}
