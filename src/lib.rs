//! invoice-sync: accounting CSV exports in, CM.com payment links and mail out.
//!
//! # Layout
//!
//! The modules read as the data flows:
//!
//! - [`config`]  typed settings from the TOML file, one submodule per section, validated once
//!   at load; secrets wrapped, read lazily.
//! - [`domain`]  validated newtypes (money in integer minor units, invoice and merchant
//!   references, creditor references, addresses, codes, customer types, reminder kinds,
//!   statement entries, the `Timestamp` every recorded time is), and the statutory collection-cost scale.
//! - [`ingest`]  inbox scan, decoding, column mapping, row validation, rejection reports.
//! - [`bank`]    the merchant's own bank statements: camt.052/053/054 and MT940 read as a
//!   stream, credits matched to invoices (creditor reference, then the reference named
//!   in the remittance), each file applied whole, every entry once.
//! - [`store`]   SQLite: every statement and every transaction; open (WAL, foreign keys,
//!   busy timeout), migrations from `schema/`, one module per aggregate, the invoice
//!   state machine, the link work queue, domain values and stored names through
//!   `ToSql`/`FromSql`. Callers hold a `Store` and do several writes as one fact through
//!   `Store::write`; nothing outside it names SQLite.
//! - [`cm`]      the CM clients (payment links, iDEAL QR): one session per API with a
//!   token cache and retry policy, one shared throttle for every CM request.
//! - [`mail`]    templates, MIME messages, SMTP / `.eml` transports; never the database.
//! - [`policy`]  the business rules as pure functions over typed values, a file per
//!   question: `calendar` (local days, an expiry's two forms), `expiry` (link, reminder,
//!   provisional and iDEAL QR expiries), `ladder` (which reminder step is due when, its
//!   kind, the next date), `send` ("may this mail leave now", the send window), `backoff`
//!   (status checks, mail retries). No I/O; the cycle's steps ask them.
//! - [`cycle`]   one cycle: ingest → bank statements → status → deactivate → create → extend → iDEAL QR →
//!   report, with reminders beside create/extend/QR and the mail loop beside them all (a
//!   link's mail goes once it is extended, a reminder once it is decided); dry runs.
//! - [`services`] CM clients (and the embedded sandbox) and the mail sender, set up and
//!   torn down in one place for every command.
//! - [`daemon`]  the service: a cycle per schedule tick, the callback listener, the status
//!   listener (`/metrics`, `/healthz`), signals, sd_notify.
//! - [`export`]  `export-paid`: the payments for the accounting, as CSV (formulas neutralised)
//!   or an ISO 20022 camt.053 statement (numbered, balances continuing).
//! - [`cli`]     clap definitions and one module per command; maps outcomes to exit codes.
//! - [`sandbox`] the CM simulator for tests, demos and benchmarks (`invoice-sync sandbox`).
//! - Utilities: [`schedule`] (cron expressions as cron reads them), [`lock`] (the run lock
//!   per database), [`logging`] (terminal, journald with priorities, JSON), [`redact`]
//!   (every spelling of a secret), [`progress`] (proof of progress for the watchdog),
//!   [`clock`] (the one "now" a cycle reads, settable in tests), [`metrics`] (the
//!   daemon's counters, `/metrics` and `/healthz`; a leaf, fed plain counts).
//!
//! # Layering
//!
//! Imports point one way, down this list: `cli` and `daemon` → `services` → `cycle` →
//! `policy`, `ingest`, `bank`, `cm`, `mail`, `export` → `store` → `domain`, `config`. `sandbox` stands
//! apart (only `services` starts it, for `cm.base_url = "sandbox"`), and the utilities are
//! used from above. In particular `config` knows no daemon, `store` knows no clap, `cm`
//! knows no sandbox and `sandbox` knows no mail. ARCHITECTURE.md explains the flow and
//! the safety arguments.

#![warn(missing_docs)]

pub mod bank;
pub mod cli;
pub mod clock;
pub mod cm;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod domain;
pub mod export;
pub mod ingest;
pub mod lock;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod policy;
pub mod progress;
pub mod redact;
pub mod sandbox;
pub mod schedule;
pub mod services;
pub mod store;

/// A crash-test hook: in debug builds (the ones the tests drive), kills this process with
/// SIGKILL at the named point when `INVOICE_SYNC_FAILPOINT` names it, so tests can prove
/// that a crash there loses and repeats nothing. Release builds compile it to nothing.
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("INVOICE_SYNC_FAILPOINT").as_deref() == Ok(name) {
        // SAFETY: sending a signal to our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// A hang-test hook: in debug builds, never returns at the named point when
/// `INVOICE_SYNC_FAILPOINT` names it, so tests can prove that a stuck cycle stops the
/// watchdog pings. Release builds compile it to nothing.
pub async fn hangpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("INVOICE_SYNC_FAILPOINT").as_deref() == Ok(name) {
        std::future::pending::<()>().await;
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
