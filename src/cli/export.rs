//! `export-paid`: the payments received, to stdout or a file written atomically.

use std::path::Path;

use anyhow::Context;

use super::*;

pub(super) fn export_paid(
    config: &Config,
    since: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<Outcome> {
    // `--since` is read as the exports' dates are: ISO, or any of `csv.date_formats`.
    let since = match since {
        None => None,
        Some(text) => {
            let mut formats = vec!["%Y-%m-%d".to_string()];
            formats.extend(config.csv.date_formats.iter().cloned());
            match crate::ingest::rows::parse_date(text.trim(), &formats) {
                Some(d) => Some(d),
                None => {
                    return Ok(Outcome {
                        exit: Exit::Usage,
                        message: Some(format!(
                            "--since {text:?} is not a date in any of the formats {}",
                            formats.join(", ")
                        )),
                    });
                }
            }
        }
    };
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
