//! Ingest: CSV drops in, invoice revisions recorded (README and ARCHITECTURE.md).
//!
//! A file is applied atomically: its accepted rows are written in one SQLite savepoint
//! together with the import record (keyed by the content's SHA-256); only after that
//! commits is the rejection report put in place and the inbox file moved to the archive.
//! A crash in between re-reads the file next time and, by its hash, changes nothing.
//! Rows stream through; nothing here holds more than one record in memory.
//!
//! A file that changes while it is read (an uploader that stalled past `settle_seconds`
//! and goes on writing) is not archived: the rows read are applied (the bytes hashed are
//! a prefix of the bytes read, checked by their CRC-32, so the import record is true),
//! the file stays in the inbox and the next cycle reads it whole, its first rows changing
//! nothing. When the bytes read do not start with the bytes hashed, or end inside a row,
//! nothing of the file is applied.
//!
//! What the link step must do next is not stored separately: it follows from each
//! invoice's state and current revision. This module never calls an API or sends mail.

pub mod decode;
pub mod files;
pub mod rows;

use crate::domain::InvoiceRef;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store::Store;
use anyhow::Context;

use crate::config::{Config, Settlement};
use crate::store::imports::{self, ImportCounts, ImportSource};
use crate::store::invoices::{self, RevisionReason, Source, State};
use rows::{Checked, ColumnMap, Validator};

/// How an ingest runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Apply inside the caller's transaction and leave every file and report alone; the
    /// caller rolls back.
    pub dry_run: bool,
    /// `import --again`: a file whose content was imported before has the rows that its
    /// last import rejected read again (and nothing else).
    pub again: bool,
    /// Show a progress bar for large files (interactive terminals only).
    pub progress: bool,
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Its rows were applied.
    Applied(ImportCounts),
    /// The same content was imported before; nothing changed.
    Duplicate {
        /// The earlier file with the same content.
        prior_file: String,
        /// When it was imported.
        prior_at: crate::domain::Timestamp,
    },
    /// It cannot be read as CSV or lacks a required column; moved whole to `rejected_dir`.
    /// Moved whole to `rejected_dir` with its reason.
    SetAside {
        /// Why.
        reason: String,
    },
    /// Reading it failed (I/O); it stays where it is for the next cycle.
    /// Reading failed; left where it is for the next cycle.
    Failed {
        /// What failed.
        error: String,
    },
    /// It changed while it was read in a way that makes the rows read untrustworthy (the
    /// bytes read are not the bytes hashed plus more, or they end inside a row): nothing
    /// was applied and it stays where it is for the next cycle.
    Changed {
        /// What changed.
        reason: String,
    },
}

/// One file's result.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// What happened to it.
    pub outcome: Outcome,
    /// `rejected_dir/<file>.rejected.csv`, when rows were rejected.
    pub rejections: Option<PathBuf>,
    /// Where the file went (archive or rejected), for inbox files.
    pub moved_to: Option<PathBuf>,
    /// Why an applied (or already imported) file could not be archived: it stays in the
    /// inbox and its next import changes nothing.
    pub archive_error: Option<String>,
    /// A dry run's rejected rows (line, column, reason), for the plan; nothing is written.
    pub planned_rejections: Vec<files::Rejection>,
    /// How the file changed between the start of its read and its archiving (size,
    /// modification time, inode): it was not archived, and the next cycle reads it
    /// again. Its rows read were applied unless the outcome is [`Outcome::Changed`].
    pub changed: Option<String>,
    /// Whether it came from the inbox (the next cycle reads it again) or the command line.
    pub source: ImportSource,
}

/// The result of ingesting a set of files.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One report per file, in the order they were read.
    pub files: Vec<FileReport>,
    /// Inbox files still being written, left for a later cycle.
    pub settling: Vec<String>,
    /// Inbox entries that match the pattern but are not plain files, with why.
    pub skipped: Vec<String>,
    /// The inbox could not be listed (missing, unreadable): nothing was read from it.
    pub inbox_error: Option<String>,
}

impl Report {
    /// Rows and invoices summed over every applied file.
    pub fn totals(&self) -> ImportCounts {
        let mut t = ImportCounts::default();
        for f in &self.files {
            if let Outcome::Applied(c) = &f.outcome {
                t.rows_read += c.rows_read;
                t.rows_accepted += c.rows_accepted;
                t.rows_rejected += c.rows_rejected;
                t.rows_skipped += c.rows_skipped;
                t.invoices_new += c.invoices_new;
                t.invoices_changed += c.invoices_changed;
                t.invoices_settled += c.invoices_settled;
                t.snapshot_guard |= c.snapshot_guard;
            }
        }
        t
    }

    /// Files that were set aside or could not be read.
    pub fn files_refused(&self) -> usize {
        self.files
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::SetAside { .. } | Outcome::Failed { .. }))
            .count()
    }

    /// Files whose content had been imported before.
    pub fn files_duplicate(&self) -> usize {
        self.files
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Duplicate { .. }))
            .count()
    }

    /// Files that changed while they were read, by name: left where they are.
    pub fn files_changed(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| f.changed.is_some())
            .map(|f| match f.source {
                ImportSource::Inbox => f
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| f.path.display().to_string()),
                ImportSource::Argument => f.path.display().to_string(),
            })
            .collect()
    }

    /// Why an operator must look, one phrase each (empty when nothing needs it): the
    /// exit-3 sentence of `import` and the ingest part of a cycle's.
    pub fn attention(&self) -> Vec<String> {
        let t = self.totals();
        let mut parts: Vec<String> = self.inbox_error.iter().cloned().collect();
        if t.rows_rejected > 0 {
            parts.push(format!("{} row(s) were rejected", t.rows_rejected));
        }
        if self.files_refused() > 0 {
            parts.push(format!(
                "{} file(s) could not be imported",
                self.files_refused()
            ));
        }
        for f in &self.files {
            if let Outcome::Applied(c) = &f.outcome {
                if let Some(why) = &c.snapshot_held {
                    parts.push(format!("snapshot settlement held back ({why})"));
                }
                if !c.paid_changed.is_empty() {
                    parts.push(format!(
                        "invoice(s) paid through their link are listed differently by the export and stay paid: {} (see `status`)",
                        InvoiceRef::list(&c.paid_changed)
                    ));
                }
            }
            if let Some(e) = &f.archive_error {
                parts.push(e.clone());
            }
        }
        parts
    }

    /// One line for the log and the terminal.
    pub fn summary(&self) -> String {
        let t = self.totals();
        let mut s = format!(
            "{} file(s): {} row(s) accepted, {} rejected, {} skipped; invoices {} new, {} changed, {} settled elsewhere",
            self.files.len(),
            t.rows_accepted,
            t.rows_rejected,
            t.rows_skipped,
            t.invoices_new,
            t.invoices_changed,
            t.invoices_settled
        );
        if self.files_duplicate() > 0 {
            s.push_str(&format!(
                "; {} file(s) already imported",
                self.files_duplicate()
            ));
        }
        if self.files_refused() > 0 {
            s.push_str(&format!("; {} file(s) set aside", self.files_refused()));
        }
        if t.snapshot_guard {
            s.push_str("; snapshot settlement held back (more than 50 % would vanish)");
        }
        s.push_str(&self.inbox_note());
        s
    }

    /// What the inbox held besides the files read, for the summary line: files still
    /// being written, files that changed while they were read, and entries that are not
    /// files, each by name (empty when none).
    pub fn inbox_note(&self) -> String {
        let mut s = String::new();
        let changed = self.files_changed();
        if !changed.is_empty() {
            let inbox = self
                .files
                .iter()
                .filter(|f| f.changed.is_some())
                .all(|f| f.source == ImportSource::Inbox);
            s.push_str(&format!(
                "; {} file(s) changed while read, {}: {}",
                changed.len(),
                if inbox {
                    "read again next cycle"
                } else {
                    "not archived; import again once complete"
                },
                changed.join(", ")
            ));
        }
        if !self.settling.is_empty() {
            s.push_str(&format!(
                "; {} file(s) waiting to settle, read by a later cycle ({})",
                self.settling.len(),
                self.settling.join(", ")
            ));
        }
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                "; {} skipped ({})",
                self.skipped.len(),
                self.skipped.join(", ")
            ));
        }
        s
    }
}

/// Ingests the ready files of the inbox, moving each to the archive (or to
/// `rejected_dir`) once applied.
pub fn ingest_inbox(db: &Store, cfg: &Config, opts: Options) -> anyhow::Result<Report> {
    let dir = &cfg.inbox.dir;
    let inbox = match files::ready_files(
        dir,
        &cfg.inbox.pattern,
        Duration::from_secs(cfg.inbox.settle_seconds),
    ) {
        Ok(inbox) => inbox,
        Err(e) => {
            // Not the end of the cycle: links, payments and mail go on without new rows.
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "the inbox folder {} does not exist (inbox.dir): create it, or point inbox.dir at the folder the exports are dropped in",
                    dir.display()
                )
            } else {
                format!(
                    "the inbox folder {} cannot be read (inbox.dir): {e}",
                    dir.display()
                )
            };
            return Ok(Report {
                inbox_error: Some(why),
                ..Report::default()
            });
        }
    };
    if !inbox.settling.is_empty() {
        tracing::info!(
            files = %inbox.settling.join(", "),
            "waiting for these to settle (changed less than inbox.settle_seconds ago); a later cycle reads them"
        );
    }
    if !inbox.skipped.is_empty() {
        tracing::warn!(files = %inbox.skipped.join(", "), "skipped: not plain files");
    }
    let mut report = Report {
        settling: inbox.settling,
        skipped: inbox.skipped,
        ..Report::default()
    };
    for path in inbox.ready {
        report
            .files
            .push(ingest_file(db, cfg, &path, ImportSource::Inbox, opts)?);
    }
    Ok(report)
}

/// Ingests files named on the command line. They are never moved or changed.
pub fn ingest_paths(
    db: &Store,
    cfg: &Config,
    paths: &[PathBuf],
    opts: Options,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for path in paths {
        report
            .files
            .push(ingest_file(db, cfg, path, ImportSource::Argument, opts)?);
    }
    Ok(report)
}

/// Why a file's rows could not be applied.
enum FileError {
    /// The file is not usable CSV; set it aside.
    Unreadable(String),
    /// Reading failed; leave it for the next cycle.
    Io(String),
    /// The file changed while it was read and the rows read cannot be trusted; leave it
    /// for the next cycle.
    Changed(String),
    /// The database failed; stop the cycle.
    Db(anyhow::Error),
}

impl From<crate::store::Error> for FileError {
    fn from(e: crate::store::Error) -> Self {
        FileError::Db(e.into())
    }
}

/// Ingests one file. Only database errors are returned as errors; everything about the
/// file itself becomes its [`Outcome`].
pub fn ingest_file(
    db: &Store,
    cfg: &Config,
    path: &Path,
    source: ImportSource,
    opts: Options,
) -> anyhow::Result<FileReport> {
    let name = files::display_name(path);
    let movable = source == ImportSource::Inbox && !opts.dry_run;
    let mut report = FileReport {
        path: path.to_path_buf(),
        outcome: Outcome::Failed {
            error: String::new(),
        },
        rejections: None,
        moved_to: None,
        archive_error: None,
        planned_rejections: Vec::new(),
        changed: None,
        source,
    };

    // What the file was before the first byte was read: it is archived only if it is
    // still that file, that size, that age.
    let before = Stamp::of(path);
    let info = match decode::inspect(path, cfg.csv.encoding) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot read the file, left for the next cycle: {e}");
            report.outcome = Outcome::Failed {
                error: format!("cannot read {}: {e}", path.display()),
            };
            return Ok(report);
        }
    };

    let prior = imports::find_by_hash(db, &info.sha256)?;
    let mut again = None;
    if opts.again
        && let Some(prior) = &prior
    {
        let lines = imports::rejected_lines(db, prior.latest)?;
        if lines.is_empty() {
            tracing::info!(file = %path.display(), prior = %prior.file_name,
                "imported before and none of its rows was rejected the last time; nothing to read again");
        } else {
            tracing::info!(file = %path.display(), prior = %prior.file_name, rows = lines.len(),
                "importing again: only the rows rejected the last time are read");
            again = Some((prior.id, lines));
        }
    }
    if let Some(prior) = prior
        && again.is_none()
    {
        if !opts.again {
            tracing::info!(file = %path.display(), prior = %prior.file_name,
                "same content as an earlier import; nothing changes (`import --again FILE` reads the rows it rejected again, after a config fix)");
        }
        report.changed = Stamp::change(path, before.as_ref());
        if let Some(why) = &report.changed {
            warn_changed(path, source, why);
        } else if movable {
            archive(path, cfg, &mut report);
        }
        report.outcome = Outcome::Duplicate {
            prior_file: prior.file_name,
            prior_at: prior.imported_at,
        };
        return Ok(report);
    }

    // Nested: a dry run imports inside its own rehearsal (rolled back).
    let applied = db.nested(|tx| {
        apply(
            tx,
            cfg,
            path,
            &name,
            &info,
            before.as_ref(),
            source,
            opts,
            again,
        )
    });
    match applied {
        Ok((counts, rejections, changed)) => {
            crate::failpoint("ingest-after-commit");
            pause_after_read();
            if opts.dry_run {
                report.planned_rejections = rejections.into_planned();
            } else {
                report.rejections = rejections.keep().with_context(|| {
                    format!(
                        "cannot write the rejection report in {}",
                        cfg.inbox.rejected_dir.display()
                    )
                })?;
            }
            // Checked again at the last moment: an uploader may go on writing after the
            // read is over, and a file moved away then would lose what it writes.
            report.changed = changed.or_else(|| Stamp::change(path, before.as_ref()));
            if let Some(why) = &report.changed {
                warn_changed(path, source, why);
            } else if movable {
                archive(path, cfg, &mut report);
            }
            log_applied(path, &counts, report.rejections.as_deref(), opts.dry_run);
            report.outcome = Outcome::Applied(counts);
        }
        Err(e) => match e {
            FileError::Db(e) => return Err(e.context(format!("while importing {name}"))),
            FileError::Io(error) => {
                tracing::warn!(file = %path.display(), "reading failed, left for the next cycle: {error}");
                report.outcome = Outcome::Failed { error };
            }
            FileError::Changed(reason) => {
                tracing::warn!(file = %path.display(),
                        "{reason}: none of its rows was applied; it is left where it is and read again");
                report.changed = Some(reason.clone());
                report.outcome = Outcome::Changed { reason };
            }
            FileError::Unreadable(reason) => {
                if opts.dry_run {
                    tracing::warn!(file = %path.display(), "would be set aside (dry run): {reason}");
                } else {
                    tracing::warn!(file = %path.display(), "file set aside: {reason}");
                }
                if !opts.dry_run {
                    let reason_file =
                        files::set_aside(path, &cfg.inbox.rejected_dir, &reason, movable)
                            .with_context(|| format!("cannot set {} aside", path.display()))?;
                    if movable {
                        report.moved_to = reason_file
                            .to_str()
                            .and_then(|s| s.strip_suffix(".reason.txt"))
                            .map(PathBuf::from);
                    }
                    report.rejections = Some(reason_file);
                }
                report.outcome = Outcome::SetAside { reason };
            }
        },
    }
    Ok(report)
}

/// What says a file is still the one that was read, without reading it: its device and
/// inode (the same file, not one put in its place), size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    /// The file's stamp now; `None` when it cannot be read (then reading it fails too).
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        })
    }

    /// How the file at `path` differs from `before`, in words; `None` when it does not.
    fn change(path: &Path, before: Option<&Stamp>) -> Option<String> {
        let before = before?;
        let Some(now) = Stamp::of(path) else {
            return Some("it could no longer be found where it was read".into());
        };
        if (now.dev, now.ino) != (before.dev, before.ino) {
            Some("another file took its place while it was read".into())
        } else if now.len != before.len {
            Some(format!(
                "it changed while it was read ({} bytes, then {})",
                before.len, now.len
            ))
        } else if now.modified != before.modified {
            Some("it changed while it was read (its modification time moved)".into())
        } else {
            None
        }
    }
}

/// What the row pass read of a file: how many bytes, the CRC-32 of the first `limit` of
/// them (as many as the first pass hashed; compared with the first pass's CRC-32, which
/// covers the same bytes as its SHA-256), and the last byte.
struct ReadTally {
    limit: u64,
    total: u64,
    hasher: crc32fast::Hasher,
    last: Option<u8>,
}

impl ReadTally {
    /// Why the bytes read cannot be trusted as the file that was hashed (`None` when
    /// they can): they do not start with the hashed bytes, or the file grew and what was
    /// read ends inside a row. Also says, as `Ok`, when the file grew but the rows read
    /// are sound.
    fn verdict(self, info: &decode::Inspected) -> Result<Option<String>, String> {
        if self.total < info.size || self.hasher.finalize() != info.crc32 {
            return Err(format!(
                "it changed while it was read (its first {} bytes are not what they were a moment before)",
                info.size
            ));
        }
        if self.total == info.size {
            return Ok(None);
        }
        if !matches!(self.last, Some(b'\n' | b'\r')) {
            return Err(format!(
                "it grew while it was read ({} bytes, then {}) and what was read ends inside a row",
                info.size, self.total
            ));
        }
        Ok(Some(format!(
            "it changed while it was read ({} bytes, then {})",
            info.size, self.total
        )))
    }
}

/// A reader that keeps a [`ReadTally`] of what passes through it.
struct Tallying<R> {
    inner: R,
    tally: std::rc::Rc<std::cell::RefCell<ReadTally>>,
}

impl<R: Read> Read for Tallying<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut t = self.tally.borrow_mut();
            let room = usize::try_from(t.limit.saturating_sub(t.total)).unwrap_or(usize::MAX);
            let hashed = &buf[..n.min(room)];
            t.hasher.update(hashed);
            t.total += n as u64;
            t.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

fn warn_changed(path: &Path, source: ImportSource, why: &str) {
    match source {
        ImportSource::Inbox => tracing::warn!(file = %path.display(),
            "{why}: the rows read were applied, but the file is not archived; the next cycle reads it again (the rows already applied change nothing)"),
        ImportSource::Argument => tracing::warn!(file = %path.display(),
            "{why}: the rows read were applied; import it again once it is complete (the rows already applied change nothing)"),
    }
}

/// A test hook: in debug builds, when `INVOICE_SYNC_INGEST_PAUSE` names a folder, holds
/// ingest after each file's rows are applied (before it is archived) until a file
/// `resume` appears there, having put a file `paused` there; so a test can write into
/// an inbox file at that moment for certain. Release builds compile it to nothing.
fn pause_after_read() {
    #[cfg(debug_assertions)]
    if let Some(dir) = std::env::var_os("INVOICE_SYNC_INGEST_PAUSE") {
        let dir = PathBuf::from(dir);
        let resume = dir.join("resume");
        if std::fs::write(dir.join("paused"), b"").is_ok() {
            let t0 = std::time::Instant::now();
            while !resume.exists() && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&resume);
        let _ = std::fs::remove_file(dir.join("paused"));
    }
}

/// Moves an applied file to the archive. A move that fails (permissions, a full disk)
/// leaves the file in the inbox and no partial copy behind; the cycle goes on and exits
/// 3 saying why, and the next cycle finds the content imported and tries again.
fn archive(path: &Path, cfg: &Config, report: &mut FileReport) {
    match files::move_into(path, &cfg.inbox.archive_dir, true) {
        Ok(to) => report.moved_to = Some(to),
        Err(e) => {
            let why = format!(
                "{} was imported but could not be moved to the archive {} ({e}); it stays in the inbox and the next cycle tries again",
                path.display(),
                cfg.inbox.archive_dir.display()
            );
            tracing::warn!("{why}");
            report.archive_error = Some(why);
        }
    }
}

fn log_applied(path: &Path, c: &ImportCounts, rejections: Option<&Path>, dry_run: bool) {
    tracing::info!(
        file = %path.display(),
        rows = c.rows_read,
        accepted = c.rows_accepted,
        rejected = c.rows_rejected,
        skipped = c.rows_skipped,
        new = c.invoices_new,
        changed = c.invoices_changed,
        settled = c.invoices_settled,
        "{}",
        if dry_run {
            "would import (dry run: nothing is written)"
        } else {
            "imported"
        }
    );
    if let Some(r) = rejections {
        tracing::warn!(file = %path.display(), report = %r.display(),
            "{} row(s) rejected; the report lists line, column and reason", c.rows_rejected);
    }
}

/// Applies one file's rows inside the caller's savepoint; returns the counts and the
/// rejection report (kept by the caller only once the savepoint is released). `again`:
/// the first import of this content and the lines its last attempt rejected.
#[allow(clippy::too_many_arguments)]
fn apply(
    db: &Store,
    cfg: &Config,
    path: &Path,
    name: &str,
    info: &decode::Inspected,
    before: Option<&Stamp>,
    source: ImportSource,
    opts: Options,
    again: Option<(i64, std::collections::HashSet<i64>)>,
) -> Result<(ImportCounts, files::RejectionReport, Option<String>), FileError> {
    let progress = (opts.progress && info.size >= 8 * 1024 * 1024).then(|| {
        let bar = indicatif::ProgressBar::new(info.size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(name.to_string());
        bar
    });
    let tally = std::rc::Rc::new(std::cell::RefCell::new(ReadTally {
        limit: info.size,
        total: 0,
        hasher: crc32fast::Hasher::new(),
        last: None,
    }));
    let wrap = |f: File| -> Box<dyn Read> {
        let f = Tallying {
            inner: f,
            tally: tally.clone(),
        };
        match &progress {
            Some(bar) => Box::new(bar.wrap_read(f)),
            None => Box::new(f),
        }
    };
    let mut opened = match decode::open(path, info, cfg.csv.delimiter, wrap) {
        Ok(o) => o,
        Err(decode::OpenError::Io(e)) => return Err(FileError::Io(e.to_string())),
        Err(e) => return Err(FileError::Unreadable(e.to_string())),
    };
    let mut rejections = if opts.dry_run {
        files::RejectionReport::planned(opened.delimiter)
    } else {
        files::RejectionReport::new(&cfg.inbox.rejected_dir, name, opened.delimiter)
    };
    let header = match opened.reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(csv_error(e)),
    };
    let map = ColumnMap::from_header(&header, &cfg.csv.columns).map_err(FileError::Unreadable)?;
    let validator = Validator::new(&map, &cfg.csv, cfg.cm.link_expiry_days_after_due);

    let now = crate::clock::timestamp();
    let import_id = imports::begin(
        db,
        name,
        &info.sha256,
        source,
        now,
        again.as_ref().map(|a| a.0),
    )?;
    let open_before = invoices::count_open(db)?;
    let mut writer = invoices::Writer::new(db)?;
    let mut counts = ImportCounts::default();
    let mut record = csv::ByteRecord::new();
    let header_len = header.len();
    loop {
        match opened.reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(e)),
        }
        // The physical line (as an editor shows it) where the record starts.
        let line = opened.line_of(&record);
        if line % 8192 == 0 {
            crate::progress::beat();
        }
        let src = Source {
            import_id,
            line: i64::try_from(line).unwrap_or(i64::MAX),
            now,
        };
        let cut = opened.cut_length(&record);
        // `import --again`: only the rows the last attempt rejected are read.
        if let Some((_, lines)) = &again
            && !lines.contains(&src.line)
        {
            continue;
        }
        if let Some(length) = cut {
            counts.rows_read += 1;
            counts.rows_rejected += 1;
            let reason = format!(
                "the row is {length} bytes long, more than an export row can be: only its first 1 MiB was read (and is shown here), and it was not imported"
            );
            tracing::warn!(file = %path.display(), line, "{reason}");
            rejections
                .add(line, &[("(whole row)".to_string(), reason)], &record)
                .map_err(|e| FileError::Io(format!("cannot write the rejection report: {e}")))?;
            imports::note_rejected(db, import_id, src.line)?;
            continue;
        }
        if let Some((column, reason)) = open_quote(&record, header_len, opened.delimiter, line) {
            counts.rows_read += 1;
            counts.rows_rejected += 1;
            let column = map.header(column).to_string();
            tracing::warn!(file = %path.display(), line, "{reason}");
            rejections
                .add(line, &[(column, reason)], &record)
                .map_err(|e| FileError::Io(format!("cannot write the rejection report: {e}")))?;
            imports::note_rejected(db, import_id, src.line)?;
            continue;
        }
        match validator.check(&record) {
            Checked::Blank => continue,
            Checked::Skipped(_) => {
                counts.rows_read += 1;
                counts.rows_skipped += 1;
            }
            Checked::Rejected(problems) => {
                counts.rows_read += 1;
                counts.rows_rejected += 1;
                let problems: Vec<_> = problems.into_iter().map(|p| (p.column, p.reason)).collect();
                rejections.add(line, &problems, &record).map_err(|e| {
                    FileError::Io(format!("cannot write the rejection report: {e}"))
                })?;
                imports::note_rejected(db, import_id, src.line)?;
            }
            Checked::Row(row) => {
                counts.rows_read += 1;
                match apply_row(&mut writer, &row, src, &mut counts)? {
                    None => counts.rows_accepted += 1,
                    Some(first_line) => {
                        counts.rows_rejected += 1;
                        let reason = format!(
                            "the reference {:?} repeats; its first occurrence is on line {first_line}",
                            row.reference
                        );
                        rejections
                            .add(
                                line,
                                &[(map.reference_header().to_string(), reason)],
                                &record,
                            )
                            .map_err(|e| {
                                FileError::Io(format!("cannot write the rejection report: {e}"))
                            })?;
                        imports::note_rejected(db, import_id, src.line)?;
                    }
                }
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    drop(writer);
    drop(opened);
    // The rows read are the file hashed (or it plus rows added since, read whole)?
    let read = std::rc::Rc::try_unwrap(tally)
        .map_err(|_| FileError::Io("the read of the file is still in use".into()))?
        .into_inner();
    let changed = read
        .verdict(info)
        .map_err(FileError::Changed)?
        .or_else(|| Stamp::change(path, before));
    if let Some(why) = &changed
        && cfg.csv.settlement == Settlement::Snapshot
    {
        // A file still being written lists only some invoices: what it lacks is not
        // missing. The next cycle reads it whole and settles then.
        tracing::info!(file = %path.display(), "{why}: no snapshot settlement from it this time");
    }
    // Settling what a snapshot no longer lists is for a whole file, not for the few rows
    // an `import --again` reads.
    if cfg.csv.settlement == Settlement::Snapshot && again.is_none() && changed.is_none() {
        let missing = invoices::count_open_unseen(db, import_id)?;
        if missing > 0 && counts.rows_rejected > 0 {
            // A rejected row is present in the export, not missing from it: a damaged
            // file must not settle (and switch off the links of) invoices still open.
            let why = format!(
                "{name}: {} row(s) were rejected, so this snapshot is incomplete and none of the {missing} open invoice(s) missing from it was settled",
                counts.rows_rejected
            );
            tracing::warn!(file = %path.display(), missing, "snapshot settlement held back: {why}");
            counts.snapshot_guard = true;
            counts.snapshot_held = Some(why);
        } else if missing > 0 && missing * 2 > open_before {
            counts.snapshot_guard = true;
            counts.snapshot_held = Some(format!(
                "{name}: {missing} of {open_before} open invoices are missing (more than half), so nothing was settled"
            ));
            tracing::warn!(
                file = %path.display(),
                missing,
                open = open_before,
                "snapshot: more than 50 % of the open invoices are missing from this export; \
                 nothing is settled (a truncated export must not deactivate everything)"
            );
        } else if missing > 0 {
            let n = invoices::settle_open_unseen(db, import_id, now)?;
            counts.invoices_settled += n as u64;
        }
    }
    imports::finish(db, import_id, &counts)?;
    Ok((counts, rejections, changed))
}

fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Whether a record that spans several physical lines looks like rows swallowed by a
/// quote left open: a line inside one of its fields carries as many delimiters as a
/// whole row, or the record has another number of fields than the header. Returns the
/// field and the reason, naming every physical line the record covers.
fn open_quote(
    record: &csv::ByteRecord,
    header_len: usize,
    delimiter: u8,
    line: u64,
) -> Option<(usize, String)> {
    // Most records are one line: found without counting.
    memchr::memchr(b'\n', record.as_slice())?;
    let spanned = newlines(record.as_slice());
    let row_like = header_len.saturating_sub(1).max(1);
    let swallowing = record.iter().position(|field| {
        field
            .split(|b| *b == b'\n')
            .skip(1)
            .any(|l| l.iter().filter(|b| **b == delimiter).count() >= row_like)
    });
    let field = match swallowing {
        Some(i) => i,
        None if record.len() != header_len => record.iter().position(|f| f.contains(&b'\n'))?,
        None => return None,
    };
    let last = line + spanned;
    Some((
        field,
        format!(
            "a quote opened in this field is not closed where the row ends: lines {line} to {last} were read as one row and none of them was imported; fix the quote and import the file again"
        ),
    ))
}

fn csv_error(e: csv::Error) -> FileError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => FileError::Io(e.to_string()),
        other => FileError::Unreadable(format!("not readable as CSV: {other:?}")),
    }
}

/// What changed on a paid invoice, in words: it stays paid, and the merchant must check
/// the balance.
fn paid_difference(paid: &invoices::RevisionData, now: &invoices::RevisionData) -> String {
    let money =
        |d: &invoices::RevisionData| format!("{} {}", d.due.to_decimal_string(), d.currency());
    let mut changes = Vec::new();
    if paid.due != now.due {
        changes.push(format!("amount {} → {}", money(paid), money(now)));
    }
    if paid.due_date != now.due_date {
        changes.push(format!("due date {} → {}", paid.due_date, now.due_date));
    }
    if paid.customer_email != now.customer_email {
        changes.push(format!(
            "e-mail {} → {}",
            paid.customer_email, now.customer_email
        ));
    }
    format!(
        "paid through its link, but a later export lists it differently ({}); it stays paid: check the balance in the books",
        changes.join(", ")
    )
}

/// Applies one valid row. Returns `Some(first_line)` when the reference already appeared
/// earlier in the same file (the row is then rejected and nothing changes).
fn apply_row(
    w: &mut invoices::Writer<'_>,
    row: &rows::Row,
    src: Source,
    counts: &mut ImportCounts,
) -> Result<Option<i64>, FileError> {
    let state = if row.settled {
        State::SettledElsewhere
    } else {
        State::Open
    };
    // A new reference costs one insert and no lookup.
    if w.insert_new(&row.reference, state, &row.data, src)?
        .is_some()
    {
        if row.settled {
            counts.invoices_settled += 1;
        } else {
            counts.invoices_new += 1;
        }
        return Ok(None);
    }
    let Some(cur) = w.lookup(&row.reference)? else {
        return Err(FileError::Db(anyhow::anyhow!(
            "invoice {:?} is neither new nor known",
            row.reference
        )));
    };
    if cur.seen_import_id == Some(src.import_id) {
        return Ok(Some(cur.seen_line.unwrap_or(0)));
    }
    if row.settled {
        if cur.state == State::Open {
            w.settle(cur.id, src)?;
            counts.invoices_settled += 1;
        } else {
            w.mark_seen(cur.id, src)?;
        }
        return Ok(None);
    }
    // Transfers matched since the last export made the current revision ask less: the
    // export's row is compared with what the export asked, so the same row read again
    // changes nothing (README, *Bank transfers*).
    let mut as_exported = cur.data.clone();
    as_exported.due.minor = cur.export_due;
    let transferred = cur.export_due - cur.data.due.minor;
    let differs = as_exported.payment_differs(&row.data);
    match cur.state {
        // Paid through a link: the export may lag behind; never ask again.
        State::Paid => {
            if differs {
                let note = paid_difference(&as_exported, &row.data);
                tracing::warn!(invoice = %row.reference, "{note}");
                w.note_paid_changed(cur.id, &note, src)?;
                counts.paid_changed.push(row.reference.clone());
            } else {
                w.mark_seen(cur.id, src)?;
            }
        }
        // The accounting reopened it: a new revision gets a new link.
        State::SettledElsewhere => {
            let reason = if differs {
                RevisionReason::Changed
            } else {
                RevisionReason::Reopened
            };
            w.add_revision(&cur, &row.data, reason, src, None)?;
            counts.invoices_changed += 1;
        }
        State::Open | State::Failed | State::Expired if differs => {
            let reason = if row.partial && as_exported.due != row.data.due {
                RevisionReason::PartialPayment
            } else {
                RevisionReason::Changed
            };
            // An export that lowers the amount due includes every transfer matched
            // before it arrived; one that does not still owes them: they are subtracted
            // once, here, and never again.
            let mut data = row.data.clone();
            let mut export_due = None;
            if transferred > 0 && row.data.due.minor >= cur.export_due {
                data.due.minor -= transferred;
                export_due = Some(row.data.due.minor);
            }
            if data.due.minor <= 0 {
                let note = format!(
                    "the export asks {} {}, which transfers matched since the last export already paid: check the books",
                    row.data.due.currency.code(),
                    row.data.due.to_decimal_string()
                );
                w.note_paid_changed(cur.id, &note, src)?;
                return Ok(None);
            }
            w.add_revision(&cur, &data, reason, src, export_due)?;
            counts.invoices_changed += 1;
        }
        State::Open | State::Failed | State::Expired
            if cur.data.customer_type != row.data.customer_type =>
        {
            w.set_customer_type(&cur, row.data.customer_type, src)?;
        }
        State::Open | State::Failed | State::Expired => {
            w.mark_seen(cur.id, src)?;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Encoding;

    /// What the row pass makes of `read` when the first pass hashed `hashed`.
    fn verdict(hashed: &[u8], read: &[u8]) -> Result<Option<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, hashed).unwrap();
        let info = decode::inspect(&path, Encoding::Auto).unwrap();
        let tally = std::rc::Rc::new(std::cell::RefCell::new(ReadTally {
            limit: info.size,
            total: 0,
            hasher: crc32fast::Hasher::new(),
            last: None,
        }));
        let mut r = Tallying {
            inner: read,
            tally: tally.clone(),
        };
        let mut small = [0u8; 7];
        while r.read(&mut small).unwrap() > 0 {}
        drop(r);
        std::rc::Rc::try_unwrap(tally)
            .ok()
            .unwrap()
            .into_inner()
            .verdict(&info)
    }

    #[test]
    fn the_bytes_read_are_the_bytes_hashed_or_those_and_whole_rows_more() {
        let half = b"ref,amount\nA,1\nB,2\n";
        let whole = b"ref,amount\nA,1\nB,2\nC,3\nD,4\n";
        assert_eq!(verdict(half, half), Ok(None));
        let grown = verdict(half, whole).unwrap().unwrap();
        assert!(grown.contains("19 bytes, then 27"), "{grown}");
        // Grown, and the read ends inside a row: nothing of it may be applied.
        let e = verdict(half, b"ref,amount\nA,1\nB,2\nC,3").unwrap_err();
        assert!(e.contains("ends inside a row"), "{e}");
        // Rewritten: the first bytes are not those hashed.
        let e = verdict(half, b"ref,amount\nA,9\nB,2\nC,3\n").unwrap_err();
        assert!(e.contains("not what they were"), "{e}");
        // Shrunk (truncated for a rewrite).
        assert!(verdict(half, b"ref,amount\n").is_err());
    }

    #[test]
    fn a_stamp_sees_growth_a_new_mtime_and_a_replacement() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "a\n").unwrap();
        let before = Stamp::of(&path).unwrap();
        assert_eq!(Stamp::change(&path, Some(&before)), None);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        let why = Stamp::change(&path, Some(&before)).unwrap();
        assert!(why.contains("2 bytes, then 4"), "{why}");

        let before = Stamp::of(&path).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let why = Stamp::change(&path, Some(&before)).unwrap();
        assert!(why.contains("modification time"), "{why}");

        let before = Stamp::of(&path).unwrap();
        let other = dir.path().join("b.csv");
        std::fs::write(&other, "a\nb\n").unwrap();
        let f = std::fs::File::options().write(true).open(&other).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        std::fs::rename(&other, &path).unwrap();
        let why = Stamp::change(&path, Some(&before)).unwrap();
        assert!(why.contains("another file took its place"), "{why}");

        std::fs::remove_file(&path).unwrap();
        assert!(Stamp::change(&path, Some(&before)).is_some());
    }
}
