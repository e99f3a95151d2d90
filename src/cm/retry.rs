//! When a failed CM request is sent again, and after how long.
//!
//! It owns the retry policy (attempts, capped full-jitter back-off, `Retry-After`) and the
//! judgement of which outcomes are worth retrying. It never sends or sleeps itself: the
//! client asks `decide` after each attempt and does what it says, so the policy can be
//! tested without a network and without waiting.

use std::time::{Duration, SystemTime};

use rand::RngExt;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How hard the client tries before it leaves a request for the next cycle. A value, so
/// tests can shorten the waits and a slower account can lengthen them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Back-off before the second attempt (the upper bound of its jitter); doubles per
    /// attempt.
    pub base_delay: Duration,
    /// The most a back-off grows to.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; CM asking for longer means the request is left
    /// for the next cycle at once instead of holding the cycle up.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The full-jitter back-off after failed attempt number `attempt` (1-based): uniform in
    /// `0..=min(max_delay, base_delay * 2^(attempt-1))`, so many clients that failed
    /// together do not come back together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// What one attempt came to, as far as retrying goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP answer that is not final (see [`retryable_status`]).
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The connection could not be made: the request never left.
    Connect,
    /// No answer in time after the request was sent.
    Timeout,
    /// The connection broke while sending or receiving.
    Broken,
}

impl Outcome {
    /// Whether CM certainly did not act on the request: it said so (`408`, `429`, `503`),
    /// or the request never reached it. Anything else — a `500`, a `502`/`504` from a
    /// gateway, a timeout, a broken connection — may hide a request that was carried out.
    pub(crate) fn surely_not_applied(&self) -> bool {
        match self {
            Outcome::Status { status, .. } => matches!(status, 408 | 429 | 503),
            Outcome::Connect => true,
            Outcome::Timeout | Outcome::Broken => false,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Give up: the failure is left for the next cycle.
    GiveUp,
}

/// Statuses worth another attempt: the server asked to wait (`429`), gave up waiting for
/// us (`408`), or failed (`5xx`). Every other status is final.
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Decides after failed attempt number `attempt` (1-based). A request that is not
/// idempotent (a create) is only sent again when CM surely did not act on it, so a lost
/// answer never turns into a second payment link.
pub(crate) fn decide(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempt: u32,
    idempotent: bool,
) -> Decision {
    if attempt >= policy.max_attempts.max(1) {
        return Decision::GiveUp;
    }
    if !idempotent && !outcome.surely_not_applied() {
        return Decision::GiveUp;
    }
    if let Outcome::Status {
        retry_after: Some(wait),
        ..
    } = outcome
    {
        return if *wait > policy.max_retry_after {
            Decision::GiveUp
        } else {
            Decision::RetryAfter(*wait)
        };
    }
    Decision::RetryAfter(policy.backoff(attempt))
}

/// The `Retry-After` of an answer, in delay-seconds or as an HTTP-date (a date in the
/// past means now).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn status(status: u16) -> Outcome {
        Outcome::Status {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let p = RetryPolicy::default();
        for attempt in 1..=10 {
            let ceiling = Duration::from_millis(200 * 2u64.pow(attempt - 1)).min(p.max_delay);
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= ceiling);
            }
        }
        // Jittered: not always the same value.
        let samples: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(samples.len() > 1);
    }

    #[test]
    fn what_is_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        assert!(matches!(
            decide(&p, &status(503), 4, true),
            Decision::RetryAfter(_)
        ));
        assert_eq!(decide(&p, &status(503), 5, true), Decision::GiveUp);
    }

    #[test]
    fn a_create_is_only_repeated_when_surely_not_applied() {
        let p = RetryPolicy::default();
        for o in [status(429), status(503), status(408), Outcome::Connect] {
            assert!(
                matches!(decide(&p, &o, 1, false), Decision::RetryAfter(_)),
                "{o:?}"
            );
        }
        for o in [
            status(500),
            status(502),
            status(504),
            Outcome::Timeout,
            Outcome::Broken,
        ] {
            assert_eq!(decide(&p, &o, 1, false), Decision::GiveUp, "{o:?}");
            assert!(
                matches!(decide(&p, &o, 1, true), Decision::RetryAfter(_)),
                "{o:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        let o = |secs| Outcome::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            decide(&p, &o(3), 1, false),
            Decision::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(decide(&p, &o(3600), 1, false), Decision::GiveUp);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, SystemTime::now()), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let now =
            SystemTime::from(chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:50Z").unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        let later = now + Duration::from_secs(60);
        assert_eq!(retry_after(&h, later), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
