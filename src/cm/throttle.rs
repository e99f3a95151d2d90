//! The one gate every CM request passes: a concurrency bound and a rate limiter.
//!
//! It owns the `max_in_flight` semaphore and the `requests_per_second` / `burst` limiter
//! of `[cm]`. It never sends anything, never retries and never sleeps except to wait for
//! its turn. Share one `Arc<Throttle>` between every client of the same CM account (the
//! payment link client, a later iDEAL QR client, token fetches), because CM counts them
//! together.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

/// At most `max_in_flight` requests in progress, and requests started at no more than
/// `requests_per_second` on average with at most `burst` at once. A request takes a
/// permit first and a limiter slot second, so that a slot is never spent by a request
/// that then waits for a permit — which would let requests bunch up behind the semaphore
/// and reach CM faster than the rate.
#[derive(Debug)]
pub struct Throttle {
    permits: Semaphore,
    limiter: DefaultDirectRateLimiter,
    requests_per_second: u32,
    burst: u32,
    max_in_flight: usize,
}

/// The right to send one request; the concurrency slot is released when it is dropped,
/// which must be after the whole response body was read.
#[derive(Debug)]
pub struct ThrottlePermit<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Throttle {
    /// A gate for the given limits; a zero `max_in_flight` is raised to 1 (the config
    /// refuses it, and a zero would block forever).
    pub fn new(
        requests_per_second: NonZeroU32,
        burst: NonZeroU32,
        max_in_flight: usize,
    ) -> Throttle {
        let max_in_flight = max_in_flight.max(1);
        Throttle {
            permits: Semaphore::new(max_in_flight),
            limiter: RateLimiter::direct(Quota::per_second(requests_per_second).allow_burst(burst)),
            requests_per_second: requests_per_second.get(),
            burst: burst.get(),
            max_in_flight,
        }
    }

    /// The gate configured by `[cm]`.
    pub fn from_settings(settings: &crate::config::Cm) -> Throttle {
        Throttle::new(
            settings.requests_per_second,
            settings.burst,
            settings.max_in_flight,
        )
    }

    /// Waits for a concurrency slot, then for the rate limiter: the order matters (see the
    /// type's doc).
    pub async fn acquire(&self) -> ThrottlePermit<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the throttle's semaphore is never closed");
        self.limiter.until_ready().await;
        ThrottlePermit { _permit: permit }
    }

    /// The configured average rate.
    pub fn requests_per_second(&self) -> u32 {
        self.requests_per_second
    }

    /// The configured burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The configured concurrency bound.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn never_more_than_max_in_flight() {
        let t = Arc::new(Throttle::new(nz(1000), nz(1000), 3));
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (t, now, max) = (t.clone(), now.clone(), max.clone());
                tokio::spawn(async move {
                    let _p = t.acquire().await;
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn holds_the_rate_after_the_burst() {
        let t = Throttle::new(nz(50), nz(5), 100);
        let start = Instant::now();
        for _ in 0..30 {
            let _p = t.acquire().await;
        }
        // 5 at once, then 25 at 50/s = 0.5 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(900), "{took:?}");
    }
}
