//! `export-paid`: the payments received, as CSV or a camt.053 statement, to stdout or a
//! file written atomically; `--new` marks what it wrote in the transaction that completes
//! the file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::*;
use crate::store::payments::Filter;

/// What `export-paid` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `invoice_reference,amount,currency,paid_at,link_ref`.
    Csv,
    /// An ISO 20022 camt.053.001.02 bank-to-customer statement.
    Camt053,
}

/// The options of `export-paid`.
pub(super) struct ExportArgs<'a> {
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub new: bool,
    pub format: ExportFormat,
    pub out: Option<&'a Path>,
}

/// A date option read as the exports' dates are: ISO, or any of `csv.date_formats`.
fn date_option(
    config: &Config,
    name: &str,
    text: Option<&str>,
) -> Result<Option<chrono::NaiveDate>, Outcome> {
    let Some(text) = text else { return Ok(None) };
    let mut formats = vec!["%Y-%m-%d".to_string()];
    formats.extend(config.csv.date_formats.iter().cloned());
    match crate::ingest::rows::parse_date(text.trim(), &formats) {
        Some(d) => Ok(Some(d)),
        None => Err(Outcome {
            exit: Exit::Usage,
            message: Some(format!(
                "{name} {text:?} is not a date in any of the formats {}",
                formats.join(", ")
            )),
        }),
    }
}

fn usage(message: String) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        exit: Exit::Usage,
        message: Some(message),
    })
}

pub(super) fn export_paid(config: &Config, args: &ExportArgs<'_>) -> anyhow::Result<Outcome> {
    let since = match date_option(config, "--since", args.since) {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    let until = match date_option(config, "--until", args.until) {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    if let (Some(a), Some(b)) = (since, until)
        && b < a
    {
        return usage(format!("--until {b} comes before --since {a}"));
    }
    if args.new && args.out.is_none() {
        return usage(
            "--new needs --out FILE: the payments are marked written when the file is complete, which stdout cannot promise".into(),
        );
    }
    let iban = config.reconciliation.iban();
    if args.format == ExportFormat::Camt053 && iban.is_none() {
        return Ok(Outcome::fatal(
            "a camt.053 statement needs the account it describes: set reconciliation.account_iban"
                .into(),
        ));
    }
    let filter = Filter {
        since,
        until,
        only_new: args.new,
        transfers: false,
    };
    let store = open_existing(config)?;
    // One unit of work: the statements' numbers and balances, and the `--new` marks, are
    // kept only once the file is complete (and never for stdout cut short).
    let (n, msg_id) = store.write(|tx| -> anyhow::Result<(usize, Option<String>)> {
        let write = |out: &mut dyn Write| -> anyhow::Result<(usize, Option<String>)> {
            match args.format {
                ExportFormat::Csv => {
                    let mut marks = Vec::new();
                    let n = crate::export::write_paid(tx, filter, &mut *out, |p| {
                        if args.new {
                            marks.push((p.kind, p.id));
                        }
                        Ok(())
                    })?;
                    let now = crate::clock::timestamp();
                    for (kind, payment) in marks {
                        crate::store::statements::mark(tx, kind, payment, None, now)?;
                    }
                    Ok((n, None))
                }
                ExportFormat::Camt053 => {
                    let account = crate::export::Account {
                        iban: iban.as_deref().unwrap_or_default(),
                        name: config.reconciliation.account_name.as_deref(),
                    };
                    let w = crate::export::write_camt053(
                        tx,
                        &account,
                        filter,
                        crate::clock::local_now(),
                        &mut *out,
                    )?;
                    Ok((w.entries, Some(w.msg_id)))
                }
            }
        };
        match args.out {
            None => write(&mut std::io::stdout().lock()),
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let mut tmp = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("cannot write in {}", dir.display()))?;
                let written = write(tmp.as_file_mut())?;
                tmp.as_file().sync_all()?;
                tmp.persist(path)
                    .map_err(|e| e.error)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                crate::failpoint("export-after-file");
                Ok(written)
            }
        }
    })?;
    match msg_id {
        Some(id) => tracing::info!(payments = n, statement = %id, "camt.053 statement written"),
        None => tracing::info!(payments = n, "paid invoices exported"),
    }
    Ok(Outcome::ok())
}
