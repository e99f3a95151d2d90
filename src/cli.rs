//! The command line (README and ARCHITECTURE.md): clap definitions, logging set-up, dispatch,
//! and the mapping of outcomes to exit codes. Every non-zero exit prints one plain
//! sentence on stderr saying why.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::cycle;
use crate::domain::money::exponent_of;
use crate::ingest;
use crate::lock::RunLock;
use crate::logging::LogFormat;
use crate::mail::Postman;
use crate::services::{CmConnection, Services};
use crate::store::Store;
use crate::store::invoices::{self, InvoiceView, State};
use crate::store::links::{self, DeactivateReason};

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
    pub exit: Exit,
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
}

#[derive(Debug, Parser)]
#[command(
    name = "invoice-sync",
    version,
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
        /// Only payments on or after this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<chrono::NaiveDate>,
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
    /// Check the setup one step at a time: config, database, CM token, mail server; each
    /// with a plain verdict. Non-zero exit when any fails; no secret is printed.
    Check,
    /// A local simulator of the CM APIs, for demos, tests and benchmarks.
    Sandbox(crate::sandbox::SandboxArgs),
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
        .map(|s| State::from_db(&s).expect("only the listed names get through"))
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
    if let Command::Sandbox(args) = cli.command {
        runtime()?.block_on(crate::sandbox::run_command(args))?;
        return Ok(Outcome::ok());
    }
    if let Command::Check = cli.command {
        return check(&Config::locate(cli.config.as_deref()));
    }
    let config = load_config(&cli)?;
    match cli.command {
        Command::Check => unreachable!("handled above"),
        Command::Sandbox(_) => unreachable!("handled above"),
        Command::Run { files, dry_run } => run_cycle(&config, files, dry_run),
        Command::Deactivate { invoice } => deactivate(&config, &normalize_reference(&invoice)),
        Command::Daemon => {
            runtime()?.block_on(crate::daemon::serve(&config, crate::daemon::signals()))?;
            Ok(Outcome::ok())
        }
        Command::Resend { invoice } => resend(&config, &normalize_reference(&invoice)),
        Command::ExportPaid { since, out } => export_paid(&config, since, out.as_deref()),
        Command::Import { files } => import(&config, &files),
        Command::Status {
            invoice,
            state,
            json,
        } => {
            let invoice = invoice.as_deref().map(normalize_reference);
            status(&config, invoice.as_deref(), state, json)
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

fn run_cycle(config: &Config, files: Vec<PathBuf>, dry_run: bool) -> anyhow::Result<Outcome> {
    if let Some(usage) = missing_file(&files) {
        return Ok(usage);
    }
    let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
        return Ok(locked_outcome(config));
    };
    let store = Store::open(&config.storage.database)?;
    let opts = cycle::Options {
        files,
        dry_run,
        progress: std::io::stderr().is_terminal(),
        database: store.identity().cloned(),
    };
    let report = runtime()?.block_on(async {
        if dry_run {
            return cycle::run(store.conn(), config, None, &opts).await;
        }
        let services = Services::open(config).await?;
        let report = cycle::run(store.conn(), config, Some(services.cycle()), &opts).await;
        services.close().await;
        report
    })?;
    if let Some(plan) = &report.plan {
        print_plan(plan, &report)?;
    }
    tracing::info!("cycle: {}", report.summary());
    Ok(match report.attention() {
        Some(why) => Outcome::attention(why),
        None => Outcome::ok(),
    })
}

fn print_plan(plan: &cycle::Plan, report: &cycle::Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "dry run: nothing is sent, written or moved. The cycle would:"
    )?;
    for d in &plan.deactivate {
        let why = match d.reason {
            DeactivateReason::Replaced => "replaced by a new revision".to_string(),
            DeactivateReason::Operator => "operator request".to_string(),
            DeactivateReason::NotOpen => format!("invoice is {}", d.invoice_state),
        };
        writeln!(
            out,
            "  deactivate  {}  link {}  ({why})",
            printable(&d.reference),
            d.link_ref
        )?;
    }
    for c in &plan.create {
        let exponent = exponent_of(&c.data.currency);
        let verb = if c.replaces {
            "replace   "
        } else {
            "create    "
        };
        writeln!(
            out,
            "  {verb}  {}  {} {}  due {}  mail to {}",
            printable(&c.reference),
            c.data.currency,
            crate::domain::money::format_minor(c.data.due_minor, exponent),
            c.data.due_date,
            printable(&c.data.customer_email)
        )?;
    }
    if plan.deactivate.is_empty() && plan.create.is_empty() {
        writeln!(out, "  nothing")?;
    }
    if plan.mails_due > 0 {
        writeln!(
            out,
            "  mail        {} queued mail(s) that are due would be sent",
            plan.mails_due
        )?;
    }
    for f in &report.ingest.files {
        match &f.outcome {
            ingest::Outcome::SetAside { reason } => {
                writeln!(out, "  set aside   {}: {reason}", f.path.display())?
            }
            ingest::Outcome::Applied(c) if c.rows_rejected > 0 => writeln!(
                out,
                "  reject      {} row(s) of {}",
                c.rows_rejected,
                f.path.display()
            )?,
            _ => {}
        }
    }
    Ok(())
}

fn deactivate(config: &Config, invoice: &str) -> anyhow::Result<Outcome> {
    let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
        return Ok(locked_outcome(config));
    };
    let store = open_existing(config)?;
    let conn = store.conn();
    let Some(target) = links::live_link_of(conn, invoice)? else {
        return Ok(Outcome {
            exit: Exit::Fatal,
            message: Some(format!("the invoice {invoice:?} has no active link")),
        });
    };
    links::mark_deactivating(conn, target.link_id, DeactivateReason::Operator)?;
    let result = runtime()?.block_on(async {
        let cm = CmConnection::open(config).await?;
        let r = cycle::deactivate_one(conn, &cm.client, &target).await;
        cm.close().await;
        r
    });
    let link_ref = &target.link_ref;
    match result? {
        cycle::Deactivated::Inactive => {
            tracing::info!(invoice, link = %link_ref, "link deactivated by the operator");
            Ok(Outcome::ok())
        }
        cycle::Deactivated::Unknown => {
            tracing::warn!(invoice, link = %link_ref, "CM does not know the link; recorded as inactive");
            Ok(Outcome::ok())
        }
        cycle::Deactivated::Paid { double } => Ok(Outcome::attention(format!(
            "link {link_ref} of {invoice:?} was already paid; the invoice is recorded as paid{}",
            if double {
                " (it was paid twice: refund one)"
            } else {
                ""
            }
        ))),
        cycle::Deactivated::Left(why) => Ok(Outcome::attention(format!(
            "could not deactivate link {link_ref} of {invoice:?} now ({why}); it stays payable until the next cycle deactivates it"
        ))),
    }
}

fn export_paid(
    config: &Config,
    since: Option<chrono::NaiveDate>,
    out: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let store = open_existing(config)?;
    let n = match out {
        None => crate::export::write_paid(store.conn(), since, std::io::stdout().lock())?,
        Some(path) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            let n = crate::export::write_paid(store.conn(), since, &mut tmp)?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot write {}", path.display()))?;
            n
        }
    };
    tracing::info!(payments = n, "paid invoices exported");
    Ok(Outcome::ok())
}

fn resend(config: &Config, invoice: &str) -> anyhow::Result<Outcome> {
    let store = open_existing(config)?;
    match crate::store::outbox::requeue(store.conn(), invoice, &crate::store::now_text())? {
        Some(_) => {
            tracing::info!(invoice, "mail queued again; the next cycle sends it");
            Ok(Outcome::ok())
        }
        None => Ok(Outcome {
            exit: Exit::Fatal,
            message: Some(format!(
                "the invoice {invoice:?} has no active link to mail (see `status {invoice}`)"
            )),
        }),
    }
}

/// `check`: each step prints `ok` or `FAILED` with the reason, in plain words.
fn check(path: &Path) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    let mut verdict = |what: &str, result: Result<String, String>| -> std::io::Result<()> {
        match result {
            Ok(detail) => writeln!(out, "ok      {what}: {detail}"),
            Err(why) => {
                failed += 1;
                writeln!(out, "FAILED  {what}: {why}")
            }
        }
    };
    let config = match Config::load(path) {
        Ok(c) => {
            verdict("config", Ok(path.display().to_string()))?;
            c
        }
        Err(e) => {
            verdict("config", Err(e.to_string()))?;
            return Ok(Outcome {
                exit: Exit::Fatal,
                message: Some("the config cannot be read; nothing else was checked".into()),
            });
        }
    };
    let db = &config.storage.database;
    let database = if db.exists() {
        Store::open(db)
            .and_then(|s| {
                let n: i64 = s
                    .conn()
                    .query_row("SELECT count(*) FROM invoices", [], |r| r.get(0))?;
                Ok(format!(
                    "{} (schema {}, {n} invoices)",
                    db.display(),
                    s.schema_version()?
                ))
            })
            .map_err(|e| format!("{e:#}"))
    } else {
        match db
            .parent()
            .map(|d| d.exists() || std::fs::create_dir_all(d).is_ok())
        {
            Some(true) | None => Ok(format!(
                "{} (not created yet; the first run creates it)",
                db.display()
            )),
            Some(false) => Err(format!("{}: its folder cannot be created", db.display())),
        }
    };
    verdict("database", database)?;
    let inbox = &config.inbox.dir;
    verdict(
        "inbox",
        if inbox.is_dir() {
            Ok(inbox.display().to_string())
        } else {
            Err(format!("{} does not exist", inbox.display()))
        },
    )?;
    let rt = runtime()?;
    let (cm, qr) = rt.block_on(async {
        let conn = match CmConnection::open(&config).await {
            Ok(c) => c,
            Err(e) => return (Err(format!("{e:#}")), None),
        };
        let cm = conn
            .client
            .check_credentials()
            .await
            .map(|()| format!("a token was issued by {}", config.cm.base_url))
            .map_err(|e| e.to_string());
        let qr = match &conn.qr {
            Some(q) => Some(
                q.check_credentials()
                    .await
                    .map(|()| format!("a token was issued by {}", config.ideal_qr.token_url))
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        };
        conn.close().await;
        (cm, qr)
    });
    verdict("CM token", cm)?;
    if let Some(qr) = qr {
        verdict("iDEAL QR token", qr)?;
    }
    let mail = rt.block_on(async {
        let postman = Postman::from_config(&config.email).map_err(|e| e.to_string())?;
        let mailer = postman.sender.mailer();
        let r = mailer.test_connection().await;
        mailer.shutdown().await;
        r.map(|()| format!("{} answers", mailer.endpoint()))
            .map_err(|e| e.to_string())
    });
    verdict("mail", mail)?;
    verdict(
        "schedule",
        match crate::schedule::Schedule::parse(&config.daemon.schedule) {
            Ok(schedule) => Ok(format!(
                "daemon.schedule `{}` next runs {}",
                config.daemon.schedule,
                schedule
                    .upcoming(chrono::Local::now(), 3)
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => Err(format!("daemon.schedule: {e}")),
        },
    )?;
    drop(out);
    Ok(if failed == 0 {
        Outcome::ok()
    } else {
        Outcome {
            exit: Exit::Fatal,
            message: Some(format!("{failed} check(s) failed")),
        }
    })
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

fn import(config: &Config, files: &[PathBuf]) -> anyhow::Result<Outcome> {
    if let Some(usage) = missing_file(files) {
        return Ok(usage);
    }
    let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
        return Ok(locked_outcome(config));
    };
    let store = Store::open(&config.storage.database)?;
    let opts = ingest::Options {
        dry_run: false,
        progress: std::io::stderr().is_terminal(),
    };
    let report = if files.is_empty() {
        ingest::ingest_inbox(store.conn(), config, opts)?
    } else {
        ingest::ingest_paths(store.conn(), config, files, opts)?
    };
    tracing::info!("import: {}", report.summary());
    Ok(attention_for_ingest(&report, config).unwrap_or_else(Outcome::ok))
}

/// The exit-3 sentence for an ingest that needs an operator.
fn attention_for_ingest(report: &ingest::Report, config: &Config) -> Option<Outcome> {
    let parts = report.attention();
    (!parts.is_empty()).then(|| {
        Outcome::attention(format!(
            "{}; see {}",
            parts.join(", "),
            config.inbox.rejected_dir.display()
        ))
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

fn status(
    config: &Config,
    invoice: Option<&str>,
    state: Option<State>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let store = open_existing(config)?;
    let list = invoices::list(store.conn(), invoice, state)?;
    if let Some(reference) = invoice
        && list.is_empty()
    {
        return Ok(Outcome {
            exit: Exit::Fatal,
            message: Some(format!(
                "there is no invoice with the reference {reference:?}"
            )),
        });
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &list).context("cannot write the status")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &list)?;
    }
    Ok(Outcome::ok())
}

/// Strips what a terminal would interpret (escape sequences, line breaks).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn write_table(out: &mut impl Write, list: &[InvoiceView]) -> anyhow::Result<()> {
    if list.is_empty() {
        writeln!(out, "no invoices")?;
        return Ok(());
    }
    let dash = |v: &Option<String>| v.as_deref().map(printable).unwrap_or_else(|| "-".into());
    let header = [
        "INVOICE",
        "CUSTOMER",
        "AMOUNT",
        "DUE",
        "STATE",
        "LINK",
        "LINK URI",
        "MAIL",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 9]> = list
        .iter()
        .map(|v| {
            let customer = if v.customer_name.is_empty() {
                v.customer_email.clone()
            } else {
                format!("{} <{}>", v.customer_name, v.customer_email)
            };
            [
                printable(&v.invoice_reference),
                printable(&customer),
                format!("{} {}", v.currency, v.amount),
                v.due_date.clone(),
                v.state.as_str().to_string(),
                dash(&v.link_ref),
                dash(&v.link_uri),
                v.mail_state.clone(),
                dash(&v.last_error),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    Ok(())
}
