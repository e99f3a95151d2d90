//! `invoice-sync sandbox` as an operator runs it: a separate process that prints its base
//! URL, serves a whole cycle, takes a payment over HTTP, and stops on SIGTERM.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{TestEnv, default_csv};

fn post(base: &str, path: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_sandbox_command_serves_a_cycle_and_a_payment() {
    let (mut sandbox, base) = common::spawn_sandbox_command(
        &[
            "--listen",
            "127.0.0.1:0",
            "--client-id",
            "ops",
            "--client-secret",
            "ops-secret",
            "--latency-ms",
            "5",
        ],
        &[],
        false,
    );
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let env = TestEnv::new(&format!(
        "[cm]\nbase_url = \"{base}\"\nclient_id = \"ops\"\nclient_secret = \"ops-secret\"\n"
    ));
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let link = env.invoice("INV-1")["link_ref"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(link.starts_with("pml-"));
    assert_eq!(
        post(&base, &format!("/sandbox/paymentlinks/{link}/pay")),
        200
    );
    assert_eq!(
        post(&base, &format!("/sandbox/paymentlinks/{link}/pay")),
        409
    );
    assert_eq!(post(&base, "/sandbox/paymentlinks/pml-nope/pay"), 404);
    env.db()
        .execute(
            "UPDATE links SET next_check_at = '2000-01-01T00:00:00Z'",
            [],
        )
        .unwrap();
    let r = env.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.invoice("INV-1")["state"], "paid");

    // SAFETY: plain FFI call sending SIGTERM to our own child.
    unsafe {
        libc::kill(sandbox.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = sandbox.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// One raw HTTP/1.1 POST with a body; returns the status line's code and the whole answer.
fn post_body(base: &str, path: &str, body: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    (
        resp.split_whitespace().nth(1).unwrap().parse().unwrap(),
        resp,
    )
}

#[test]
fn the_sandbox_command_can_be_a_broken_gateway_and_be_fixed_while_running() {
    let (mut sandbox, base) = common::spawn_sandbox_command(
        &["--listen", "127.0.0.1:0", "--token-fault", "302"],
        &[],
        false,
    );
    let form = "grant_type=client_credentials&client_id=sandbox&client_secret=sandbox";
    let (code, answer) = post_body(&base, "/auth/v1/token", form);
    assert_eq!(code, 302, "{answer}");
    assert!(
        answer.to_lowercase().contains("location: https://"),
        "{answer}"
    );
    let (code, _) = post_body(&base, "/sandbox/faults", r#"{"token": "404"}"#);
    assert_eq!(code, 200);
    let (code, answer) = post_body(&base, "/auth/v1/token", form);
    assert_eq!(code, 404);
    assert!(answer.contains("<html>"), "a gateway's page: {answer}");
    let (code, _) = post_body(&base, "/sandbox/faults", "{}");
    assert_eq!(code, 200);
    let (code, answer) = post_body(&base, "/auth/v1/token", form);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("access_token"));
    sandbox.kill().unwrap();
    let _ = sandbox.wait();
}
