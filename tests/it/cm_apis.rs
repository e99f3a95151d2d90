//! What both CM API clients (payment links, iDEAL QR) must do alike, against the sandbox
//! over real HTTP on loopback: a refused token is refreshed once, rate limits and 503s are
//! survived without duplicates, a 400 is final and carries CM's message, wrong credentials
//! are asked once, and secrets and tokens stay secret. Each test runs for every API of
//! [`Api::ALL`] and names it in its failures.

use std::time::Duration;

use futures_util::StreamExt;
use invoice_sync::cm::CmError;
use invoice_sync::sandbox::SandboxOptions;

use crate::common::cm_support::{Api, CLIENT_ID, count, logs, request_log};

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refreshed_once_and_the_call_succeeds() {
    for api in Api::ALL {
        let (sb, c) = api.start(SandboxOptions::default()).await;
        let first = c.create(1).await.unwrap();
        sb.revoke_tokens();
        let second = c.create(2).await.unwrap();
        assert_eq!(sb.counters().tokens_issued, 2, "{api:?}");
        let token = ("POST".to_string(), api.token_path().to_string(), 200);
        let create = |status| ("POST".to_string(), api.create_path().to_string(), status);
        assert_eq!(
            request_log(&sb),
            [token.clone(), create(201), create(401), token, create(201)],
            "{api:?}: one refusal, one refresh, one retry"
        );
        assert_eq!(
            api.held(&sb),
            2,
            "{api:?}: the refused create did not create one"
        );
        assert_ne!(first, second, "{api:?}");
        sb.shutdown().await;
    }
}

/// CM's passing troubles: a rate limit is waited out as `Retry-After` asks, 503s are
/// retried, and each create made exactly one link / transaction.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_server_errors_are_survived_without_duplicates() {
    // CM allows 2 requests per second; the client is configured too fast on purpose.
    let rate_limited = SandboxOptions {
        rate_limit: Some(2),
        ..SandboxOptions::default()
    };
    let failing = SandboxOptions {
        fail_rate: 0.3,
        ..SandboxOptions::default()
    };
    for api in Api::ALL {
        let (sb, c) = api.start(rate_limited.clone()).await;
        for i in 0..3 {
            c.create(i).await.unwrap();
        }
        assert!(sb.counters().rate_limited >= 1, "{api:?}");
        assert_eq!(api.held(&sb), 3, "{api:?}: each create made exactly one");
        let log = sb.requests();
        let refused = log.iter().position(|r| r.status == 429).unwrap();
        let waited = log[refused + 1]
            .started
            .duration_since(log[refused].finished);
        assert!(
            waited >= Duration::from_millis(950),
            "{api:?}: Retry-After: 1 honoured, waited {waited:?}"
        );
        sb.shutdown().await;

        let (sb, c) = api.start(failing.clone()).await;
        let n = 24;
        let results = futures_util::stream::iter(0..n)
            .map(|i| {
                let c = c.clone();
                async move { c.read(&c.create(i).await?).await }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        for r in &results {
            assert!(r.is_ok(), "{api:?} with 503s: {r:?}");
        }
        assert!(
            sb.counters().server_errors > 0,
            "{api:?}: 503s were simulated"
        );
        assert_eq!(
            api.held(&sb),
            n as usize,
            "{api:?} with 503s: one per create, no duplicates"
        );
        sb.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_permanent_and_carries_cms_message() {
    for api in Api::ALL {
        let (sb, c) = api.start(SandboxOptions::default()).await;
        let err = c.create_refused().await.unwrap_err();
        match &err {
            CmError::Permanent {
                status: 400,
                message,
            } => {
                let field = api.refused_field();
                assert!(message.contains(field), "{api:?}: {message}");
            }
            other => panic!("{api:?}: expected a permanent 400, got {other:?}"),
        }
        assert!(!err.is_transient(), "{api:?}");
        assert!(!err.maybe_applied(), "{api:?}");
        assert_eq!(
            count(&sb, api.create_path()),
            1,
            "{api:?}: a 400 is not retried"
        );
        let missing = c.read(api.unknown_id()).await.unwrap_err();
        assert!(missing.is_not_found(), "{api:?}: {missing:?}");
        sb.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_a_permanent_auth_error_without_the_secret() {
    for api in Api::ALL {
        let sb = api.sandbox(SandboxOptions::default()).await;
        let wrong = "wrong-Secret-Value-77";
        let c = api.client_with(&sb, wrong);
        let err = c.create(1).await.unwrap_err();
        assert!(matches!(err, CmError::Auth { .. }), "{api:?}: {err:?}");
        assert!(!err.is_transient(), "{api:?}");
        let text = format!("{err} {err:?}");
        assert!(
            text.contains(CLIENT_ID),
            "{api:?}: names the client id: {text}"
        );
        assert!(!text.contains(wrong), "{api:?}: {text}");
        assert!(!text.contains(api.secret()), "{api:?}: {text}");
        // Known bad credentials are not tried again and again.
        assert!(c.check_credentials().await.is_err(), "{api:?}");
        assert_eq!(
            count(&sb, api.token_path()),
            1,
            "{api:?}: one refusal, not retried"
        );
        assert_eq!(api.held(&sb), 0, "{api:?}");
        sb.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_never_reach_errors_debug_or_logs() {
    for api in Api::ALL {
        let secret = api.secret();
        let (sb, c) = api.start(SandboxOptions::default()).await;
        let debug = format!("{c:?}");
        assert!(!debug.contains(secret), "{api:?}: {debug}");
        assert!(debug.contains(CLIENT_ID), "{api:?}: {debug}");

        let id = c.create(1).await.unwrap();
        let mut errors = vec![
            c.create_refused().await.unwrap_err(),
            c.read(api.unknown_id()).await.unwrap_err(),
        ];
        let mut tokens = sb.tokens();
        sb.revoke_tokens();
        c.read(&id).await.unwrap();
        tokens.extend(sb.tokens());
        assert_eq!(tokens.len(), 2, "{api:?}");

        // A server that is gone: transport errors.
        let dead = api.client(&sb);
        sb.shutdown().await;
        errors.push(dead.read(&id).await.unwrap_err());
        assert!(
            errors.last().unwrap().is_transient(),
            "{api:?}: {:?}",
            errors.last()
        );

        let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
        assert!(logs.contains("CM request"), "debug lines are captured");
        for e in &errors {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(secret), "{api:?}: {text}");
            for t in &tokens {
                assert!(!text.contains(t.as_str()), "{api:?}: {text}");
            }
        }
        assert!(!logs.contains(secret), "{api:?}: the secret is logged");
        for t in &tokens {
            assert!(!logs.contains(t.as_str()), "{api:?}: a token is logged");
        }
        assert!(!logs.to_ascii_lowercase().contains("bearer "), "{api:?}");
    }
}
