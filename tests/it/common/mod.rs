//! The test environment shared by the integration tests: a temporary folder with a config
//! file, a real SQLite database file, an inbox, and the `invoice-sync` binary driven as an
//! operator runs it.
#![allow(dead_code)]

pub mod cm_support;
pub mod measure;
pub mod smtp;
pub mod statements;
pub mod testdata;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// One isolated installation.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// What one command run printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl TestEnv {
    /// An installation with the default settings plus `extra` TOML, settle time 0.
    pub fn new(extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("invoice-sync.toml");
        let env = TestEnv { dir, config };
        env.write_config(extra);
        // The inbox exists, as an installation's does (a missing one is an error).
        std::fs::create_dir_all(env.inbox()).expect("create the inbox");
        env
    }

    /// Rewrites the config: storage and inbox in the temp folder, then `extra`.
    pub fn write_config(&self, extra: &str) {
        let base = "[storage]\ndatabase = \"state/invoice-sync.db\"\n\n\
             [inbox]\ndir = \"inbox\"\narchive_dir = \"archive\"\nrejected_dir = \"rejected\"\nsettle_seconds = 0\n\n\
             [email]\ntransport = \"file\"\nfile_dir = \"outbox\"\nfrom = \"Billing <billing@merchant.example>\"\nmessages_per_second = 1000\n\n";
        std::fs::write(&self.config, merge_toml(base, extra)).expect("write config");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn inbox(&self) -> PathBuf {
        self.path("inbox")
    }

    /// Drops a file into the inbox (created if needed), with an old enough mtime.
    pub fn drop_file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        std::fs::create_dir_all(self.inbox()).unwrap();
        let p = self.inbox().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Writes a file outside the inbox (for `import FILE`).
    pub fn write_file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// The binary with `--config` set and a quiet, deterministic environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_invoice-sync"));
        c.arg("--config").arg(&self.config);
        c.env_remove("INVOICE_SYNC_CONFIG");
        c.env_remove("JOURNAL_STREAM");
        c.env_remove("INVOICE_SYNC_FAILPOINT");
        c.env_remove("CREDENTIALS_DIRECTORY");
        c.current_dir(self.dir.path());
        c
    }

    /// Runs the binary with these arguments.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// Runs the binary with these arguments and environment variables added.
    pub fn run_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let out = self
            .command()
            .args(args)
            .envs(vars.iter().copied())
            .output()
            .expect("spawn invoice-sync");
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!(
                "$ invoice-sync {}\n{}{}",
                args.join(" "),
                out_str(&out.stdout),
                out_str(&out.stderr)
            );
        }
        Run::from(out)
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> Vec<Value> {
        let r = self.run(&["status", "--json"]);
        assert_eq!(r.code, 0, "status failed: {}", r.stderr);
        serde_json::from_str::<Vec<Value>>(&r.stdout).expect("status --json is a JSON array")
    }

    /// One invoice from `status --json`.
    pub fn invoice(&self, reference: &str) -> Value {
        self.status()
            .into_iter()
            .find(|v| v["invoice_reference"] == reference)
            .unwrap_or_else(|| panic!("no invoice {reference} in status"))
    }

    /// Runs a cycle, which must succeed, and checks that it recorded `reference` paid
    /// through the link or QR of an earlier revision (its last error says so).
    pub fn run_and_see_paid_by_an_earlier_revision(&self, reference: &str) {
        let r = self.run(&["run"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let inv = self.invoice(reference);
        assert_eq!(inv["state"], "paid", "{inv}");
        assert!(
            inv["last_error"]
                .as_str()
                .unwrap()
                .contains("earlier revision"),
            "{inv}"
        );
    }

    /// The database, opened directly (for counts the CLI does not show).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("state/invoice-sync.db")).expect("open db")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    /// File names in a folder of the installation (sorted; empty when missing).
    pub fn files_in(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn out_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it holds; on time-out fails with the daemon's log (`daemon.log`).
pub fn wait_for(
    env: &TestEnv,
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> bool,
) {
    let t0 = std::time::Instant::now();
    while !f() {
        if t0.elapsed() > timeout {
            let log = std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; daemon log:\n{log}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Joins two TOML snippets, letting `extra` add keys to tables `base` already has.
pub fn merge_toml(base: &str, extra: &str) -> String {
    let mut b: toml::Table = base.parse().expect("base toml");
    let e: toml::Table = extra.parse().expect("extra toml");
    merge(&mut b, e);
    toml::to_string(&b).expect("serialize toml")
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// A CSV in the default layout from (reference, email, name, amount, due date) rows.
pub fn default_csv(rows: &[(&str, &str, &str, &str, &str)]) -> String {
    let mut s = String::from("invoice_reference,customer_email,customer_name,amount,due_date\n");
    for (r, e, n, a, d) in rows {
        s.push_str(&format!("{r},{e},{n},\"{a}\",{d}\n"));
    }
    s
}

/// The SHA-256 and modification time of a file (to prove it was not touched).
pub fn fingerprint(p: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        std::fs::read(p).unwrap(),
        std::fs::metadata(p).unwrap().modified().unwrap(),
    )
}

/// The CM sandbox, in this test process, on a loopback port of its own.
pub struct SandboxHost {
    pub rt: tokio::runtime::Runtime,
    pub sandbox: Option<invoice_sync::sandbox::Sandbox>,
}

impl SandboxHost {
    /// Starts a sandbox with these options (credentials `test-client` / `test-secret`).
    pub fn start(opts: invoice_sync::sandbox::SandboxOptions) -> SandboxHost {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let opts = invoice_sync::sandbox::SandboxOptions {
            client_id: "test-client".into(),
            client_secret: "test-secret".into(),
            ..opts
        };
        let sandbox = rt
            .block_on(invoice_sync::sandbox::start(
                ([127, 0, 0, 1], 0).into(),
                opts,
            ))
            .expect("start sandbox");
        SandboxHost {
            rt,
            sandbox: Some(sandbox),
        }
    }

    pub fn sb(&self) -> &invoice_sync::sandbox::Sandbox {
        self.sandbox.as_ref().unwrap()
    }

    /// The `[cm]` section pointing at this sandbox.
    pub fn cm_toml(&self) -> String {
        format!(
            "[cm]\nbase_url = \"{}\"\nclient_id = \"test-client\"\nclient_secret = \"test-secret\"\nrequests_per_second = 200\nburst = 50\nmax_in_flight = 8\ntimeout_seconds = 5\n",
            self.sb().base_url()
        )
    }

    /// Links the sandbox holds for one invoice reference.
    pub fn links_for(&self, invoice: &str) -> Vec<invoice_sync::sandbox::LinkRecord> {
        self.sb()
            .links()
            .into_iter()
            .filter(|l| {
                l.fields
                    .get("invoice_reference")
                    .map(|v| v.trim_matches('"'))
                    == Some(invoice)
            })
            .collect()
    }

    /// API requests (method, path) in the order the sandbox answered them.
    pub fn api_log(&self) -> Vec<(String, String, u16)> {
        self.sb()
            .requests()
            .into_iter()
            .filter(|r| !r.path.starts_with("/sandbox"))
            .map(|r| (r.method, r.path, r.status))
            .collect()
    }
}

impl Drop for SandboxHost {
    fn drop(&mut self) {
        if let Some(sb) = self.sandbox.take() {
            self.rt.block_on(sb.shutdown());
        }
    }
}

/// Starts `invoice-sync sandbox ARGS` (with `env` added, `INVOICE_SYNC_SANDBOX_SECRET`
/// removed) and reads its first line; returns the child and the base URL it printed.
/// Its stderr is captured only when `capture_stderr` (then read it with
/// `wait_with_output`); otherwise it is discarded, so a chatty sandbox never blocks.
pub fn spawn_sandbox_command(
    args: &[&str],
    env: &[(&str, &str)],
    capture_stderr: bool,
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut c = Command::new(env!("CARGO_BIN_EXE_invoice-sync"));
    c.arg("sandbox").args(args).stdout(Stdio::piped());
    c.stderr(if capture_stderr {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    c.env_remove("INVOICE_SYNC_SANDBOX_SECRET");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn the sandbox command");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("sandbox listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    (child, base)
}

/// The text part of a mail as written to the outbox (`.eml`), decoded.
pub fn mail_text(raw: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
        .unwrap_or_default()
}

/// Makes every live link due for a status check, as if its back-off time had come.
pub fn make_links_due(env: &TestEnv) {
    env.db()
        .execute(
            "UPDATE links SET next_check_at = '2000-01-01T00:00:00Z' WHERE state = 'active'",
            [],
        )
        .unwrap();
}
