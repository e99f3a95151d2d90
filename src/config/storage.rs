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
    /// Glob for inbox file names (matched whatever the case).
    #[serde(deserialize_with = "pattern")]
    pub pattern: glob::Pattern,
    /// A file modified more recently is left for the next cycle.
    pub settle_seconds: u64,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            dir: "/var/lib/invoice-sync/inbox".into(),
            archive_dir: "/var/lib/invoice-sync/archive".into(),
            rejected_dir: "/var/lib/invoice-sync/rejected".into(),
            pattern: glob::Pattern::new("*.csv").expect("a glob"),
            settle_seconds: 5,
        }
    }
}

/// `inbox.pattern`, compiled once as it is read.
fn pattern<'de, D: serde::Deserializer<'de>>(d: D) -> Result<glob::Pattern, D::Error> {
    super::parsed(d, |s| {
        if s.is_empty() {
            return Err("must not be empty".to_string());
        }
        glob::Pattern::new(s).map_err(|e| e.msg.to_string())
    })
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_refused, parse};

    /// The pattern is compiled once, at load: a bad one stops the config, not every cycle.
    #[test]
    fn the_inbox_pattern_is_compiled_at_load() {
        let c = parse("[inbox]\npattern = \"export-*.csv\"\n").unwrap();
        assert!(c.inbox.pattern.matches("export-2026-11.csv"));
        assert!(!c.inbox.pattern.matches("other.csv"));
        assert_refused("inbox.pattern", "\"\"", "must not be empty");
        assert_refused("inbox.pattern", "\"[a-\"", "invalid range pattern");
    }
}
