//! `[storage]` and `[inbox]`: where the database is, and where exports arrive and go.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[storage]`.
pub struct Storage {
    /// The SQLite file (its folder is created).
    pub database: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            database: "/var/lib/invoice-sync/invoice-sync.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[inbox]`.
pub struct Inbox {
    /// Where CSV drops land.
    pub dir: PathBuf,
    /// Applied files, as `<stem>.<UTC timestamp>.<ext>`.
    pub archive_dir: PathBuf,
    /// Rejection reports and files set aside.
    pub rejected_dir: PathBuf,
    /// Glob for inbox file names.
    pub pattern: String,
    /// A file modified more recently is left for the next cycle.
    pub settle_seconds: u64,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            dir: "/var/lib/invoice-sync/inbox".into(),
            archive_dir: "/var/lib/invoice-sync/archive".into(),
            rejected_dir: "/var/lib/invoice-sync/rejected".into(),
            pattern: "*.csv".into(),
            settle_seconds: 5,
        }
    }
}

impl Inbox {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.pattern.is_empty() {
            return Err(("inbox.pattern", "must not be empty".into()));
        }
        Ok(())
    }
}
