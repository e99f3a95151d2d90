//! Helpers shared by the CM client and sandbox tests: a log capture (to prove what is
//! never logged), quick retries, a sandbox on a free port, one HTTP client.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use invoice_sync::cm::RetryPolicy;
use invoice_sync::sandbox::{self, Sandbox, SandboxOptions};

/// Every log line of this test binary, at debug level, so tests can assert what is never
/// logged. Printed to stderr as well when `TEST_LOG` is set.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        buf
    })
    .clone()
}

#[derive(Clone)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(data)?;
        }
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

pub async fn start(opts: SandboxOptions) -> Sandbox {
    sandbox::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .expect("sandbox starts")
}

/// One client for the whole binary: building one is slow (TLS roots).
pub fn http() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::new()
        })
        .clone()
}
