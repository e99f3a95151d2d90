//! Files holding customer data are readable by owner and group only, whatever the umask
//! (README and ARCHITECTURE.md); the sandbox command keeps its secret out of `ps` and says so
//! when it listens beyond loopback.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use common::{SandboxHost, TestEnv};
use invoice_sync::sandbox::SandboxOptions;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file and folder under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if p.is_dir() {
            walk(&p, out);
        }
    }
}

/// The harm seen: under cron's umask 022 the database, the archive and the `.eml`
/// outbox were 0644: customer names and addresses readable by every local user.
#[test]
fn customer_data_is_never_world_readable_under_umask_022() {
    let host = SandboxHost::start(SandboxOptions::default());
    let env = TestEnv::new(&host.cm_toml());
    // The export arrives world-readable, as accounting software leaves it.
    let f = env.drop_file(
        "a.csv",
        "invoice_reference,customer_email,customer_name,amount,due_date\n\
         INV-1,a@example.com,Ann,10.00,2099-12-01\n\
         INV-2,not-an-address,Bob,10.00,2099-12-01\n",
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |args: &[&str]| {
        let mut c = env.command();
        c.args(args);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        c.output().unwrap()
    };
    assert_eq!(run(&["run"]).status.code(), Some(3));
    let out = env.path("paid.csv");
    assert_eq!(
        run(&["export-paid", "--out", out.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let mut all = Vec::new();
    for dir in ["state", "archive", "rejected", "outbox"] {
        walk(&env.path(dir), &mut all);
    }
    all.push(out);
    assert!(all.iter().any(|p| p.to_string_lossy().ends_with(".eml")));
    assert!(
        all.iter()
            .any(|p| p.to_string_lossy().ends_with(".rejected.csv"))
    );
    assert!(
        all.iter()
            .any(|p| p.starts_with(env.path("archive")) && p.is_file())
    );
    for p in &all {
        assert_eq!(mode(p) & 0o007, 0, "{} is {:o}", p.display(), mode(p));
    }
    assert_eq!(mode(&env.path("state/invoice-sync.db")) & 0o007, 0);
}

fn token_status(base: &str, secret: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base
        .trim_start_matches("http://")
        .replace("0.0.0.0", "127.0.0.1");
    let body = format!("grant_type=client_credentials&client_id=sandbox&client_secret={secret}");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /auth/v1/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_sandbox_takes_its_secret_from_the_environment_or_a_file_and_warns_beyond_loopback() {
    let (mut child, base) = common::spawn_sandbox_command(
        &["--listen", "127.0.0.1:0"],
        &[("INVOICE_SYNC_SANDBOX_SECRET", "from-env-77")],
        true,
    );
    assert_eq!(token_status(&base, "from-env-77"), 200);
    assert_eq!(token_status(&base, "sandbox"), 401);
    child.kill().unwrap();
    let _ = child.wait();

    let env = TestEnv::new("");
    let file = env.write_file("secret.txt", "from-file-88\n");
    let (mut child, base) = common::spawn_sandbox_command(
        &[
            "--listen",
            "127.0.0.1:0",
            "--client-secret-file",
            file.to_str().unwrap(),
        ],
        &[],
        true,
    );
    assert_eq!(token_status(&base, "from-file-88"), 200);
    child.kill().unwrap();
    let _ = child.wait();

    let (mut child, _) = common::spawn_sandbox_command(&["--listen", "0.0.0.0:0"], &[], true);
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("beyond loopback"), "{err}");
}
