//! The CM callback listener, which may face the internet: `POST <callback_path>` takes
//! the refs a payment link callback names (or the purchase an iDEAL QR webhook names),
//! answers at once, coalesces refs named within 30 s, and hands the rest to the loop as
//! [`Named`]. It bounds its connections (the [`Slots`] they hold, watched for activity
//! by [`Watched`], busy while a request is in progress by [`Busy`]): at the cap a new
//! connection evicts the one idle longest, or is answered 503 with `Retry-After`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use tokio::sync::mpsc;

use super::Listener;
use crate::domain::LinkRef;

/// The largest callback body accepted; larger ones get 413.
pub const CALLBACK_BODY_LIMIT: usize = 64 * 1024;

/// What a callback or webhook named: payment links, or one iDEAL QR transaction.
#[derive(Debug)]
pub(super) enum Named {
    Links(Vec<LinkRef>),
    Qr(String),
}

#[derive(serde::Deserialize)]
struct CallbackBody {
    paymentlink_refs: Vec<String>,
}

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
    /// The refs (by `key`) not named within [`CALLBACK_COALESCE`], now remembered as
    /// named.
    fn fresh<T>(&self, refs: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
        let now = std::time::Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= CALLBACK_REMEMBERED {
            recent.retain(|_, at| now.duration_since(*at) < CALLBACK_COALESCE);
        }
        let mut out = Vec::new();
        for r in refs {
            match recent.get(key(&r)) {
                Some(at) if now.duration_since(*at) < CALLBACK_COALESCE => {}
                _ if recent.len() >= CALLBACK_REMEMBERED => {
                    // Too many distinct refs at once: the back-off polling finds them.
                }
                _ => {
                    recent.insert(key(&r).to_owned(), now);
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
pub(super) async fn spawn_listener(
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
            .fresh(vec![format!("idealqr:{purchase_id}")], String::as_str)
            .is_empty()
        {
            return StatusCode::OK;
        }
        Named::Qr(purchase_id.clone())
    } else {
        let Ok(parsed) = serde_json::from_slice::<CallbackBody>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        let refs: Vec<LinkRef> = parsed
            .paymentlink_refs
            .into_iter()
            .filter(|r| !r.is_empty() && r.len() <= 200)
            .filter_map(|r| match LinkRef::parse(&r) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!("callback named a payment link reference that is ignored: {e}");
                    None
                }
            })
            .take(1000)
            .collect();
        let refs = state.fresh(refs, LinkRef::as_str);
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
