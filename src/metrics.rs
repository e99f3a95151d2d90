//! The daemon's metrics and health (README, *Metrics and health*): counters kept by the
//! process, written in the Prometheus text format (version 0.0.4) for `GET /metrics` on
//! `daemon.status_listen`, and the verdict of `GET /healthz`.
//!
//! Process-wide on purpose, like [`crate::progress`]: CM requests are counted deep in the
//! CM session, cycles in the daemon loop, callbacks in the listener. Counters start at
//! zero when the daemon starts (Prometheus' `rate()` handles the reset). The invoice
//! counts by state are read from the database by the first scrape after each cycle (or
//! callback), and served from memory until the next one: a full count of a large database
//! on every scrape would make scraping cost what the history holds.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The outcomes a CM request is counted under.
pub const CM_OUTCOMES: [&str; 7] = [
    "ok",
    "client_error",
    "rate_limited",
    "server_error",
    "timeout",
    "connect_error",
    "broken",
];

/// The outcomes a bank entry is counted under (README, *Bank transfers*).
pub const BANK_OUTCOMES: [&str; 5] = ["matched", "suggested", "unmatched", "reversed", "duplicate"];

/// Upper bounds of the cycle duration histogram, in seconds.
pub const CYCLE_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

struct Counters {
    links_created: AtomicU64,
    links_deactivated: AtomicU64,
    links_failed: AtomicU64,
    mails_sent: AtomicU64,
    mails_failed: AtomicU64,
    reminders_sent: AtomicU64,
    reminders_skipped: AtomicU64,
    callbacks: AtomicU64,
    bank: [AtomicU64; 5],
    cm: [AtomicU64; 7],
    cycle_buckets: [AtomicU64; 10],
    cycles: AtomicU64,
    /// Total cycle time in microseconds.
    cycle_micros: AtomicU64,
    /// Unix time of the last completed cycle, 0 for none.
    last_cycle: AtomicU64,
}

static COUNTERS: Counters = Counters {
    links_created: AtomicU64::new(0),
    links_deactivated: AtomicU64::new(0),
    links_failed: AtomicU64::new(0),
    mails_sent: AtomicU64::new(0),
    mails_failed: AtomicU64::new(0),
    reminders_sent: AtomicU64::new(0),
    reminders_skipped: AtomicU64::new(0),
    callbacks: AtomicU64::new(0),
    bank: [const { AtomicU64::new(0) }; 5],
    cm: [const { AtomicU64::new(0) }; 7],
    cycle_buckets: [const { AtomicU64::new(0) }; 10],
    cycles: AtomicU64::new(0),
    cycle_micros: AtomicU64::new(0),
    last_cycle: AtomicU64::new(0),
};

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Counts one CM request by its HTTP status (`Some`) or transport failure.
pub fn cm_request(status: Option<u16>, timeout: bool, connect: bool) {
    let outcome = match status {
        Some(200..=299) => "ok",
        Some(429) => "rate_limited",
        Some(400..=499) => "client_error",
        Some(500..=599) => "server_error",
        Some(_) => "broken",
        None if timeout => "timeout",
        None if connect => "connect_error",
        None => "broken",
    };
    if let Some(i) = CM_OUTCOMES.iter().position(|o| *o == outcome) {
        add(&COUNTERS.cm[i], 1);
    }
}

/// Counts one callback or webhook received.
pub fn callback() {
    add(&COUNTERS.callbacks, 1);
    add(&CHANGES, 1);
}

/// What one cycle did, in plain counts: the caller takes them from its report, so this
/// module stays a leaf that knows no cycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleCounts {
    /// Payment links created.
    pub links_created: u64,
    /// Payment links deactivated.
    pub links_deactivated: u64,
    /// Link creates CM refused for good.
    pub links_failed: u64,
    /// Mails the relay accepted.
    pub mails_sent: u64,
    /// Mails that failed for good.
    pub mails_failed: u64,
    /// Reminder mails sent.
    pub reminders_sent: u64,
    /// Reminder steps skipped.
    pub reminders_skipped: u64,
    /// Bank entries read, by [`BANK_OUTCOMES`].
    pub bank: [u64; 5],
}

/// What the metrics and the health check read from the database, given by the caller:
/// this module knows no store.
pub trait Stored {
    /// The invoice count of every state, by state name (zero included).
    fn invoices_by_state(&self) -> anyhow::Result<Vec<(&'static str, i64)>>;
    /// Mails waiting in the outbox.
    fn mails_queued(&self) -> anyhow::Result<i64>;
    /// Whether the database answers a read; the reason when not.
    fn answers(&self) -> Result<(), String>;
    /// Invoices paid more than they asked (a surplus to refund).
    fn overpaid(&self) -> anyhow::Result<i64>;
}

/// Adds a completed cycle: its counts and how long it took.
pub fn cycle_completed(counts: CycleCounts, took: Duration) {
    let c = &COUNTERS;
    add(&c.links_created, counts.links_created);
    add(&c.links_deactivated, counts.links_deactivated);
    add(&c.links_failed, counts.links_failed);
    add(&c.mails_sent, counts.mails_sent);
    add(&c.mails_failed, counts.mails_failed);
    add(&c.reminders_sent, counts.reminders_sent);
    add(&c.reminders_skipped, counts.reminders_skipped);
    for (slot, n) in c.bank.iter().zip(counts.bank) {
        add(slot, n);
    }
    cycle_finished(took);
}

/// Observes a cycle's duration and marks it completed now (also for a failed cycle: it
/// ended, and its failure is in the log).
fn cycle_finished(took: Duration) {
    let c = &COUNTERS;
    add(&CHANGES, 1);
    let secs = took.as_secs_f64();
    for (i, bound) in CYCLE_BUCKETS.iter().enumerate() {
        if secs <= *bound {
            add(&c.cycle_buckets[i], 1);
        }
    }
    add(&c.cycles, 1);
    add(
        &c.cycle_micros,
        u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    );
    let now = crate::clock::now().timestamp();
    c.last_cycle
        .store(u64::try_from(now).unwrap_or(0), Ordering::Relaxed);
}

/// A cycle that failed as a whole (no report): only its duration and end are recorded.
pub fn cycle_failed(took: Duration) {
    cycle_finished(took);
}

/// Unix time of the last completed cycle, if any.
pub fn last_cycle_completed() -> Option<i64> {
    match COUNTERS.last_cycle.load(Ordering::Relaxed) {
        0 => None,
        t => i64::try_from(t).ok(),
    }
}

/// Bumped by every cycle and callback: the invoice counts may have changed.
static CHANGES: AtomicU64 = AtomicU64::new(1);

/// Invoice counts by state name.
type StateCounts = Vec<(&'static str, i64)>;

/// The invoice counts by state, and the [`CHANGES`] they were read at.
static STATES: Mutex<Option<(u64, StateCounts)>> = Mutex::new(None);

fn invoice_states(db: &dyn Stored) -> anyhow::Result<StateCounts> {
    let mut cache = STATES.lock().unwrap_or_else(|e| e.into_inner());
    let changes = CHANGES.load(Ordering::Relaxed);
    if let Some((at, counts)) = cache.as_ref()
        && *at == changes
    {
        return Ok(counts.clone());
    }
    let counts = db.invoices_by_state()?;
    *cache = Some((changes, counts.clone()));
    Ok(counts)
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics in the Prometheus text format.
pub fn render(db: &dyn Stored) -> anyhow::Result<String> {
    let c = &COUNTERS;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    family(
        &mut out,
        "invoice_sync_invoices",
        "gauge",
        "Invoices by state (read again after each cycle).",
    );
    let states = invoice_states(db)?;
    for (state, n) in &states {
        let _ = writeln!(out, "invoice_sync_invoices{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "invoice_sync_links_total",
        "counter",
        "Payment links created, deactivated and refused for good, since the daemon started.",
    );
    for (outcome, v) in [
        ("created", &c.links_created),
        ("deactivated", &c.links_deactivated),
        ("failed", &c.links_failed),
    ] {
        let _ = writeln!(
            out,
            "invoice_sync_links_total{{outcome=\"{outcome}\"}} {}",
            get(v)
        );
    }
    family(
        &mut out,
        "invoice_sync_mails_total",
        "counter",
        "Mails the relay accepted, and mails refused for good.",
    );
    for (outcome, v) in [("sent", &c.mails_sent), ("failed", &c.mails_failed)] {
        let _ = writeln!(
            out,
            "invoice_sync_mails_total{{outcome=\"{outcome}\"}} {}",
            get(v)
        );
    }
    family(
        &mut out,
        "invoice_sync_mails_queued",
        "gauge",
        "Mails waiting in the outbox.",
    );
    let queued = db.mails_queued()?;
    let _ = writeln!(out, "invoice_sync_mails_queued {queued}");
    family(
        &mut out,
        "invoice_sync_reminders_total",
        "counter",
        "Reminder mails sent, and reminder steps skipped (a later one was due).",
    );
    for (outcome, v) in [
        ("sent", &c.reminders_sent),
        ("skipped", &c.reminders_skipped),
    ] {
        let _ = writeln!(
            out,
            "invoice_sync_reminders_total{{outcome=\"{outcome}\"}} {}",
            get(v)
        );
    }
    family(
        &mut out,
        "invoice_sync_bank_entries_total",
        "counter",
        "Bank statement entries read, by what became of them.",
    );
    for (i, outcome) in BANK_OUTCOMES.iter().enumerate() {
        let _ = writeln!(
            out,
            "invoice_sync_bank_entries_total{{outcome=\"{outcome}\"}} {}",
            get(&c.bank[i])
        );
    }
    family(
        &mut out,
        "invoice_sync_invoices_overpaid",
        "gauge",
        "Invoices paid more than they asked (or twice): a surplus to refund.",
    );
    let _ = writeln!(out, "invoice_sync_invoices_overpaid {}", db.overpaid()?);
    family(
        &mut out,
        "invoice_sync_cm_requests_total",
        "counter",
        "Requests to the CM APIs (each attempt) by outcome.",
    );
    for (i, outcome) in CM_OUTCOMES.iter().enumerate() {
        let _ = writeln!(
            out,
            "invoice_sync_cm_requests_total{{outcome=\"{outcome}\"}} {}",
            get(&c.cm[i])
        );
    }
    family(
        &mut out,
        "invoice_sync_callbacks_total",
        "counter",
        "Payment callbacks and iDEAL QR webhooks received.",
    );
    let _ = writeln!(out, "invoice_sync_callbacks_total {}", get(&c.callbacks));
    family(
        &mut out,
        "invoice_sync_cycle_duration_seconds",
        "histogram",
        "How long the scheduled cycles took.",
    );
    for (i, bound) in CYCLE_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "invoice_sync_cycle_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            get(&c.cycle_buckets[i])
        );
    }
    let cycles = get(&c.cycles);
    let _ = writeln!(
        out,
        "invoice_sync_cycle_duration_seconds_bucket{{le=\"+Inf\"}} {cycles}"
    );
    let _ = writeln!(
        out,
        "invoice_sync_cycle_duration_seconds_sum {}",
        get(&c.cycle_micros) as f64 / 1e6
    );
    let _ = writeln!(out, "invoice_sync_cycle_duration_seconds_count {cycles}");
    family(
        &mut out,
        "invoice_sync_last_cycle_completed_timestamp_seconds",
        "gauge",
        "Unix time the last cycle completed (0: none yet).",
    );
    let _ = writeln!(
        out,
        "invoice_sync_last_cycle_completed_timestamp_seconds {}",
        last_cycle_completed().unwrap_or(0)
    );
    Ok(out)
}

/// `GET /healthz`: `Ok(why)` for 200, `Err(why)` for 503. Healthy while a cycle
/// completed within two schedule intervals, or the daemon started less than two
/// intervals ago, or the running cycle is making progress; and the database answers.
pub fn health(db: &dyn Stored, interval: Duration, started: Instant) -> Result<String, String> {
    if let Err(e) = db.answers() {
        return Err(format!("the database does not answer: {e}"));
    }
    let window = interval * 2;
    let now = crate::clock::now().timestamp();
    if let Some(last) = last_cycle_completed() {
        let ago = Duration::from_secs(u64::try_from(now - last).unwrap_or(0));
        if ago <= window {
            return Ok(format!(
                "ok: the last cycle completed {} s ago",
                ago.as_secs()
            ));
        }
    }
    if started.elapsed() <= window {
        return Ok("ok: started recently, the first cycle is due".into());
    }
    match crate::progress::stalled_for() {
        Some(stall) if stall <= window => Ok(format!(
            "ok: a cycle is running and made progress {} s ago",
            stall.as_secs()
        )),
        Some(stall) => Err(format!(
            "the running cycle has made no progress for {} s and no cycle completed within {} s",
            stall.as_secs(),
            window.as_secs()
        )),
        None => Err(format!(
            "no cycle completed within {} s (two schedule intervals)",
            window.as_secs()
        )),
    }
}
