//! The simulator's memory: links, iDEAL QR transactions, tokens, the request log,
//! counters, and the state file.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::idealqr::QrTx;
use super::{Counters, LinkRecord, QrRecord, RequestRecord, SandboxOptions};

/// Which API a token was issued for: the payment link and iDEAL QR APIs have token
/// endpoints of their own, and a token of one is refused by the other, so a client that
/// fetched its token from the wrong place is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    PaymentLink,
    IdealQr,
}

/// A link as stored (and persisted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Link {
    #[serde(rename = "ref")]
    pub reference: String,
    pub uri: String,
    pub active: bool,
    pub status: String,
    /// The known request fields, as raw JSON literals.
    pub fields: BTreeMap<String, Box<RawValue>>,
    /// The exact creation body.
    pub created_with: String,
}

impl Link {
    /// The API representation: the request fields echoed, plus ref / active / status / uri.
    pub fn to_json(&self) -> String {
        echo(
            &self.fields,
            [
                ("ref", self.reference.clone().into()),
                ("active", self.active.into()),
                ("status", self.status.clone().into()),
                ("uri", self.uri.clone().into()),
            ],
        )
    }

    /// Whether the link's `expiry_date` has passed at `now` (a link without one never
    /// expires; an unreadable one is treated as passed, so nothing unreadable is payable).
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.fields.get("expiry_date").is_some_and(|raw| {
            serde_json::from_str::<String>(raw.get())
                .ok()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .is_none_or(|at| at <= now)
        })
    }

    /// Whether a customer could pay it at `now`: active, unpaid and not expired.
    pub fn payable(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.active && self.status == "open" && !self.expired(now)
    }

    fn record(&self, now: chrono::DateTime<chrono::Utc>) -> LinkRecord {
        LinkRecord {
            payable: self.payable(now),
            reference: self.reference.clone(),
            created_with: self.created_with.clone(),
            fields: literals(&self.fields),
            active: self.active,
            status: self.status.clone(),
            uri: self.uri.clone(),
        }
    }
}

/// A JSON object of the request `fields` as they were sent (each literal verbatim) with
/// the server's own `extra` fields added, as an API answer echoes a request.
pub(super) fn echo<'a>(
    fields: &'a BTreeMap<String, Box<RawValue>>,
    extra: impl IntoIterator<Item = (&'a str, serde_json::Value)>,
) -> String {
    let mut out: BTreeMap<&str, Box<RawValue>> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    for (name, value) in extra {
        let raw =
            RawValue::from_string(value.to_string()).expect("a serialized value is valid JSON");
        out.insert(name, raw);
    }
    serde_json::to_string(&out).expect("raw values serialize")
}

/// The fields' literals as text, for the inspection records.
pub(super) fn literals(fields: &BTreeMap<String, Box<RawValue>>) -> BTreeMap<String, String> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), v.get().to_string()))
        .collect()
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    links: Vec<Link>,
    /// Absent in files written before the sandbox knew iDEAL QR.
    #[serde(default)]
    qr_transactions: Vec<QrTx>,
}

#[derive(Default)]
pub(super) struct State {
    /// In creation order.
    pub links: Vec<Link>,
    pub by_ref: HashMap<String, usize>,
    /// token → expiry.
    pub tokens: HashMap<String, Instant>,
    /// iDEAL QR token → expiry.
    pub qr_tokens: HashMap<String, Instant>,
    /// iDEAL QR transactions, in creation order.
    pub qr: Vec<QrTx>,
    pub qr_by_id: HashMap<String, usize>,
    pub log: Vec<RequestRecord>,
}

impl State {
    pub fn link_mut(&mut self, reference: &str) -> Option<&mut Link> {
        let i = *self.by_ref.get(reference)?;
        self.links.get_mut(i)
    }

    pub fn insert(&mut self, link: Link) {
        self.by_ref.insert(link.reference.clone(), self.links.len());
        self.links.push(link);
    }

    /// The tokens issued for `api`.
    pub fn tokens_of(&mut self, api: Api) -> &mut HashMap<String, Instant> {
        match api {
            Api::PaymentLink => &mut self.tokens,
            Api::IdealQr => &mut self.qr_tokens,
        }
    }

    pub fn qr(&self, id: &str) -> Option<&QrTx> {
        self.qr.get(*self.qr_by_id.get(id)?)
    }

    pub fn qr_mut(&mut self, id: &str) -> Option<&mut QrTx> {
        let i = *self.qr_by_id.get(id)?;
        self.qr.get_mut(i)
    }

    pub fn insert_qr(&mut self, tx: QrTx) {
        self.qr_by_id.insert(tx.id.clone(), self.qr.len());
        self.qr.push(tx);
    }
}

pub(super) struct Shared {
    pub opts: SandboxOptions,
    pub base_url: String,
    pub limiter: Option<DefaultDirectRateLimiter>,
    state: Mutex<State>,
    pub tokens_issued: AtomicU64,
    pub rate_limited: AtomicU64,
    pub server_errors: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_concurrent: AtomicU64,
    pub api_requests: AtomicU64,
    /// Used to send callbacks.
    pub http: reqwest::Client,
    /// The misbehaviour switched on now (tests change it while the sandbox runs).
    faults: Mutex<super::Faults>,
    /// Seconds the sandbox's clock runs ahead of the real one, for expiry.
    clock_offset: std::sync::atomic::AtomicI64,
}

impl Shared {
    pub fn new(opts: SandboxOptions, base_url: String) -> std::io::Result<Shared> {
        let limiter = opts.rate_limit.map(|n| {
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(n).allow_burst(n))
        });
        let mut state = State::default();
        if let Some(path) = &opts.state_file {
            let persisted = load(path)?;
            for link in persisted.links {
                state.insert(link);
            }
            for tx in persisted.qr_transactions {
                state.insert_qr(tx);
            }
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Shared {
            opts,
            base_url,
            limiter,
            state: Mutex::new(state),
            tokens_issued: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            api_requests: AtomicU64::new(0),
            http,
            faults: Mutex::new(super::Faults::default()),
            clock_offset: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The faults in force.
    pub fn faults(&self) -> super::Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches faults on or off.
    pub fn set_faults(&self, faults: super::Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// The sandbox's "now": the real time plus the offset tests moved it by.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset.load(Ordering::SeqCst))
    }

    /// Moves the sandbox's clock forward.
    pub fn advance_clock(&self, by: std::time::Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 2);
        self.clock_offset.fetch_add(secs, Ordering::SeqCst);
    }

    /// The state, even after a panic elsewhere poisoned the lock (tests should see the
    /// state, not a second panic).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the links to the state file, if any (temp file + rename, so a crash never
    /// leaves half a file). Called with the lock held, so writes are in order.
    pub fn persist(&self, state: &State) {
        let Some(path) = &self.opts.state_file else {
            return;
        };
        let persisted = PersistedRef {
            links: &state.links,
            qr_transactions: &state.qr,
        };
        if let Err(e) = save(path, &persisted) {
            tracing::warn!(path = %path.display(), error = %e, "sandbox cannot write its state file");
        }
    }

    pub fn links(&self) -> Vec<LinkRecord> {
        let now = self.now();
        self.lock().links.iter().map(|l| l.record(now)).collect()
    }

    pub fn qr_transactions(&self) -> Vec<QrRecord> {
        self.lock().qr.iter().map(QrTx::record).collect()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    pub fn tokens(&self) -> Vec<String> {
        let state = self.lock();
        state
            .tokens
            .keys()
            .chain(state.qr_tokens.keys())
            .cloned()
            .collect()
    }

    pub fn revoke_tokens(&self) {
        let mut state = self.lock();
        state.tokens.clear();
        state.qr_tokens.clear();
    }

    pub fn counters(&self) -> Counters {
        Counters {
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            max_concurrent: self.max_concurrent.load(Ordering::Relaxed),
            api_requests: self.api_requests.load(Ordering::Relaxed),
        }
    }
}

#[derive(Serialize)]
struct PersistedRef<'a> {
    links: &'a [Link],
    qr_transactions: &'a [QrTx],
}

fn load(path: &Path) -> std::io::Result<Persisted> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("sandbox state file {} is not readable: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
        Err(e) => Err(e),
    }
}

fn save(path: &Path, persisted: &PersistedRef<'_>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(persisted).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
