//! `bank import`, `bank status`, `bank match`, `bank unmatch` (README, *Bank transfers*).

use std::io::{IsTerminal, Write};

use super::status::{JsonArray, fit, printable};
use super::*;
use crate::bank::import::{self, Report};
use crate::domain::InvoiceRef;
use crate::store::bank::{self as stored, Effect};

/// The `bank` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum BankCommand {
    /// Read bank statements (camt.052/053/054, MT940) from `bank.inbox` and the named
    /// FILEs (never moved), and match their credits to invoices. No API call, no mail:
    /// the next cycle acts on the matches.
    Import {
        /// Statement files to read besides the bank inbox.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// The bank entries read: booking date, amount, counterparty, remittance, and what
    /// each was matched to (or the suggested invoice).
    Status {
        /// Only the credits that need a look (unmatched or suggested).
        #[arg(long)]
        unmatched: bool,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Assign a booked credit to an invoice (recorded with the time).
    Match {
        /// The entry (`entry_id` in `bank status`).
        #[arg(value_name = "ENTRY")]
        entry: i64,
        /// The invoice reference.
        #[arg(value_name = "INVOICE")]
        invoice: String,
    },
    /// Take a match back: the invoice asks for that money again.
    Unmatch {
        /// The entry (`entry_id` in `bank status`).
        #[arg(value_name = "ENTRY")]
        entry: i64,
    },
}

pub(super) fn bank(config: &Config, command: BankCommand) -> anyhow::Result<Outcome> {
    match command {
        BankCommand::Import { files } => bank_import(config, &files),
        BankCommand::Status { unmatched, json } => bank_status(config, unmatched, json),
        BankCommand::Match { entry, invoice } => {
            let invoice = InvoiceRef::parse(&normalize_reference(&invoice))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
                return Ok(locked_outcome(config));
            };
            let store = open_existing(config)?;
            let effect = match import::match_by_hand(&store, entry, &invoice) {
                Ok(effect) => effect,
                Err(e) => return Ok(Outcome::fatal(one_sentence(&e))),
            };
            let said = match effect {
                Effect::Paid => format!("invoice {invoice} is paid by bank entry {entry}"),
                Effect::Partial { rest } => format!(
                    "bank entry {entry} paid part of invoice {invoice}; a new link asks for the remaining {} {}",
                    rest.currency.code(),
                    rest.to_decimal_string()
                ),
                Effect::Overpaid { surplus } => {
                    println!(
                        "bank entry {entry} matched to invoice {invoice}, which is now overpaid by {} {}",
                        surplus.currency.code(),
                        surplus.to_decimal_string()
                    );
                    return Ok(Outcome::attention(format!(
                        "invoice {invoice} was paid {} {} more than it asked: refund it",
                        surplus.currency.code(),
                        surplus.to_decimal_string()
                    )));
                }
            };
            println!("{said}");
            Ok(Outcome::ok())
        }
        BankCommand::Unmatch { entry } => {
            let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
                return Ok(locked_outcome(config));
            };
            let store = open_existing(config)?;
            match import::unmatch_by_hand(&store, entry) {
                Ok(invoice) => {
                    println!(
                        "bank entry {entry} is unmatched; invoice {invoice} asks for that money again"
                    );
                    Ok(Outcome::ok())
                }
                Err(e) => Ok(Outcome::fatal(one_sentence(&e))),
            }
        }
    }
}

fn bank_import(config: &Config, files: &[PathBuf]) -> anyhow::Result<Outcome> {
    if let Some(usage) = missing_file(files) {
        return Ok(usage);
    }
    let Some(_lock) = RunLock::try_acquire(&config.storage.database)? else {
        return Ok(locked_outcome(config));
    };
    let store = Store::open(&config.storage.database)?;
    // Named files alone need no inbox; with none named, the inbox must be there.
    let inbox = files.is_empty() || config.bank.inbox.is_dir();
    let report = import::import(&store, config, inbox, files, import::Options::default())?;
    println!("{}", report.summary());
    Ok(bank_attention(&report, config).unwrap_or_else(Outcome::ok))
}

/// The exit-3 sentence for a bank import that needs an operator.
pub(super) fn bank_attention(report: &Report, config: &Config) -> Option<Outcome> {
    let parts = report.attention();
    (!parts.is_empty()).then(|| {
        let mut s = parts.join("; ");
        if !report.files_refused.is_empty() {
            s.push_str(&format!("; see {}", config.bank.rejected_dir.display()));
        }
        Outcome::attention(s)
    })
}

fn bank_status(config: &Config, unmatched: bool, json: bool) -> anyhow::Result<Outcome> {
    let store = open_existing(config)?;
    if json {
        let mut array = JsonArray::new(std::io::BufWriter::new(std::io::stdout().lock()));
        stored::for_each_entry(&store, unmatched, |v| array.push(&v))?;
        array.finish()?;
        return Ok(Outcome::ok());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let wide = !std::io::stdout().is_terminal();
    writeln!(
        out,
        "{:>6}  {:<10}  {:>12}  {:<22}  {:<28}  {:<9}  INVOICE",
        "ENTRY", "BOOKED", "AMOUNT", "FROM", "REMITTANCE", "OUTCOME"
    )?;
    let mut n = 0usize;
    stored::for_each_entry(&store, unmatched, |v| {
        n += 1;
        let sign = if v.credit_debit == "DBIT" { "-" } else { "" };
        let amount = format!("{sign}{} {}", v.amount, v.currency);
        let invoice = match (&v.invoice_reference, &v.suggested_invoice) {
            (Some(i), _) => i.to_string(),
            (None, Some(s)) => format!("{s}?"),
            _ => String::new(),
        };
        let status = if v.status == "BOOK" { "" } else { v.status };
        let from = printable(v.counterparty_name.as_deref().unwrap_or(""));
        let remittance = printable(v.remittance.as_deref().unwrap_or(""));
        writeln!(
            out,
            "{:>6}  {:<10}  {:>12}  {:<22}  {:<28}  {:<9}  {}",
            v.entry_id,
            v.booking_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| status.to_string()),
            amount,
            if wide {
                from.clone().into()
            } else {
                fit(&from, 22)
            },
            if wide {
                remittance.clone().into()
            } else {
                fit(&remittance, 28)
            },
            v.outcome_name(),
            printable(&invoice)
        )?;
        if let Some(reason) = &v.reason
            && v.outcome_name() != "matched"
        {
            writeln!(out, "{:>6}  {}", "", printable(reason))?;
        }
        Ok(())
    })?;
    if n == 0 {
        writeln!(out, "no bank entries")?;
    }
    let flagged = stored::flagged(&store)?;
    if !flagged.is_empty() {
        writeln!(out, "\nNeeds a look:")?;
        for (invoice, surplus, reversed) in flagged {
            let mut what = Vec::new();
            if let Some(s) = surplus {
                what.push(format!(
                    "overpaid by {} {}: refund it",
                    s.currency.code(),
                    s.to_decimal_string()
                ));
            }
            if reversed {
                what.push("a reversal took a payment back".to_string());
            }
            writeln!(
                out,
                "  invoice {}: {}",
                printable(invoice.as_str()),
                what.join("; ")
            )?;
        }
    }
    out.flush()?;
    Ok(Outcome::ok())
}
