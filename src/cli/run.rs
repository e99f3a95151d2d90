//! `run` and `import`: one cycle (or the ingest alone), and the plan of a dry run.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::*;

pub(super) fn run_cycle(
    config: &Config,
    files: Vec<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<Outcome> {
    if let Some(usage) = missing_file(&files) {
        return Ok(usage);
    }
    let database = &config.storage.database;
    // A dry run leaves the disk as it was: with no database yet it plans on an empty one
    // in memory, and takes no lock (creating no lock file); everything it does to an
    // existing database is rolled back.
    let fresh = dry_run && !database.exists();
    let _lock = if fresh {
        None
    } else {
        match RunLock::try_acquire(database)? {
            Some(lock) => Some(lock),
            None => return Ok(locked_outcome(config)),
        }
    };
    let store = if fresh {
        Store::open_in_memory()?
    } else {
        Store::open(database)?
    };
    let opts = cycle::Options {
        files,
        dry_run,
        progress: std::io::stderr().is_terminal(),
        database: store.identity().cloned(),
    };
    let report = runtime()?.block_on(async {
        if dry_run {
            return cycle::run(&store, config, None, &opts).await;
        }
        let services = Services::open(config).await?;
        let report = cycle::run(&store, config, Some(services.cycle()), &opts).await;
        services.close().await;
        report
    })?;
    if let Some(plan) = &report.plan {
        print_plan(plan, &report)?;
        let t = report.ingest.totals();
        tracing::info!(
            "dry run, nothing written, sent or moved: {} file(s) would be read, rows {} accepted / {} rejected / {} skipped; {} link(s) would be created, {} deactivated; {} queued mail(s) are due{}",
            report.ingest.files.len(),
            t.rows_accepted,
            t.rows_rejected,
            t.rows_skipped,
            plan.create.len(),
            plan.deactivate.len(),
            plan.mails_due,
            report.ingest.inbox_note()
        );
    } else {
        tracing::info!("cycle: {}", report.summary());
    }
    if let Some(why) = &report.ingest.inbox_error {
        return Ok(Outcome::fatal(why.clone()));
    }
    Ok(match report.attention() {
        Some(why) => Outcome::attention(why),
        None => Outcome::ok(),
    })
}

pub(super) fn print_plan(plan: &cycle::Plan, report: &cycle::Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "dry run: nothing is sent, written or moved. The cycle would:"
    )?;
    if let Some(bank) = &report.bank {
        for n in &bank.notes {
            writeln!(
                out,
                "  bank entry  {}  {}  → {}",
                printable(&n.at),
                printable(&n.what),
                printable(&n.outcome)
            )?;
        }
        for (name, reason) in &bank.files_refused {
            writeln!(
                out,
                "  set aside   bank statement {}  ({})",
                printable(name),
                printable(reason)
            )?;
        }
    }
    for d in &plan.deactivate {
        let why = match d.reason {
            DeactivateReason::Replaced => "replaced by a new revision".to_string(),
            DeactivateReason::Operator => "operator request".to_string(),
            DeactivateReason::NotOpen => format!("invoice is {}", d.invoice_state.as_str()),
            DeactivateReason::ProvisionalLapsed => "lapsed before its real expiry".to_string(),
            DeactivateReason::Expired => "past its expiry".to_string(),
            DeactivateReason::AmountMismatch => "CM recorded another amount".to_string(),
        };
        writeln!(
            out,
            "  deactivate  {}  link {}  ({why})",
            printable(d.reference.as_str()),
            d.link_ref
        )?;
    }
    for c in &plan.create {
        let verb = if c.replaces {
            "replace   "
        } else {
            "create    "
        };
        writeln!(
            out,
            "  {verb}  {}  {} {}  due {}  mail to {}",
            printable(c.reference.as_str()),
            c.data.currency(),
            c.data.due.to_decimal_string(),
            c.data.due_date,
            printable(c.data.customer_email.as_str())
        )?;
    }
    for r in &plan.reminders {
        let s = &r.subject;
        let skipped = if r.skipped.is_empty() {
            String::new()
        } else {
            let steps: Vec<String> = r.skipped.iter().map(|d| format!("{d:+}")).collect();
            format!("  (skips step(s) {})", steps.join(", "))
        };
        writeln!(
            out,
            "  remind      {}  step {:+} days  {}  {} {}  due {}  mail to {}{skipped}",
            printable(s.reference.as_str()),
            r.step,
            r.kind.as_str(),
            s.data.currency(),
            s.data.due.to_decimal_string(),
            s.data.due_date,
            printable(s.data.customer_email.as_str())
        )?;
    }
    if plan.deactivate.is_empty() && plan.create.is_empty() && plan.reminders.is_empty() {
        writeln!(out, "  nothing")?;
    }
    if !plan.reminders.is_empty() {
        writeln!(
            out,
            "  (each reminder's link is read from CM first: a paid one records the payment instead)"
        )?;
    }
    if plan.reminders_waiting > 0 {
        writeln!(
            out,
            "  wait        {} reminder(s) due wait for the send window",
            plan.reminders_waiting
        )?;
    }
    if plan.mails_due > 0 {
        writeln!(
            out,
            "  mail        {} queued mail(s) that are due would be sent (each link read from CM first)",
            plan.mails_due
        )?;
    }
    if plan.mails_dropped > 0 {
        writeln!(
            out,
            "  drop        {} queued mail(s) would be cancelled or skipped (invoice moved on, or a reminder overtaken)",
            plan.mails_dropped
        )?;
    }
    if plan.mails_held > 0 {
        writeln!(
            out,
            "  hold        {} queued mail(s) would wait (send window, min_gap_days)",
            plan.mails_held
        )?;
    }
    for f in &report.ingest.files {
        match &f.outcome {
            ingest::Outcome::SetAside { reason } => {
                writeln!(out, "  set aside   {}: {reason}", f.path.display())?
            }
            ingest::Outcome::Applied(c) if c.rows_rejected > 0 => {
                writeln!(
                    out,
                    "  reject      {} row(s) of {}:",
                    c.rows_rejected,
                    f.path.display()
                )?;
                for r in &f.planned_rejections {
                    writeln!(
                        out,
                        "                line {}, column {}: {}",
                        r.line,
                        printable(&r.column),
                        printable(&r.reason)
                    )?;
                }
                if f.planned_rejections.len() == ingest::files::PLANNED_REJECTIONS {
                    writeln!(
                        out,
                        "                … (the first {} problems)",
                        ingest::files::PLANNED_REJECTIONS
                    )?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn import(config: &Config, files: &[PathBuf], again: bool) -> anyhow::Result<Outcome> {
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
        again,
    };
    let report = if files.is_empty() {
        ingest::ingest_inbox(&store, config, opts)?
    } else {
        ingest::ingest_paths(&store, config, files, opts)?
    };
    tracing::info!("import: {}", report.summary());
    if let Some(why) = &report.inbox_error {
        return Ok(Outcome::fatal(why.clone()));
    }
    Ok(attention_for_ingest(&report, config).unwrap_or_else(Outcome::ok))
}

/// The exit-3 sentence for an ingest that needs an operator.
pub(super) fn attention_for_ingest(report: &ingest::Report, config: &Config) -> Option<Outcome> {
    let parts = report.attention();
    (!parts.is_empty()).then(|| {
        Outcome::attention(format!(
            "{}; see {}",
            parts.join(", "),
            config.inbox.rejected_dir.display()
        ))
    })
}
