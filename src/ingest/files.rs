//! The file side of ingest: which inbox files are ready, where applied and refused files
//! go, and the rejection reports written beside them. Names never overwrite: a name that
//! is taken gets a timestamp, then a counter.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Patterns match whatever the case: Windows software writes `EXPORT.CSV`, and `*.csv`
/// must find it.
const CASE_INSENSITIVE: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: false,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

/// What the inbox holds for this cycle.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Files to read, in name order: matching `pattern` (in any case), settled, and not
    /// hidden, `*.tmp` or `*.part`.
    pub ready: Vec<PathBuf>,
    /// Matching files still being written (changed less than `settle` ago): read by a
    /// later cycle.
    pub settling: Vec<String>,
    /// Matching entries that are not plain files, with why (a symbolic link is never
    /// followed; a folder is not a file).
    pub skipped: Vec<String>,
}

/// Lists the inbox. A missing or unreadable inbox is an error: a cycle that reads nothing
/// because `inbox.dir` names no folder must say so, not report zero files.
pub fn ready_files(dir: &Path, pattern: &glob::Pattern, settle: Duration) -> io::Result<Inbox> {
    let entries = fs::read_dir(dir)?;
    let now = SystemTime::now();
    let mut inbox = Inbox::default();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let lower = name.to_ascii_lowercase();
        if name.starts_with('.')
            || lower.ends_with(".tmp")
            || lower.ends_with(".part")
            || !pattern.matches_with(name, CASE_INSENSITIVE)
        {
            continue;
        }
        // Not followed: a symbolic link is itself, not what it points at.
        let meta = entry.metadata()?;
        if meta.file_type().is_symlink() {
            inbox
                .skipped
                .push(format!("{name} (a symbolic link, not followed)"));
            continue;
        }
        if meta.is_dir() {
            inbox.skipped.push(format!("{name} (a folder)"));
            continue;
        }
        if !meta.is_file() {
            inbox.skipped.push(format!("{name} (not a regular file)"));
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        if age < settle {
            inbox.settling.push(name.to_string());
            continue;
        }
        inbox.ready.push(entry.path());
    }
    inbox.ready.sort();
    inbox.settling.sort();
    inbox.skipped.sort();
    Ok(inbox)
}

/// A file's name for reports and logs (its whole path when it has no name).
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn stamp() -> String {
    crate::clock::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// A free path in `dir` for `name`; `stamped` puts a timestamp before the extension even
/// when the plain name is free (the archive keeps every drop of a daily export).
pub fn free_path(dir: &Path, name: &str, stamped: bool) -> PathBuf {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let ts = stamp();
    let mut candidates = Vec::new();
    if !stamped {
        candidates.push(name.to_string());
    }
    candidates.push(format!("{stem}.{ts}{ext}"));
    for c in candidates {
        let p = dir.join(&c);
        if !p.exists() {
            return p;
        }
    }
    (1..)
        .map(|n| dir.join(format!("{stem}.{ts}-{n}{ext}")))
        .find(|p| !p.exists())
        .expect("an unbounded counter always finds a free name")
}

/// Moves `from` into `dir` (created if needed) under a free name; falls back to copy and
/// remove across file systems. Returns the new path.
pub fn move_into(from: &Path, dir: &Path, stamped: bool) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("export.csv");
    let to = free_path(dir, name, stamped);
    match fs::rename(from, &to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            // Copied under a temporary name first: a copy that fails halfway (a full
            // disk) is removed with the temporary file, never left as a truncated file.
            let mut tmp = tempfile::Builder::new()
                .prefix(".moving-")
                .tempfile_in(dir)?;
            io::copy(&mut fs::File::open(from)?, tmp.as_file_mut())?;
            tmp.as_file().sync_all()?;
            tmp.persist_noclobber(&to).map_err(|e| e.error)?;
            fs::remove_file(from)?;
        }
        Err(e) => return Err(e),
    }
    // A moved file keeps the mode the exporting software gave it; customer data in the
    // archive is readable by owner and group only.
    restrict_mode(&to)?;
    Ok(to)
}

/// Takes away every permission of others on `path`.
pub fn restrict_mode(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = fs::metadata(path)?.permissions();
    if perms.mode() & 0o007 != 0 {
        perms.set_mode(perms.mode() & !0o007);
        fs::set_permissions(path, perms)?;
    }
    Ok(())
}

/// Writes `text` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, text: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The `<file>.rejected.csv` report of one file, written to a temporary file while rows
/// are read and put in place only after the file's transaction commits.
pub struct RejectionReport {
    dir: PathBuf,
    file_name: String,
    writer: Option<io::BufWriter<tempfile::NamedTempFile>>,
    delimiter: u8,
    /// Rows rejected so far.
    pub rows: u64,
    /// A dry run: nothing is written; the problems are kept here (the first
    /// [`PLANNED_REJECTIONS`]) for the plan to show.
    planned: Option<Vec<Rejection>>,
}

/// At most this many rejections of one file are kept for a dry run's plan.
pub const PLANNED_REJECTIONS: usize = 200;

/// One problem of a rejected row: its physical line, the column (as the file names it)
/// and the reason.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The physical line where the row starts.
    pub line: u64,
    /// The column, as named in the file.
    pub column: String,
    /// Why.
    pub reason: String,
}

impl RejectionReport {
    /// A report for the file named `file_name`, to be kept in `dir`.
    pub fn new(dir: &Path, file_name: &str, delimiter: u8) -> Self {
        RejectionReport {
            dir: dir.to_path_buf(),
            file_name: file_name.to_string(),
            writer: None,
            delimiter,
            rows: 0,
            planned: None,
        }
    }

    /// A report for a dry run: it writes nothing and keeps the problems for the plan.
    pub fn planned(delimiter: u8) -> Self {
        RejectionReport {
            planned: Some(Vec::new()),
            ..Self::new(Path::new(""), "", delimiter)
        }
    }

    /// A dry run's problems, in order (at most [`PLANNED_REJECTIONS`]).
    pub fn into_planned(self) -> Vec<Rejection> {
        self.planned.unwrap_or_default()
    }

    /// Adds one line per problem of a rejected row: line, column, reason, and on the
    /// row's first line the original row (written once, however many problems it has).
    /// Written straight from the record, in time linear in its length.
    pub fn add(
        &mut self,
        line: u64,
        problems: &[(String, String)],
        record: &csv::ByteRecord,
    ) -> io::Result<()> {
        self.rows += 1;
        if let Some(planned) = &mut self.planned {
            for (column, reason) in problems {
                if planned.len() < PLANNED_REJECTIONS {
                    planned.push(Rejection {
                        line,
                        column: column.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            return Ok(());
        }
        if self.writer.is_none() {
            fs::create_dir_all(&self.dir)?;
            let tmp = tempfile::Builder::new()
                .prefix(".rejected-")
                .suffix(".tmp")
                .tempfile_in(&self.dir)?;
            let mut w = io::BufWriter::with_capacity(64 * 1024, tmp);
            w.write_all(b"line,column,reason,original_row\n")?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        for (i, (column, reason)) in problems.iter().enumerate() {
            write!(w, "{line},")?;
            write_field(w, column.as_bytes(), b',')?;
            w.write_all(b",")?;
            write_field(w, reason.as_bytes(), b',')?;
            w.write_all(b",")?;
            if i == 0 {
                // The row as one CSV line in the file's own delimiter, quoted as one
                // field of the report: its quotes are doubled twice over where needed.
                w.write_all(b"\"")?;
                let mut doubled = Doubling(&mut *w);
                for (j, field) in record.iter().enumerate() {
                    if j > 0 {
                        doubled.write_all(&[self.delimiter])?;
                    }
                    write_field(&mut doubled, field, self.delimiter)?;
                }
                w.write_all(b"\"")?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Puts the report in place; returns its path, or `None` when nothing was rejected.
    pub fn keep(self) -> io::Result<Option<PathBuf>> {
        let Some(w) = self.writer else {
            return Ok(None);
        };
        let tmp = w.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        let path = free_path(
            &self.dir,
            &format!("{}.rejected.csv", self.file_name),
            false,
        );
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(Some(path))
    }
}

/// One CSV field: as it is, or quoted with its quotes doubled when it holds the
/// delimiter, a quote or a line break (or is empty, so that an empty row stays visible).
fn write_field(w: &mut impl Write, field: &[u8], delimiter: u8) -> io::Result<()> {
    let plain = !field.is_empty()
        && !field
            .iter()
            .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
    if plain {
        return w.write_all(field);
    }
    w.write_all(b"\"")?;
    Doubling(&mut *w).write_all(field)?;
    w.write_all(b"\"")
}

/// A writer that doubles every quote written through it.
struct Doubling<W>(W);

impl<W: Write> Write for Doubling<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = memchr::memchr(b'"', rest) {
            self.0.write_all(&rest[..=i])?;
            self.0.write_all(b"\"")?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Moves a file that cannot be imported at all into `rejected_dir` (inbox files) and
/// writes `<name>.reason.txt` beside it; for files named on the command line only the
/// reason is written. Returns the reason file's path.
pub fn set_aside(
    path: &Path,
    rejected_dir: &Path,
    reason: &str,
    move_file: bool,
) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("export.csv")
        .to_string();
    let kept_name = if move_file {
        let to = move_into(path, rejected_dir, false)?;
        to.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&name)
            .to_string()
    } else {
        name
    };
    let reason_path = free_path(rejected_dir, &format!("{kept_name}.reason.txt"), false);
    let text = format!(
        "{}\nfile: {}\nwhen: {}\n",
        reason,
        path.display(),
        crate::clock::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    write_atomic(&reason_path, text.as_bytes())?;
    Ok(reason_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv() -> glob::Pattern {
        glob::Pattern::new("*.csv").unwrap()
    }

    #[test]
    fn ready_files_skip_hidden_partial_unsettled_and_sort() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "b.csv",
            "a.csv",
            ".hidden.csv",
            "c.csv.tmp",
            "d.part",
            "e.txt",
            "f.CSV.TMP",
        ] {
            fs::write(d.path().join(n), "x").unwrap();
        }
        fs::create_dir(d.path().join("dir.csv")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a.csv"), d.path().join("link.csv")).unwrap();
        let inbox = ready_files(d.path(), &csv(), Duration::ZERO).unwrap();
        let names: Vec<_> = inbox
            .ready
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
        assert_eq!(
            inbox.skipped,
            [
                "dir.csv (a folder)",
                "link.csv (a symbolic link, not followed)"
            ]
        );
        // settle time: everything was just written
        let inbox = ready_files(d.path(), &csv(), Duration::from_secs(60)).unwrap();
        assert!(inbox.ready.is_empty());
        assert_eq!(inbox.settling, ["a.csv", "b.csv"]);
    }

    #[test]
    fn a_missing_inbox_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = ready_files(&d.path().join("nope"), &csv(), Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn archive_names_are_stamped_and_never_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let a = free_path(d.path(), "x.csv", true);
        let name = a.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("x.2") && name.ends_with("Z.csv"), "{name}");
        fs::write(&a, "1").unwrap();
        let b = free_path(d.path(), "x.csv", true);
        assert_ne!(a, b);
    }

    #[test]
    fn rejection_report_has_line_column_reason_and_row() {
        let d = tempfile::tempdir().unwrap();
        let mut r = RejectionReport::new(d.path(), "in.csv", b';');
        let rec = csv::ByteRecord::from(vec!["INV;1", "x"]);
        r.add(7, &[("amount".into(), "bad".into())], &rec).unwrap();
        let p = r.keep().unwrap().unwrap();
        assert_eq!(p.file_name().unwrap(), "in.csv.rejected.csv");
        let text = fs::read_to_string(p).unwrap();
        assert_eq!(
            text,
            "line,column,reason,original_row\n7,amount,bad,\"\"\"INV;1\"\";x\"\n"
        );
        // A row with two problems is written once, on its first line.
        let mut r = RejectionReport::new(d.path(), "two.csv", b',');
        let rec = csv::ByteRecord::from(vec!["INV-2", "say \"hi\"", "x\ny"]);
        r.add(
            3,
            &[
                ("customer_email".into(), "not an address".into()),
                ("amount".into(), "not a number, \"x\"".into()),
            ],
            &rec,
        )
        .unwrap();
        let text = fs::read_to_string(r.keep().unwrap().unwrap()).unwrap();
        assert_eq!(
            text,
            "line,column,reason,original_row\n\
             3,customer_email,not an address,\"INV-2,\"\"say \"\"\"\"hi\"\"\"\"\"\",\"\"x\ny\"\"\"\n\
             3,amount,\"not a number, \"\"x\"\"\",\n"
        );
        // What a CSV reader makes of it: the row, as the file had it.
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let first = rd.records().next().unwrap().unwrap();
        assert_eq!(&first[3], "INV-2,\"say \"\"hi\"\"\",\"x\ny\"");
        // nothing rejected: no report
        let r = RejectionReport::new(d.path(), "ok.csv", b',');
        assert!(r.keep().unwrap().is_none());
    }
}
