//! The long-running service (README, *Payment status, the daemon and callbacks*): a
//! cycle at every tick of `daemon.schedule`, the callback listener, signals and
//! sd_notify.
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
//!
//! This module is the entry point ([`serve`]) and the loop: a cycle per schedule tick,
//! the named payments' status checks, sd_notify and the watchdog. The parts it ties
//! together live beside it: `signals` (SIGTERM, SIGINT, SIGHUP), `callback` (the CM
//! callback listener) and `status` (the status listener, `/metrics` and `/healthz`).

mod callback;
mod signals;
mod status;

pub use callback::{
    CALLBACK_BODY_LIMIT, CALLBACK_COALESCE, CALLBACK_CONNECTION_LIMIT, CALLBACK_HEADER_TIMEOUT,
    CALLBACK_MAX_CONNECTIONS, CALLBACK_RETRY_AFTER,
};
pub use signals::signals;

use std::future::Future;
use std::time::Duration;

use chrono::Local;
use tokio::sync::mpsc;

use callback::{Named, spawn_listener};
use status::spawn_status_listener;

use crate::config::Config;
use crate::cycle;
use crate::lock::RunLock;
use crate::services::Services;
use crate::store::{Store, links};

/// sd_notify, when `NOTIFY_SOCKET` is set; failures are logged, never fatal.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Runs the daemon until `shutdown` resolves (or SIGTERM/SIGINT when given
/// [`signals()`]).
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
    let status = match cycle::run(store, config, Some(services), &opts).await {
        Ok(report) => {
            crate::metrics::cycle_completed(report.counts(), started.elapsed());
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

/// Fetches the status of what callbacks named (unknown ones are ignored): the body is
/// never proof of payment, the API is asked.
async fn check_named(
    store: &Store,
    config: &Config,
    services: cycle::Services<'_>,
    named: Vec<Named>,
) {
    let now = crate::clock::timestamp();
    let mut known = 0;
    for n in &named {
        let marked = match n {
            Named::Links(refs) => links::request_check(store, refs, now),
            Named::Qr(key) => crate::store::qr::request_check(store, key, now),
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
    if let Err(e) = cycle::check_statuses(store, config, services, &mut report).await {
        tracing::error!("status check after a callback failed: {e:#}");
    } else if report.payments_seen > 0 {
        tracing::info!(payments = report.payments_seen, "payments seen");
    }
}

type Listener = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);
