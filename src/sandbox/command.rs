//! `invoice-sync sandbox`: the simulator as a foreground command.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::SandboxOptions;

/// Options of `invoice-sync sandbox`, one per simulated condition, so a demo or a load
/// test can be set up from a shell.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port (the URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Delay added to every API request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of API requests answered 503 (0.0 to 1.0).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// Requests per second accepted before answering 429 (burst of the same size).
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long = "token-ttl", value_name = "SECONDS", default_value_t = 86_400)]
    pub token_ttl: u64,
    /// The client id the token endpoint accepts.
    #[arg(long, value_name = "ID", default_value = "sandbox")]
    pub client_id: String,
    /// The client secret the token endpoint accepts. Prefer
    /// `INVOICE_SYNC_SANDBOX_SECRET` or `--client-secret-file`: a command-line argument
    /// is visible to every user in `ps`.
    #[arg(
        long,
        value_name = "SECRET",
        env = "INVOICE_SYNC_SANDBOX_SECRET",
        hide_env_values = true,
        default_value = "sandbox"
    )]
    pub client_secret: String,
    /// Read the client secret from this file (its first line).
    #[arg(long, value_name = "PATH", conflicts_with = "client_secret")]
    pub client_secret_file: Option<PathBuf>,
    /// Base of the link URIs handed out (default: the listen URL).
    #[arg(long, value_name = "URL")]
    pub public_base: Option<String>,
    /// Keep the links in this file across restarts.
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Make the token endpoints answer like a broken gateway: 404 or 502 (an HTML page),
    /// 405, or 302 (a redirect). Switch faults later with `POST /sandbox/faults`.
    #[arg(long, value_name = "CODE")]
    pub token_fault: Option<super::Misroute>,
    /// Make the API endpoints answer like that instead of doing their work.
    #[arg(long, value_name = "CODE")]
    pub api_fault: Option<super::Misroute>,
    /// Carry out each API request, then answer only after this many milliseconds (a CM
    /// slower than the client's timeout).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub late_answers_ms: u64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0.0 and 1.0"))
    }
}

impl From<&SandboxArgs> for SandboxOptions {
    fn from(a: &SandboxArgs) -> Self {
        SandboxOptions {
            latency: Duration::from_millis(a.latency_ms),
            fail_rate: a.fail_rate,
            rate_limit: a.rate_limit,
            token_ttl: Duration::from_secs(a.token_ttl),
            client_id: a.client_id.clone(),
            client_secret: a.client_secret.clone(),
            public_base: a.public_base.clone(),
            state_file: a.state_file.clone(),
            skew_amounts: false,
        }
    }
}

/// Runs the simulator until SIGINT or SIGTERM. The first line on stdout is
/// `sandbox listening on <base URL>`, so scripts can read the port they got.
pub async fn run_command(args: SandboxArgs) -> anyhow::Result<()> {
    let mut args = args;
    if let Some(path) = &args.client_secret_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --client-secret-file {}", path.display()))?;
        args.client_secret = text.lines().next().unwrap_or("").trim().to_string();
    }
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "the sandbox listens beyond loopback: anyone who can reach this address can use it (it holds no real money, but its links and tokens are open)");
        eprintln!(
            "invoice-sync: warning: the sandbox listens on {}, beyond loopback",
            args.listen
        );
    }
    let sandbox = super::start(args.listen, SandboxOptions::from(&args))
        .await
        .with_context(|| format!("cannot start the sandbox on {}", args.listen))?;
    sandbox.set_faults(super::Faults {
        token: args.token_fault,
        api: args.api_fault,
        api_method: None,
        late_answers: Duration::from_millis(args.late_answers_ms),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "sandbox listening on {}", sandbox.base_url())
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
    }
    wait_for_signal().await?;
    sandbox.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
