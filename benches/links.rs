//! Link creation throughput through `CmClient` against the sandbox: does the client reach
//! the configured rate however slow each response is (ARCHITECTURE.md), without tripping
//! CM's own limit?
//!
//! Setup: the sandbox answers after 100 ms and enforces 100 requests/s (burst 100, 429
//! beyond). The client is configured at 100 requests/s with `max_in_flight` 32 (Little's
//! law needs 100/s × 0.1 s = 10 in flight; 32 leaves room) and a burst of 50.
//!
//! Why burst 50 and not 100: two token buckets of the same size and rate only agree when
//! every request takes exactly as long to reach CM as the first one did. A request that
//! arrives a little less delayed finds CM's bucket empty and gets a 429. A client burst
//! below CM's leaves CM (100 − 50) / 100 s = 0.5 s of slack for that jitter, at the cost of
//! a slightly smaller head start. A third run measures an equal burst for comparison (on
//! loopback the arrival jitter is below the client's own timer lag, so it may well see no
//! 429; over TLS the first request, which pays the handshake, is the slowest to arrive,
//! which is exactly the case that trips equal buckets).
//!
//! Run with `cargo bench --bench links`. Prints plain `name: value` lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use invoice_sync::cm::{CmClient, CreateLink, RetryPolicy, Throttle};
use invoice_sync::config::Cm;
use invoice_sync::sandbox::{self, SandboxOptions};
use secrecy::SecretString;

const RATE: u32 = 100;
const LATENCY: Duration = Duration::from_millis(100);

struct Run {
    wall: Duration,
    rate: f64,
    rate_limited: u64,
    max_concurrent: u64,
    links: usize,
}

async fn run(n: usize, burst: u32, max_in_flight: usize) -> Run {
    let sb = sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxOptions {
            latency: LATENCY,
            rate_limit: Some(RATE),
            ..SandboxOptions::default()
        },
    )
    .await
    .expect("sandbox starts");
    let settings = Cm {
        base_url: sb.base_url(),
        client_id: "sandbox".into(),
        requests_per_second: std::num::NonZeroU32::new(RATE).expect("a rate"),
        burst: std::num::NonZeroU32::new(burst).expect("a burst"),
        max_in_flight,
        timeout_seconds: 30,
        ..Cm::default()
    };
    let client = CmClient::with_parts(
        &settings,
        SecretString::from("sandbox"),
        Arc::new(Throttle::from_settings(&settings)),
        RetryPolicy::default(),
    )
    .expect("client builds");
    // Let the sandbox's bucket fill up after its start, as a long-running CM's would be.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let start = Instant::now();
    let failures = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .create_link(&CreateLink {
                        amount_minor: 1000 + i as i64,
                        exponent: 2,
                        currency_code: "EUR".into(),
                        invoice_reference: invoice_sync::domain::InvoiceRef::parse(&format!(
                            "INV-{i:05}"
                        ))
                        .unwrap(),
                        invoice_due_date: "2024-05-01T00:00:00+00:00".into(),
                        merchant_reference: invoice_sync::domain::MerchantRef::parse(&format!(
                            "INV-{i:05}/1"
                        ))
                        .unwrap(),
                        language_code: "NL".into(),
                        country_code: "NL".into(),
                        expiry_date: None,
                        callback_url: None,
                    })
                    .await
            }
        })
        .buffer_unordered(max_in_flight)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    let wall = start.elapsed();
    assert_eq!(failures, 0, "every create succeeded");
    let counters = sb.counters();
    let links = sb.links().len();
    sb.shutdown().await;
    Run {
        wall,
        rate: n as f64 / wall.as_secs_f64(),
        rate_limited: counters.rate_limited,
        max_concurrent: counters.max_concurrent,
        links,
    }
}

/// The same measure through the product: `invoice-sync run` on an inbox of `n` invoices
/// against the sandbox; the rate is taken from the sandbox's own log of the create
/// requests (first start to last answer).
async fn cycle_run(n: usize, burst: u32, max_in_flight: usize) -> Run {
    let sandbox = invoice_sync::sandbox::start(
        ([127, 0, 0, 1], 0).into(),
        SandboxOptions {
            latency: LATENCY,
            rate_limit: Some(RATE),
            client_id: "bench".into(),
            client_secret: "bench".into(),
            ..SandboxOptions::default()
        },
    )
    .await
    .expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let mut csv = String::from("invoice_reference,customer_email,amount,due_date\n");
    for i in 0..n {
        csv.push_str(&format!(
            "B-{i:05},c{i}@example.com,{}.50,2099-12-01\n",
            10 + i % 500
        ));
    }
    std::fs::write(dir.path().join("inbox/bench.csv"), csv).unwrap();
    let config = dir.path().join("invoice-sync.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndatabase = \"db.sqlite\"\n\
             [inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\nsettle_seconds = 0\n\
             [cm]\nbase_url = \"{}\"\nclient_id = \"bench\"\nclient_secret = \"bench\"\n\
             requests_per_second = {RATE}\nburst = {burst}\nmax_in_flight = {max_in_flight}\n\
             [email]\ntransport = \"file\"\nfile_dir = \"outbox\"\nfrom = \"b@merchant.example\"\nmessages_per_second = 1000000\n",
            sandbox.base_url()
        ),
    )
    .unwrap();
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .arg("--config")
        .arg(&config)
        .args(["-q", "run"])
        .status()
        .await
        .expect("run invoice-sync");
    assert!(status.success(), "the cycle failed: {status}");
    let creates: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/paymentlink/v1.0" && r.status == 201)
        .collect();
    let first = creates.iter().map(|r| r.started).min().expect("creates");
    let last = creates.iter().map(|r| r.finished).max().expect("creates");
    let wall = last - first;
    let counters = sandbox.counters();
    let links = sandbox.links().len();
    sandbox.shutdown().await;
    Run {
        wall,
        rate: creates.len() as f64 / wall.as_secs_f64(),
        rate_limited: counters.rate_limited,
        max_concurrent: counters.max_concurrent,
        links,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "setup: sandbox latency {} ms, sandbox limit {RATE}/s (burst {RATE}), client {RATE}/s",
            LATENCY.as_millis()
        );

        let baseline = run(100, 50, 1).await;
        println!("baseline (max_in_flight 1): requests: 100");
        println!("baseline wall time: {:.2} s", baseline.wall.as_secs_f64());
        println!("baseline achieved rate: {:.1} req/s", baseline.rate);

        let main = run(2000, 50, 32).await;
        println!("concurrent (max_in_flight 32, burst 50): requests: 2000");
        println!("concurrent wall time: {:.2} s", main.wall.as_secs_f64());
        println!("concurrent achieved rate: {:.1} req/s", main.rate);
        println!(
            "concurrent achieved/configured: {:.3}",
            main.rate / f64::from(RATE)
        );
        println!("concurrent 429s served: {}", main.rate_limited);
        println!("concurrent max in flight at CM: {}", main.max_concurrent);
        println!("concurrent links created: {}", main.links);
        println!("speed-up over baseline: {:.1}x", main.rate / baseline.rate);

        let cycle_base = cycle_run(100, 50, 1).await;
        println!(
            "through `invoice-sync run`, one at a time: 100 invoices, {:.1} links/s",
            cycle_base.rate
        );
        let cycle = cycle_run(2000, 50, 32).await;
        println!(
            "through `invoice-sync run` (max_in_flight 32, burst 50): 2000 invoices, {} links, {:.2} s of link creation",
            cycle.links,
            cycle.wall.as_secs_f64()
        );
        println!(
            "through `invoice-sync run` achieved rate: {:.1} links/s = {:.3} of the configured rate; 429s served: {}; speed-up over one at a time: {:.1}x",
            cycle.rate,
            cycle.rate / f64::from(RATE),
            cycle.rate_limited,
            cycle.rate / cycle_base.rate
        );

        let equal = run(2000, RATE, 32).await;
        println!("equal bursts (max_in_flight 32, burst {RATE}): requests: 2000");
        println!("equal bursts wall time: {:.2} s", equal.wall.as_secs_f64());
        println!("equal bursts achieved rate: {:.1} req/s", equal.rate);
        println!("equal bursts 429s served: {}", equal.rate_limited);
        println!("equal bursts links created: {}", equal.links);
    });
}
