//! The command line (README, *Commands*): clap definitions, dispatch, and the mapping of
//! outcomes to exit codes, with one module per command (`run` and `import`, `status`,
//! `check`, `export-paid`, and the overrides `deactivate` and `resend`). Every non-zero
//! exit prints one plain sentence on stderr saying why. Logging is set up by
//! [`crate::logging`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::cycle;
use crate::ingest;
use crate::lock::RunLock;
use crate::logging::LogFormat;
use crate::mail::Postman;
use crate::services::{CmConnection, Services};
use crate::store::Store;
use crate::store::invoices::{self, InvoiceView, State};
use crate::store::links::{self, DeactivateReason};

mod bank;
mod check;
mod export;
mod overrides;
mod run;
mod status;

use bank::{BankCommand, bank};
use check::check;
use export::{ExportArgs, ExportFormat, export_paid};
use overrides::{deactivate, resend};
use run::{import, run_cycle};
use status::{printable, status};

/// The exit codes (README, *Commands*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything done.
    Success = 0,
    /// Config, database, I/O or an unexpected error.
    Fatal = 1,
    /// The command line was wrong.
    Usage = 2,
    /// Done, but something needs an operator: rejected rows, refused files, failures.
    Attention = 3,
    /// Another cycle holds the run lock; nothing was done.
    Locked = 75,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A command's result: the exit code and, when non-zero, the sentence for stderr.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code.
    pub exit: Exit,
    /// The sentence for stderr, when the exit is not 0.
    pub message: Option<String>,
}

impl Outcome {
    fn ok() -> Self {
        Outcome {
            exit: Exit::Success,
            message: None,
        }
    }
    fn attention(message: String) -> Self {
        Outcome {
            exit: Exit::Attention,
            message: Some(message),
        }
    }
    fn fatal(message: String) -> Self {
        Outcome {
            exit: Exit::Fatal,
            message: Some(message),
        }
    }
}

/// The version `--version` prints: the package version and the source revision it was
/// built from (`git describe`, set by build.rs; `unknown` outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("INVOICE_SYNC_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "invoice-sync",
    version = VERSION,
    about = "Turns accounting CSV exports into CM.com payment links, mails them and follows the payments",
    propagate_version = true
)]
struct Cli {
    /// The config file [default: $INVOICE_SYNC_CONFIG, else /etc/invoice-sync/invoice-sync.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less log detail (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One full cycle, then exit: ingest the inbox (and FILEs), deactivate links that must
    /// go, create the missing ones. For cron and systemd timers.
    Run {
        /// Extra CSV files to ingest besides the inbox (never moved or changed).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Parse, validate and print the plan; no API write, mail, state change or file move.
        #[arg(long)]
        dry_run: bool,
    },
    /// Long-running service: a cycle at every tick of `daemon.schedule`, the callback
    /// listener, systemd notify. Stops on SIGTERM/SIGINT after in-flight work.
    Daemon,
    /// Ingest CSV exports only (no API calls, no mail). Named files are never moved or
    /// changed; with no FILE, the ready files of the inbox are ingested and archived.
    Import {
        /// CSV files to ingest.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// For files imported before: read again the rows their last import rejected
        /// (after a config fix), and nothing else.
        #[arg(long, requires = "files")]
        again: bool,
    },
    /// Show invoices: reference, customer, amount, due date, state, link, mail, last error.
    Status {
        /// Only this invoice reference.
        #[arg(value_name = "INVOICE")]
        invoice: Option<String>,
        /// Only invoices in this state.
        #[arg(long, value_name = "S", value_parser = state_parser())]
        state: Option<State>,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Every column, nothing cut (the default table fits 100 columns).
        #[arg(long, conflicts_with = "json")]
        wide: bool,
    },
    /// Deactivate the invoice's active link now (operator override; no new link is made
    /// for this revision).
    Deactivate {
        /// The invoice reference.
        #[arg(value_name = "INVOICE")]
        invoice: String,
    },
    /// CSV of invoices paid through a link: invoice_reference, amount, currency, paid_at,
    /// link_ref — for import into the accounting software.
    ExportPaid {
        /// Only payments on or after this date (UTC): YYYY-MM-DD or any of
        /// `csv.date_formats`.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only payments on or before this date (UTC), in the same formats.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Only payments no earlier `--new` export wrote; they are marked written when
        /// the file is complete (needs --out).
        #[arg(long)]
        new: bool,
        /// `csv` (default), or `camt053`: an ISO 20022 camt.053.001.02 bank statement of
        /// `reconciliation.account_iban`.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write to this file (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Queue the invoice's link mail again (sent by the next cycle).
    Resend {
        /// The invoice reference.
        #[arg(value_name = "INVOICE")]
        invoice: String,
    },
    /// Bank statements: read them, see what they paid, match by hand (README, *Bank
    /// transfers*).
    Bank {
        #[command(subcommand)]
        command: BankCommand,
    },
    /// Check the setup one step at a time: config, database, CM token, mail server; each
    /// with a plain verdict. Non-zero exit when any fails; no secret is printed.
    Check,
    /// A local simulator of the CM APIs, for demos, tests and benchmarks.
    Sandbox(crate::sandbox::SandboxArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `invoice-sync manpage | man -l -`.
    Manpage,
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    restrict_umask();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            };
            let _ = e.print();
            return code.into();
        }
    };
    crate::logging::init(cli.log_format, cli.verbose, cli.quiet);
    match run(cli) {
        Ok(outcome) => {
            if let Some(m) = &outcome.message {
                let level = if matches!(outcome.exit, Exit::Fatal) {
                    tracing::Level::ERROR
                } else {
                    tracing::Level::WARN
                };
                final_sentence(&level, m);
            }
            outcome.exit.into()
        }
        Err(e) => {
            final_sentence(&tracing::Level::ERROR, &one_sentence(&e));
            Exit::Fatal.into()
        }
    }
}

/// Files invoice-sync creates hold customer names and addresses (database, archive,
/// rejection reports, `.eml` outbox, exports): whatever umask cron or a shell gives us,
/// nothing is created readable or writable by others (files 0640 at most, folders 0750).
fn restrict_umask() {
    // SAFETY: umask only changes this process's file mode creation mask.
    unsafe {
        let old = libc::umask(0o027);
        libc::umask(old | 0o027);
    }
}

/// `--state`: one of the invoice states, by the name `status` shows.
fn state_parser() -> impl clap::builder::TypedValueParser<Value = State> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(State::ALL.map(State::as_str))
        .map(|s| State::named(&s).expect("only the listed names get through"))
}

/// The one sentence a non-zero exit prints on stderr; under journald with its priority.
fn final_sentence(level: &tracing::Level, text: &str) {
    let prefix = if crate::logging::under_journald() {
        crate::logging::syslog_prefix(level)
    } else {
        ""
    };
    eprintln!("{prefix}invoice-sync: {text}");
}

/// An error chain as one line: `context: cause: root cause`.
fn one_sentence(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let path = Config::locate(cli.config.as_deref());
    Ok(Config::load(&path)?)
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    use clap::CommandFactory;
    use std::io::Write;
    // Printed for packaging (`… | gzip`) or a look (`… | head`): a reader that stops
    // early is not an error.
    let printed = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(Outcome::ok()),
    };
    if let Command::Completions { shell } = cli.command {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "invoice-sync", &mut buf);
        let mut out = std::io::stdout().lock();
        return Ok(printed(out.write_all(&buf).and_then(|()| out.flush()))?);
    }
    if let Command::Manpage = cli.command {
        let mut buf = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
        let mut out = std::io::stdout().lock();
        return Ok(printed(out.write_all(&buf).and_then(|()| out.flush()))?);
    }
    if let Command::Sandbox(args) = cli.command {
        runtime()?.block_on(crate::sandbox::run_command(args))?;
        return Ok(Outcome::ok());
    }
    if let Command::Check = cli.command {
        return check(&Config::locate(cli.config.as_deref()));
    }
    let config = load_config(&cli)?;
    match cli.command {
        Command::Check | Command::Sandbox(_) | Command::Completions { .. } | Command::Manpage => {
            unreachable!("handled above")
        }
        Command::Run { files, dry_run } => run_cycle(&config, files, dry_run),
        Command::Deactivate { invoice } => deactivate(&config, &normalize_reference(&invoice)),
        Command::Daemon => {
            runtime()?.block_on(crate::daemon::serve(&config, crate::daemon::signals()))?;
            Ok(Outcome::ok())
        }
        Command::Resend { invoice } => resend(&config, &normalize_reference(&invoice)),
        Command::ExportPaid {
            since,
            until,
            new,
            format,
            out,
        } => export_paid(
            &config,
            &ExportArgs {
                since: since.as_deref(),
                until: until.as_deref(),
                new,
                format,
                out: out.as_deref(),
            },
        ),
        Command::Import { files, again } => import(&config, &files, again),
        Command::Bank { command } => bank(&config, command),
        Command::Status {
            invoice,
            state,
            json,
            wide,
        } => {
            let invoice = invoice.as_deref().map(normalize_reference);
            status(&config, invoice.as_deref(), state, json, wide)
        }
    }
}

/// A reference typed by an operator, matched as the export's are (invisible characters
/// removed, NFC).
fn normalize_reference(s: &str) -> String {
    crate::domain::text::normalize_reference(s)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn locked_outcome(config: &Config) -> Outcome {
    Outcome {
        exit: Exit::Locked,
        message: Some(format!(
            "another invoice-sync cycle holds the run lock for {}; nothing was done",
            config.storage.database.display()
        )),
    }
}

/// The usage error for the first named file that is not a file, if any.
fn missing_file(files: &[PathBuf]) -> Option<Outcome> {
    files.iter().find(|f| !f.is_file()).map(|bad| Outcome {
        exit: Exit::Usage,
        message: Some(format!("{} is not a readable file", bad.display())),
    })
}

fn open_existing(config: &Config) -> anyhow::Result<Store> {
    let db = &config.storage.database;
    if !db.exists() {
        anyhow::bail!(
            "there is no database at {} yet (run `invoice-sync import` or `invoice-sync run` first)",
            db.display()
        );
    }
    Store::open(db)
}
