//! Log output: plain text on a terminal, lines for journald under systemd, or JSON.
//!
//! Under journald (`JOURNAL_STREAM` set) each line starts with its syslog priority as
//! sd-daemon(3) describes (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and
//! trace) and carries no timestamp of its own, so `journalctl -p warning` shows the
//! warnings. It never decides what is logged, only how.

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (journald-aware).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Whether stderr goes to journald (systemd sets `JOURNAL_STREAM` for the service).
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// The sd-daemon(3) prefix of a level.
pub fn syslog_prefix(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Wraps a formatter so that each event starts with its syslog priority.
struct SyslogPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        writer.write_str(syslog_prefix(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Sets up the process-wide subscriber: `-v`/`-q` pick the level of this crate's events
/// (other crates: warnings), `INVOICE_SYNC_LOG` overrides it with a filter.
pub fn init(format: LogFormat, verbose: u8, quiet: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_env("INVOICE_SYNC_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("invoice_sync={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match (format, under_journald()) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        // journald stamps every line itself; a second timestamp is noise.
        (LogFormat::Text, true) => {
            let inner = tracing_subscriber::fmt::format()
                .without_time()
                .with_target(false)
                .with_ansi(false);
            builder
                .with_ansi(false)
                .event_format(SyslogPrefix(inner))
                .try_init()
        }
        (LogFormat::Text, false) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    let _ = result;
}
