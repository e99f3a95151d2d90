//! The status listener on `daemon.status_listen` (for monitoring, on loopback):
//! `GET /metrics` and `GET /healthz`, read through a read-only [`Store`] of its own so a
//! scrape never waits for a cycle and never writes, and the figures they read from it
//! (`impl crate::metrics::Stored for Store`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Local;

use super::Listener;
use crate::config::Config;
use crate::schedule::Schedule;
use crate::store::Store;

/// What the status listener's handlers share: their own read-only connection to the
/// database (the loop's is busy with cycles), the schedule, and when the daemon started.
#[derive(Clone)]
struct StatusState {
    db: std::sync::Arc<std::sync::Mutex<Store>>,
    schedule: Schedule,
    started: std::time::Instant,
}

/// Serves `GET /metrics` and `GET /healthz` on `daemon.status_listen`.
pub(super) async fn spawn_status_listener(
    addr: SocketAddr,
    config: &Config,
    schedule: Schedule,
) -> anyhow::Result<Listener> {
    let db = Store::open_read_only(&config.storage.database).context("for /metrics")?;
    let state = StatusState {
        db: std::sync::Arc::new(std::sync::Mutex::new(db)),
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

/// The figures `/metrics` and `/healthz` read from the database.
impl crate::metrics::Stored for Store {
    fn invoices_by_state(&self) -> anyhow::Result<Vec<(&'static str, i64)>> {
        Ok(crate::store::invoices::count_by_state(self)?
            .into_iter()
            .map(|(state, n)| (state.as_str(), n))
            .collect())
    }

    fn mails_queued(&self) -> anyhow::Result<i64> {
        Ok(crate::store::outbox::count_queued(self)?)
    }

    fn answers(&self) -> Result<(), String> {
        self.ping().map_err(|e| e.to_string())
    }

    fn overpaid(&self) -> anyhow::Result<i64> {
        Ok(crate::store::bank::count_overpaid(self)?)
    }
}

async fn metrics(State(state): State<StatusState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let rendered = tokio::task::spawn_blocking(move || {
        let db = state.db.lock().unwrap_or_else(|e| e.into_inner());
        crate::metrics::render(&*db)
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
        let db = state.db.lock().unwrap_or_else(|e| e.into_inner());
        crate::metrics::health(&*db, interval, state.started)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match verdict {
        Ok(why) => (StatusCode::OK, format!("{why}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}
