//! Metrics and health (README, *Metrics and health*): the daemon's `daemon.status_listen`
//! serves `/metrics`, scraped here and parsed strictly as the Prometheus text format, and
//! `/healthz`, 200 or 503 with the reason; neither is ever on the callback listener.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{SandboxHost, TestEnv, default_csv, free_port, wait_for};
use invoice_sync::sandbox::SandboxOptions;

/// One raw HTTP/1.1 request; the status code and body (empty when nothing answers).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

fn spawn_daemon(env: &TestEnv, failpoint: Option<&str>) -> Child {
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let mut c = env.command();
    c.arg("daemon").stdout(Stdio::null()).stderr(log);
    if let Some(f) = failpoint {
        c.env("INVOICE_SYNC_FAILPOINT", f);
    }
    c.spawn().unwrap()
}

fn stop(mut child: Child) {
    // SAFETY: plain FFI call sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One sample: its labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Parses the Prometheus text format (0.0.4) strictly: every line is a `# HELP`, a
/// `# TYPE` or a sample; names and label names are valid; every family is declared
/// once, HELP and TYPE before its samples; label values are quoted and escaped; values
/// are numbers; a counter's name ends in `_total`; a histogram's buckets are cumulative,
/// end in `+Inf`, and `+Inf` equals `_count`. Returns the samples by metric name.
fn parse_strictly(text: &str) -> Samples {
    let name_ok = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Samples = BTreeMap::new();
    let mut seen_samples_of: std::collections::BTreeSet<String> = Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(name_ok(name), "{line}");
            assert!(!help.is_empty(), "{line}");
            assert!(
                helps.insert(name.into(), help.into()).is_none(),
                "HELP twice: {line}"
            );
            assert!(
                !seen_samples_of.contains(name),
                "HELP after samples: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(name_ok(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {line}"
            );
            assert!(
                !seen_samples_of.contains(name),
                "TYPE after samples: {line}"
            );
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "a counter's name ends in _total: {line}"
                );
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (head, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = BTreeMap::new();
                let mut rest = inner;
                while !rest.is_empty() {
                    let (lname, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(name_ok(lname) && !lname.contains(':'), "{line}");
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let mut end = None;
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                other => panic!("bad escape {other:?} in {line}"),
                            },
                            '"' => {
                                end = Some(i);
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
                    assert!(labels.insert(lname.to_string(), value).is_none(), "{line}");
                    rest = &after[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
                (name, labels)
            }
        };
        assert!(name_ok(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no TYPE before {line}");
        assert!(helps.contains_key(family), "no HELP before {line}");
        seen_samples_of.insert(family.to_string());
        samples
            .entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    for (name, kind) in &types {
        if kind == "histogram" {
            let buckets = &samples[&format!("{name}_bucket")];
            let mut last = 0.0;
            for (labels, v) in buckets {
                assert!(*v >= last, "{name}: buckets are cumulative");
                last = *v;
                assert!(labels.contains_key("le"), "{name}: a bucket has le");
            }
            assert_eq!(buckets.last().unwrap().0["le"], "+Inf", "{name}");
            assert_eq!(
                samples[&format!("{name}_count")][0].1,
                last,
                "{name}: +Inf == _count"
            );
            assert!(samples.contains_key(&format!("{name}_sum")), "{name}_sum");
        } else {
            assert!(
                samples.contains_key(name),
                "{name} declared without samples"
            );
        }
    }
    samples
}

fn value(s: &Samples, name: &str, label: Option<(&str, &str)>) -> f64 {
    s.get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .iter()
        .find(|(l, _)| match label {
            None => l.is_empty(),
            Some((k, v)) => l.get(k).map(String::as_str) == Some(v),
        })
        .unwrap_or_else(|| panic!("no {name} {label:?}"))
        .1
}

#[test]
fn metrics_count_what_the_daemon_did_and_parse_strictly() {
    let host = SandboxHost::start(SandboxOptions::default());
    let (status_port, callback_port) = (free_port(), free_port());
    let env = TestEnv::new(&common::merge_toml(
        &host.cm_toml(),
        &format!(
            "[daemon]\nschedule = \"* * * * * *\"\nstatus_listen = \"127.0.0.1:{status_port}\"\ncallback_listen = \"127.0.0.1:{callback_port}\"\n"
        ),
    ));
    env.drop_file(
        "a.csv",
        default_csv(&[
            ("M-1", "a@example.com", "A", "10", "2099-12-01"),
            ("M-2", "b@example.com", "B", "20", "2099-12-01"),
        ]),
    );
    let daemon = spawn_daemon(&env, None);
    let scrape = || http(status_port, "GET", "/metrics", b"");
    wait_for(
        &env,
        "two links in the metrics",
        Duration::from_secs(20),
        || {
            let (code, body) = scrape();
            code == 200 && body.contains("invoice_sync_links_total{outcome=\"created\"} 2")
        },
    );
    wait_for(&env, "a completed cycle", Duration::from_secs(20), || {
        let (_, body) = scrape();
        body.contains("invoice_sync_mails_total{outcome=\"sent\"} 2")
    });
    // A callback, counted; the callback listener serves no metrics.
    let (code, _) = http(
        callback_port,
        "POST",
        "/callback",
        br#"{"paymentlink_refs":["pml-unknown"]}"#,
    );
    assert_eq!(code, 200);
    let (code, _) = http(callback_port, "GET", "/metrics", b"");
    assert!(
        code == 404 || code == 405,
        "the callback listener answered /metrics with {code}"
    );
    let (code, _) = http(callback_port, "GET", "/healthz", b"");
    assert!(code == 404 || code == 405, "{code}");

    let (code, body) = scrape();
    assert_eq!(code, 200);
    let s = parse_strictly(&body);
    assert_eq!(
        value(&s, "invoice_sync_invoices", Some(("state", "open"))),
        2.0
    );
    assert_eq!(
        value(&s, "invoice_sync_invoices", Some(("state", "paid"))),
        0.0
    );
    assert_eq!(
        value(&s, "invoice_sync_links_total", Some(("outcome", "created"))),
        2.0
    );
    assert_eq!(
        value(&s, "invoice_sync_links_total", Some(("outcome", "failed"))),
        0.0
    );
    assert_eq!(
        value(&s, "invoice_sync_mails_total", Some(("outcome", "sent"))),
        2.0
    );
    assert_eq!(value(&s, "invoice_sync_mails_queued", None), 0.0);
    assert_eq!(value(&s, "invoice_sync_callbacks_total", None), 1.0);
    assert_eq!(
        value(
            &s,
            "invoice_sync_reminders_total",
            Some(("outcome", "sent"))
        ),
        0.0
    );
    // A token, two creates and two expiry updates at least, all answered.
    assert!(
        value(
            &s,
            "invoice_sync_cm_requests_total",
            Some(("outcome", "ok"))
        ) >= 5.0
    );
    assert_eq!(
        value(
            &s,
            "invoice_sync_cm_requests_total",
            Some(("outcome", "server_error"))
        ),
        0.0
    );
    assert!(value(&s, "invoice_sync_cycle_duration_seconds_count", None) >= 1.0);
    let last = value(
        &s,
        "invoice_sync_last_cycle_completed_timestamp_seconds",
        None,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "last cycle {last}, now {now}");

    let (code, body) = http(status_port, "GET", "/healthz", b"");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("ok"), "{body}");
    stop(daemon);
}

/// A cycle that hangs (a stuck relay, a stuck disk) turns `/healthz` to 503 with the
/// reason once it has made no progress for two schedule intervals; before that, the
/// daemon is healthy.
#[test]
fn healthz_says_503_and_why_when_the_running_cycle_makes_no_progress() {
    let host = SandboxHost::start(SandboxOptions::default());
    let status_port = free_port();
    let env = TestEnv::new(&common::merge_toml(
        &host.cm_toml(),
        &format!(
            "[daemon]\nschedule = \"* * * * * *\"\nstatus_listen = \"127.0.0.1:{status_port}\"\n"
        ),
    ));
    let daemon = spawn_daemon(&env, Some("cycle-hang"));
    wait_for(&env, "the status listener", Duration::from_secs(10), || {
        http(status_port, "GET", "/healthz", b"").0 == 200
    });
    wait_for(&env, "503 from /healthz", Duration::from_secs(15), || {
        http(status_port, "GET", "/healthz", b"").0 == 503
    });
    let (_, body) = http(status_port, "GET", "/healthz", b"");
    assert!(body.contains("no progress"), "{body}");
    // /metrics still answers: the scrape shows no completed cycle.
    let (code, text) = http(status_port, "GET", "/metrics", b"");
    assert_eq!(code, 200);
    let s = parse_strictly(&text);
    assert_eq!(
        value(
            &s,
            "invoice_sync_last_cycle_completed_timestamp_seconds",
            None
        ),
        0.0
    );
    stop(daemon);
}

/// The two listeners can never be one: the config is refused, naming the key.
#[test]
fn the_status_listener_is_never_the_callback_listener() {
    let env = TestEnv::new(
        "[daemon]\nstatus_listen = \"127.0.0.1:9189\"\ncallback_listen = \"127.0.0.1:9189\"\n",
    );
    let r = env.run(&["check"]);
    assert_ne!(r.code, 0);
    assert!(r.stdout.contains("daemon.status_listen"), "{}", r.stdout);
}
