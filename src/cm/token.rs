//! The one OAuth access token of a client: cached, refreshed shortly before it expires,
//! fetched by one caller while the others wait.
//!
//! It owns the cached token and the decision when to fetch a new one. It never talks HTTP
//! itself (the client passes the fetch in) and never shows the token: it is held in a
//! [`SecretString`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::CmError;

/// A token handed to one request; `id` tells a stale `401` from a fresh one. `Debug`
/// shows `[REDACTED]` for the value.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub id: u64,
    pub value: SecretString,
}

struct Cached {
    token: Token,
    /// When it is no longer handed out (before CM's expiry, by the margin).
    fresh_until: Instant,
}

#[derive(Default)]
struct Slot {
    current: Option<Cached>,
    /// Fetches started so far; also the next token id.
    fetches: u64,
    /// The outcome of the last fetch when it failed, for the callers that waited for it.
    last_error: Option<CmError>,
    /// Refused credentials do not get better by asking again.
    refused: Option<CmError>,
    /// A failing token endpoint, and when it failed: asked again only after
    /// [`FAULT_HOLD`], so an outage costs one round of retries per cycle, not one per
    /// request.
    fault: Option<(CmError, Instant)>,
}

/// How long a token endpoint fault is answered from memory.
pub(crate) const FAULT_HOLD: Duration = Duration::from_secs(30);

/// The cache. The lock is held during a fetch, which is what makes the refresh
/// single-flight: concurrent callers queue on it and then find the new token.
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: tokio::sync::Mutex<Slot>,
    /// Fetches finished so far, readable without waiting for the lock.
    finished: AtomicU64,
}

/// How long before CM's expiry a token stops being used: a tenth of its lifetime, at most
/// a minute, so a request never starts with a token about to lapse.
pub(crate) fn margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(60))
}

impl TokenCache {
    /// The cached token, or a new one from `fetch` (which returns the token and its
    /// lifetime). A caller that waited while another caller's fetch failed gets that
    /// failure instead of fetching again, so an outage costs one round of retries, not one
    /// per waiting request.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Token, CmError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), CmError>>,
    {
        let seen = self.finished.load(Ordering::SeqCst);
        let mut slot = self.slot.lock().await;
        if let Some(c) = &slot.current
            && Instant::now() < c.fresh_until
        {
            return Ok(c.token.clone());
        }
        if let Some(e) = &slot.refused {
            return Err(e.clone());
        }
        if let Some((e, at)) = &slot.fault
            && at.elapsed() < FAULT_HOLD
        {
            return Err(e.clone());
        }
        if self.finished.load(Ordering::SeqCst) != seen
            && let Some(e) = &slot.last_error
        {
            return Err(e.clone());
        }
        slot.fetches += 1;
        let id = slot.fetches;
        let started = Instant::now();
        let result = fetch().await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok((value, ttl)) => {
                let token = Token { id, value };
                slot.current = Some(Cached {
                    token: token.clone(),
                    fresh_until: started + ttl - margin(ttl),
                });
                slot.last_error = None;
                slot.fault = None;
                Ok(token)
            }
            Err(e) => {
                if matches!(e, CmError::Auth { .. }) {
                    slot.refused = Some(e.clone());
                } else {
                    slot.fault = Some((e.clone(), Instant::now()));
                }
                slot.current = None;
                slot.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Drops the token `id` after CM refused it, unless it was already replaced.
    pub async fn invalidate(&self, id: u64) {
        let mut slot = self.slot.lock().await;
        if slot.current.as_ref().is_some_and(|c| c.token.id == id) {
            slot.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn margin_is_a_tenth_capped_at_a_minute() {
        assert_eq!(margin(Duration::from_secs(86_400)), Duration::from_secs(60));
        assert_eq!(margin(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(margin(Duration::ZERO), Duration::ZERO);
    }

    /// Runs `callers` concurrent `get`s whose fetch takes 200 ms and ends in `outcome`;
    /// returns their results and how many fetches ran.
    async fn concurrent_gets(
        callers: usize,
        outcome: Result<(), CmError>,
    ) -> (Vec<Result<Token, CmError>>, u32) {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (cache, fetches, outcome) = (cache.clone(), fetches.clone(), outcome.clone());
                tokio::spawn(async move {
                    cache
                        .get(|| async {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            outcome.map(|()| (SecretString::from("t"), Duration::from_secs(3600)))
                        })
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        (results, fetches.load(Ordering::SeqCst))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_callers_share_one_fetch() {
        let (results, fetches) = concurrent_gets(16, Ok(())).await;
        for r in results {
            assert_eq!(r.unwrap().value.expose_secret(), "t");
        }
        assert_eq!(fetches, 1);
    }

    #[tokio::test]
    async fn invalidation_only_drops_the_refused_token() {
        let cache = TokenCache::default();
        let ok =
            |v: &'static str| async move { Ok((SecretString::from(v), Duration::from_secs(3600))) };
        let first = cache.get(|| ok("a")).await.unwrap();
        cache.invalidate(first.id).await;
        let second = cache.get(|| ok("b")).await.unwrap();
        assert_eq!(second.value.expose_secret(), "b");
        cache.invalidate(first.id).await; // a late 401 for the old token
        let third = cache.get(|| ok("c")).await.unwrap();
        assert_eq!(third.value.expose_secret(), "b");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn callers_waiting_on_a_failed_fetch_share_its_failure() {
        let down = CmError::Transient {
            message: "down".into(),
            maybe_applied: false,
        };
        let (results, fetches) = concurrent_gets(8, Err(down)).await;
        for r in results {
            assert!(r.unwrap_err().is_transient());
        }
        assert_eq!(fetches, 1, "one outage, one fetch");
    }

    #[tokio::test]
    async fn a_failure_is_held_briefly_then_asked_again() {
        let cache = TokenCache::default();
        let down = || async {
            Err(CmError::Transient {
                message: "down".into(),
                maybe_applied: false,
            })
        };
        assert!(cache.get(down).await.is_err());
        let fetched = AtomicU32::new(0);
        let held = cache
            .get(|| async {
                fetched.fetch_add(1, Ordering::SeqCst);
                Ok((SecretString::from("t"), Duration::from_secs(60)))
            })
            .await;
        assert!(held.unwrap_err().is_transient());
        assert_eq!(fetched.load(Ordering::SeqCst), 0, "not asked again at once");
        cache.slot.lock().await.fault.as_mut().unwrap().1 -= FAULT_HOLD;
        let ok = cache
            .get(|| async { Ok((SecretString::from("t"), Duration::from_secs(60))) })
            .await;
        assert!(ok.is_ok());
    }

    #[tokio::test]
    async fn a_later_caller_fetches_again_after_a_failure() {
        let cache = TokenCache::default();
        let down = || async {
            Err(CmError::Transient {
                message: "down".into(),
                maybe_applied: false,
            })
        };
        assert!(cache.get(down).await.is_err());
        cache.slot.lock().await.fault = None;
        let ok = cache
            .get(|| async { Ok((SecretString::from("t"), Duration::from_secs(60))) })
            .await;
        assert!(ok.is_ok());
    }

    #[tokio::test]
    async fn refused_credentials_are_remembered() {
        let cache = TokenCache::default();
        let refused = || async {
            Err(CmError::Auth {
                client_id: "x".into(),
                message: "no".into(),
            })
        };
        assert!(cache.get(refused).await.is_err());
        let e = cache
            .get(|| async { Ok((SecretString::from("t"), Duration::from_secs(1))) })
            .await;
        assert!(matches!(e, Err(CmError::Auth { .. })));
    }
}
