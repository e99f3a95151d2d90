//! SIGTERM, SIGINT and SIGHUP: the first SIGTERM or SIGINT lets the running cycle finish
//! and stops the daemon, a second SIGINT stops it at once, SIGHUP is ignored.

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
