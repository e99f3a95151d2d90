//! The daemon (README and ARCHITECTURE.md), driven as systemd would: the spawned binary,
//! real signals, a real `NOTIFY_SOCKET`, real HTTP callbacks from the sandbox.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{SandboxHost, TestEnv, default_csv, free_port, wait_for};
use invoice_sync::sandbox::SandboxOptions;

fn sigterm(child: &Child) {
    // SAFETY: plain FFI call sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if t0.elapsed() > timeout {
            child.kill().unwrap();
            panic!("the daemon did not stop within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon_env(host: &SandboxHost, extra: &str) -> TestEnv {
    TestEnv::new(&common::merge_toml(
        &host.cm_toml(),
        &format!("[daemon]\nschedule = \"* * * * * *\"\n{extra}"),
    ))
}

/// A CSV of `n` open invoices `<prefix>-00`, `<prefix>-01`, … for one customer.
fn invoices(prefix: &str, n: usize) -> String {
    let refs: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:02}")).collect();
    let rows: Vec<_> = refs
        .iter()
        .map(|r| (r.as_str(), "a@example.com", "A", "10", "2099-12-01"))
        .collect();
    default_csv(&rows)
}

fn spawn_daemon(env: &TestEnv) -> Child {
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    env.command()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// One raw HTTP/1.1 POST; returns the status code.
fn post(port: u16, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body); // the server may answer 413 and close before reading it all
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_drop_is_linked_within_a_tick_and_sigterm_exits_0() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = daemon_env(&host, "");
    let mut child = spawn_daemon(&env);
    std::thread::sleep(Duration::from_millis(300));
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    wait_for(
        &env,
        "the link and its mail",
        Duration::from_secs(15),
        || {
            env.path("state/invoice-sync.db").exists()
                && env
                    .run(&["status", "--json"])
                    .stdout
                    .contains("\"mail_state\": \"sent\"")
        },
    );
    assert_eq!(env.files_in("outbox").len(), 1, "one .eml for one link");
    assert_eq!(env.invoice("INV-1")["link_active"], true);
    // a later drop is picked up by a later tick
    env.drop_file(
        "b.csv",
        default_csv(&[("INV-2", "b@example.com", "B", "20", "2099-12-01")]),
    );
    wait_for(&env, "the second link", Duration::from_secs(15), || {
        env.status()
            .iter()
            .filter(|v| v["link_active"] == true)
            .count()
            == 2
    });
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), 0);
    assert_eq!(host.sb().links().len(), 2);
}

#[test]
fn sandbox_pay_fires_the_callback_and_the_invoice_shows_paid_and_junk_is_survived() {
    let host = SandboxHost::start(SandboxOptions::default());
    let port = free_port();
    let env = daemon_env(
        &host,
        &format!(
            "callback_listen = \"127.0.0.1:{port}\"\ncallback_path = \"/cm/callback\"\n\
             [cm]\ncallback_url = \"http://127.0.0.1:{port}/cm/callback\"\n"
        ),
    );
    env.drop_file(
        "a.csv",
        default_csv(&[
            ("INV-1", "a@example.com", "A", "10", "2099-12-01"),
            ("INV-2", "b@example.com", "B", "20", "2099-12-01"),
        ]),
    );
    let mut child = spawn_daemon(&env);
    wait_for(&env, "the links", Duration::from_secs(15), || {
        env.path("state/invoice-sync.db").exists()
            && env
                .status()
                .iter()
                .filter(|v| v["link_active"] == true)
                .count()
                == 2
    });

    // junk first: none of it may stop the daemon
    let huge = vec![b'x'; 100 * 1024];
    assert_eq!(post(port, "/cm/callback", &huge), 413);
    assert_eq!(post(port, "/cm/callback", b"{not json"), 400);
    assert_eq!(post(port, "/cm/callback", b"{\"other\": 1}"), 400);
    assert_eq!(
        post(port, "/cm/callback", b"{\"paymentlink_refs\": 5}"),
        400
    );
    assert_eq!(
        post(
            port,
            "/cm/callback",
            b"{\"paymentlink_refs\": [\"pml-unknown\"]}"
        ),
        200
    );
    assert_eq!(post(port, "/elsewhere", b"{}"), 404);
    // a forged callback for a real, unpaid link changes nothing: the API says open
    let link2 = env.invoice("INV-2")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = format!("{{\"paymentlink_refs\": [\"{link2}\"]}}");
    assert_eq!(post(port, "/cm/callback", forged.as_bytes()), 200);
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");

    // pay INV-1 at the sandbox: it POSTs the callback, the daemon asks the API
    let link = env.invoice("INV-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Instant::now();
    assert_eq!(host.sb().pay(&link), 200);
    wait_for(&env, "paid", Duration::from_secs(10), || {
        env.invoice("INV-1")["state"] == "paid"
    });
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(env.invoice("INV-2")["state"], "open");
    let status_gets = host
        .api_log()
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.ends_with("/status"))
        .count();
    assert!(
        status_gets >= 2,
        "the callbacks were checked against the API"
    );

    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), 0);
}

#[test]
fn sigterm_in_the_middle_of_a_cycle_finishes_it_and_the_next_start_repeats_nothing() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(250),
        ..SandboxOptions::default()
    });
    let env = daemon_env(&host, "[cm]\nmax_in_flight = 1\n");
    env.drop_file("a.csv", invoices("S", 12));
    let mut child = spawn_daemon(&env);
    wait_for(
        &env,
        "the cycle to be under way",
        Duration::from_secs(15),
        || host.sb().links().len() >= 2,
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);
    // the in-flight cycle was finished, not cut: every invoice has its link
    assert_eq!(host.sb().links().len(), 12);

    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "nothing to repeat, nothing lost: {}", r.stderr);
    assert!(r.stderr.contains("links 0 created"), "{}", r.stderr);
    assert_eq!(host.sb().links().len(), 12);
    assert!(env.status().iter().all(|v| v["link_active"] == true));
}

#[test]
fn sd_notify_ready_status_watchdog_stopping() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = daemon_env(&host, "");
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = env
        .command()
        .arg("daemon")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |seen: &mut Vec<String>, want: &str, timeout: Duration| {
        let t0 = Instant::now();
        while !seen.iter().any(|m| m.contains(want)) {
            assert!(
                t0.elapsed() < timeout,
                "no {want} within {timeout:?}: {seen:?}"
            );
            if let Ok(n) = sock.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    read_until(&mut seen, "READY=1", Duration::from_secs(10));
    read_until(&mut seen, "WATCHDOG=1", Duration::from_secs(3));
    read_until(
        &mut seen,
        "STATUS=last cycle: files 0",
        Duration::from_secs(5),
    );
    sigterm(&child);
    read_until(&mut seen, "STOPPING=1", Duration::from_secs(5));
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), 0);
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    let stopping = seen.iter().position(|m| m.contains("STOPPING=1")).unwrap();
    assert!(ready < stopping);
}

#[test]
fn a_bad_schedule_is_a_config_error_naming_the_key() {
    let env = TestEnv::new("[daemon]\nschedule = \"every 5 minutes\"\n");
    let r = env.run(&["daemon"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("daemon.schedule"), "{}", r.stderr);
}

/// The harm seen: `0 0 30 2 *` said "daemon started", then nothing, ever.
#[test]
fn a_schedule_that_never_fires_is_refused_at_start() {
    let env = TestEnv::new("[daemon]\nschedule = \"0 0 30 2 *\"\n");
    let r = env.run(&["daemon"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("daemon.schedule") && r.stderr.contains("never fires"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("daemon started"), "{}", r.stderr);
}

/// The harm seen: the database was removed under a running daemon, which went on with
/// the deleted file and created and mailed links that are now recorded nowhere.
#[test]
fn a_database_removed_or_replaced_under_the_daemon_stops_it_before_more_work() {
    for replace in [false, true] {
        let host = SandboxHost::start(SandboxOptions::default());
        let env = daemon_env(&host, "");
        env.drop_file(
            "1.csv",
            default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
        );
        let mut child = spawn_daemon(&env);
        wait_for(&env, "the first mail", Duration::from_secs(20), || {
            env.files_in("outbox").len() == 1
        });
        let db = env.path("state/invoice-sync.db");
        if replace {
            let copy = env.path("state/copy.db");
            std::fs::copy(&db, &copy).unwrap();
            std::fs::rename(&copy, &db).unwrap();
        } else {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
        env.drop_file(
            "2.csv",
            default_csv(&[("INV-2", "b@example.com", "B", "20", "2099-12-01")]),
        );
        let code = wait_exit(&mut child, Duration::from_secs(20));
        let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
        assert_eq!(code, 1, "replace={replace}: {log}");
        let said = if replace { "replaced" } else { "removed" };
        assert!(log.contains(said), "replace={replace}: {log}");
        assert!(
            host.links_for("INV-2").is_empty(),
            "no link made for nowhere"
        );
        assert_eq!(env.files_in("outbox").len(), 1, "no mail for nowhere");
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: plain FFI call sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// The harm seen: SIGHUP (a closed terminal, a careless `kill -HUP`) killed the daemon
/// mid-cycle, silently, leaving false orphan reports.
#[test]
fn sighup_is_logged_and_ignored_and_a_second_sigint_stops_at_once() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(300),
        ..SandboxOptions::default()
    });
    let env = daemon_env(&host, "[cm]\nmax_in_flight = 1\n");
    env.drop_file("a.csv", invoices("H", 30));
    let mut child = spawn_daemon(&env);
    wait_for(
        &env,
        "the cycle to be under way",
        Duration::from_secs(15),
        || !host.sb().links().is_empty(),
    );
    signal(&child, libc::SIGHUP);
    let linked = host.sb().links().len();
    wait_for(
        &env,
        "more links after SIGHUP",
        Duration::from_secs(15),
        || host.sb().links().len() > linked + 2,
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after SIGHUP"
    );
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    assert!(log.contains("SIGHUP ignored"), "{log}");

    // The first SIGINT lets the cycle finish; the second stops at once.
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGINT finishes the cycle"
    );
    let t0 = Instant::now();
    signal(&child, libc::SIGINT);
    let code = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(code, 130);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        host.sb().links().len() < 30,
        "stopped before the cycle ended"
    );
    // The next run repairs and completes without a duplicate link.
    let r = env.run(&["run"]);
    assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    assert!(env.status().iter().all(|v| v["link_active"] == true));
}

/// Starts the daemon with a notify socket and a watchdog of `watchdog_ms`; returns the
/// child and the socket, and the log goes to `daemon.log`.
fn spawn_notified(
    env: &TestEnv,
    watchdog_ms: u64,
    failpoint: Option<&str>,
) -> (Child, UnixDatagram) {
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let mut cmd = env.command();
    cmd.arg("daemon")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", (watchdog_ms * 1000).to_string())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(fp) = failpoint {
        cmd.env("INVOICE_SYNC_FAILPOINT", fp);
    }
    (cmd.spawn().unwrap(), sock)
}

/// Every notify message received within `window`, with its arrival time.
fn collect(sock: &UnixDatagram, window: Duration) -> Vec<(Instant, String)> {
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < window {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    out
}

/// The harm seen: the watchdog was pinged from its own task, so a hung cycle kept being
/// pinged and systemd never restarted it.
#[test]
fn a_hung_cycle_stops_the_watchdog_pings() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = daemon_env(&host, "");
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    let (mut child, sock) = spawn_notified(&env, 500, Some("cycle-hang"));
    // Idle before the first tick: pinged.
    let first = collect(&sock, Duration::from_millis(900));
    assert!(
        first.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "{first:?}"
    );
    wait_for(&env, "the cycle to hang", Duration::from_secs(10), || {
        std::fs::read_to_string(env.path("daemon.log"))
            .unwrap_or_default()
            .contains("imported")
    });
    // Give the stall one interval to be noticed, then no more pings.
    std::thread::sleep(Duration::from_millis(700));
    let _earlier = collect(&sock, Duration::from_millis(100)); // what waited in the socket
    let later = collect(&sock, Duration::from_millis(1500));
    assert!(
        !later.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "a hung cycle is still pinged: {later:?}"
    );
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    assert!(log.contains("no progress"), "{log}");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn a_long_cycle_that_keeps_progressing_keeps_being_pinged() {
    let host = SandboxHost::start(SandboxOptions {
        latency: Duration::from_millis(150),
        ..SandboxOptions::default()
    });
    let env = daemon_env(&host, "[cm]\nmax_in_flight = 1\n");
    env.drop_file("a.csv", invoices("L", 12));
    let (mut child, sock) = spawn_notified(&env, 600, None);
    // The cycle takes about 24 requests x 150 ms, several watchdog intervals.
    let seen = collect(&sock, Duration::from_millis(5000));
    let pings: Vec<Instant> = seen
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(pings.len() >= 8, "{seen:?}");
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest < Duration::from_millis(600),
        "a gap of {longest:?} would have let systemd kill a progressing cycle"
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);
    assert_eq!(host.sb().links().len(), 12);
}

/// Posts `body` to the callback path from `threads` threads, `each` times per thread.
fn flood(port: u16, path: &str, body: &str, threads: usize, each: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (path, body) = (path.to_string(), body.to_string());
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert_eq!(post(port, &path, body.as_bytes()), 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn cycles_logged(env: &TestEnv) -> usize {
    std::fs::read_to_string(env.path("daemon.log"))
        .unwrap_or_default()
        .matches("cycle: files")
        .count()
}

/// The harm seen: callbacks naming one known link kept the scheduled cycles from running
/// for 40 s and spent the CM rate budget on status reads; unknown refs starved cycles.
#[test]
fn a_callback_flood_neither_starves_the_schedule_nor_the_api_budget() {
    let host = SandboxHost::start(SandboxOptions::default());
    let port = free_port();
    let env = daemon_env(
        &host,
        &format!("callback_listen = \"127.0.0.1:{port}\"\ncallback_path = \"/cb\"\n"),
    );
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    let mut child = spawn_daemon(&env);
    wait_for(&env, "the link", Duration::from_secs(15), || {
        !host.sb().links().is_empty() && cycles_logged(&env) >= 1
    });
    let link = host.sb().links()[0].reference.clone();
    let status_path = format!("/paymentlink/v1/{link}/status");
    let reads = || {
        host.api_log()
            .iter()
            .filter(|(_, p, _)| *p == status_path)
            .count()
    };
    let before_reads = reads();
    let before_cycles = cycles_logged(&env);
    let t0 = Instant::now();
    let known = format!("{{\"paymentlink_refs\": [\"{link}\"]}}");
    flood(port, "/cb", &known, 4, 400);
    let unknown = "{\"paymentlink_refs\": [\"pml-unknown-1\", \"pml-unknown-2\"]}";
    flood(port, "/cb", unknown, 4, 400);
    // Let the last tick after the flood run.
    std::thread::sleep(Duration::from_millis(1500));
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        reads() - before_reads <= 1,
        "one status read per 30 s for a link named {} times: {}",
        1600,
        reads() - before_reads
    );
    let cycles = cycles_logged(&env) - before_cycles;
    assert!(
        cycles as f64 >= secs * 0.5,
        "the schedule (every second) ran {cycles} cycles in {secs:.1} s of flood"
    );
    // Unknown refs cost no API call at all: the sandbox saw no request for them.
    assert!(
        host.api_log()
            .iter()
            .all(|(_, p, _)| !p.contains("unknown"))
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(15)), 0);
}

/// Raises this process's soft limit of open files to the hard one (at most 65,536), for
/// tests that hold hundreds of sockets.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// The harm seen: 1,100 idle connections at the default 1024-file limit made every
/// cycle fail with "Too many open files".
#[test]
fn idle_connections_cannot_exhaust_file_descriptors() {
    // This test holds 1,100 sockets itself.
    raise_open_files_limit();
    let host = SandboxHost::start(SandboxOptions::default());
    let port = free_port();
    let env = daemon_env(
        &host,
        &format!("callback_listen = \"127.0.0.1:{port}\"\ncallback_path = \"/cb\"\n"),
    );
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let mut cmd = env.command();
    cmd.arg("daemon").stdout(Stdio::null()).stderr(log);
    // The daemon gets the default limit of 1024 files, as on a stock system.
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    wait_for(&env, "the listener", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let idle: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() >= 1000, "{} connections opened", idle.len());
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    wait_for(
        &env,
        "a link despite the idle connections",
        Duration::from_secs(20),
        || {
            !host.sb().links().is_empty()
                && env.path("outbox").exists()
                && env.files_in("outbox").len() == 1
        },
    );
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
    // The listener still answers once the idle ones are gone.
    wait_for(
        &env,
        "the listener to answer",
        Duration::from_secs(15),
        || post(port, "/cb", b"{\"paymentlink_refs\": []}") == 200,
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(15)), 0);
}

/// One raw HTTP/1.1 POST that survives a refused or reset connection: the status code
/// and the whole answer, or `(0, what was read)` when no status line came.
fn try_post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, resp)
}

/// A daemon with a callback listener on a free loopback port at `/cb`.
fn spawn_with_listener(host: &SandboxHost) -> (TestEnv, Child, u16) {
    let port = free_port();
    let env = daemon_env(
        host,
        &format!("callback_listen = \"127.0.0.1:{port}\"\ncallback_path = \"/cb\"\n"),
    );
    let child = spawn_daemon(&env);
    wait_for(&env, "the listener", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (env, child, port)
}

/// The harm seen (issue 20): with 256 idle connections holding every slot, new ones were
/// closed at once, so 500 idle connections kept a real callback unanswered for up to
/// 10 s (until the idle ones hit the header deadline). The connection idle longest now
/// makes room for it.
#[test]
fn a_callback_is_answered_within_a_second_despite_500_idle_connections() {
    raise_open_files_limit();
    let host = SandboxHost::start(SandboxOptions::default());
    let (_env, mut child, port) = spawn_with_listener(&host);
    let idle: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(idle.len(), 500, "idle connections opened");
    // Let the daemon accept them all.
    std::thread::sleep(Duration::from_millis(500));
    let body = b"{\"paymentlink_refs\": [\"pml-not-ours\"]}";
    let t0 = Instant::now();
    let mut attempts = 0;
    let mut first = 0;
    let (code, resp) = loop {
        attempts += 1;
        let (code, resp) = try_post(port, "/cb", body);
        if attempts == 1 {
            first = code;
        }
        if (200..300).contains(&code) || t0.elapsed() > Duration::from_secs(15) {
            break (code, resp);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = t0.elapsed();
    eprintln!(
        "the callback was answered {code} after {took:?} and {attempts} attempt(s) (the first: {first})"
    );
    assert!(
        (200..300).contains(&code),
        "no 2xx within 15 s: {code} {resp:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "a callback behind 500 idle connections took {took:?} ({attempts} attempts)"
    );
    assert_eq!(first, code, "the first attempt is served");
    drop(idle);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(15)), 0);
}

/// When every slot holds a request in progress (here: heads sent, bodies not), nothing
/// can be evicted: a new connection is answered 503 with `Retry-After`, never closed
/// without a word, and is served again once the slots free up.
#[test]
fn at_the_cap_with_every_connection_mid_request_a_new_one_gets_503_with_retry_after() {
    raise_open_files_limit();
    let host = SandboxHost::start(SandboxOptions::default());
    let (env, mut child, port) = spawn_with_listener(&host);
    let busy: Vec<TcpStream> = (0..invoice_sync::daemon::CALLBACK_MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(
                b"POST /cb HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    // Let the daemon accept them all and read their heads.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let (code, resp) = try_post(port, "/cb", b"{\"paymentlink_refs\": []}");
    let took = t0.elapsed();
    assert_eq!(code, 503, "{resp:?}");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: "), "{resp:?}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{resp:?}");
    assert!(took < Duration::from_secs(1), "the 503 took {took:?}");
    drop(busy);
    wait_for(
        &env,
        "the listener to serve again",
        Duration::from_secs(10),
        || try_post(port, "/cb", b"{\"paymentlink_refs\": []}").0 == 200,
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(15)), 0);
}

/// `daemon.status_listen` beyond loopback serves the metrics to the network with no
/// password: the daemon says so at start; on loopback it says nothing.
#[test]
fn a_status_listener_beyond_loopback_is_warned_about() {
    let host = SandboxHost::start(SandboxOptions::default());
    for (listen, warned) in [
        ("0.0.0.0:0".to_string(), true),
        (format!("127.0.0.1:{}", free_port()), false),
    ] {
        let env = daemon_env(&host, &format!("status_listen = \"{listen}\"\n"));
        let mut child = spawn_daemon(&env);
        let log = || std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default();
        wait_for(&env, "the status listener", Duration::from_secs(10), || {
            log().contains("status listener ready")
        });
        sigterm(&child);
        assert_eq!(wait_exit(&mut child, Duration::from_secs(15)), 0);
        let log = log();
        let warning = log
            .lines()
            .find(|l| l.contains("status_listen") && l.contains("beyond loopback"));
        assert_eq!(warning.is_some(), warned, "{listen}: {log}");
        if let Some(w) = warning {
            assert!(w.contains("unprotected") && w.contains("loopback"), "{w}");
            assert!(w.starts_with("<4>") || w.contains("WARN"), "a warning: {w}");
        }
    }
}
