//! The SQLite store: one file, opened with WAL, foreign keys and a busy timeout, and
//! migrated on open from the append-only SQL files in `schema/`.
//!
//! Each submodule owns the statements of one aggregate ([`imports`], [`invoices`]). This
//! module never talks to the network and never holds a secret.

pub mod bank;
pub mod imports;
pub mod invoices;
pub mod links;
pub mod outbox;
pub mod payments;
pub mod qr;
pub mod reminders;
pub mod statements;
pub mod types;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::Connection;

/// The migrations, in order. `user_version` is the number applied so far.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../../schema/0001_init.sql")),
    (
        "0002_links.sql",
        include_str!("../../schema/0002_links.sql"),
    ),
    (
        "0003_outbox.sql",
        include_str!("../../schema/0003_outbox.sql"),
    ),
    (
        "0004_idealqr.sql",
        include_str!("../../schema/0004_idealqr.sql"),
    ),
    (
        "0005_provisional_expiry.sql",
        include_str!("../../schema/0005_provisional_expiry.sql"),
    ),
    (
        "0006_work_queue.sql",
        include_str!("../../schema/0006_work_queue.sql"),
    ),
    (
        "0007_import_again.sql",
        include_str!("../../schema/0007_import_again.sql"),
    ),
    (
        "0008_reminders.sql",
        include_str!("../../schema/0008_reminders.sql"),
    ),
    (
        "0009_statements.sql",
        include_str!("../../schema/0009_statements.sql"),
    ),
    (
        "0010_one_time_form.sql",
        include_str!("../../schema/0010_one_time_form.sql"),
    ),
    ("0011_bank.sql", include_str!("../../schema/0011_bank.sql")),
];

/// How long a writer waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read-only handle (a `/metrics` scrape, a health check) waits for a lock:
/// shorter, so that a monitor hears "the database does not answer" in time.
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open, migrated database: the handle every store function takes. Outside this
/// module nothing sees SQL or SQLite: a caller passes `&Store` (or a [`Tx`], which is one)
/// and gets domain values back.
pub struct Store {
    pub(in crate::store) conn: Connection,
    identity: Option<FileIdentity>,
}

/// A database error: what SQLite said of a statement of the store's. Callers report it;
/// none of them matches on SQLite's codes.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] rusqlite::Error);

/// The result of a store function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A unit of work: a transaction (or a savepoint) on the store, opened and committed only
/// here, in the store — by [`Store::write`] and [`Store::nested`] around a caller's
/// closure, or by a store function for its own statements. It is a [`Store`] (every store
/// function takes it); dropping it uncommitted (an error, a panic, an early return, a
/// [`Store::rehearsal`] ending) rolls its changes back: no path can leave the connection
/// inside an open transaction.
pub struct Tx<'s> {
    store: &'s Store,
    end: End<'s>,
}

/// What ends a unit of work: a transaction's commit or rollback, a savepoint's release or
/// rollback; `Kept` once it was committed.
enum End<'s> {
    Transaction(rusqlite::Transaction<'s>),
    Savepoint,
    Kept,
}

impl Tx<'_> {
    /// Keeps what was done in this unit of work.
    pub(in crate::store) fn commit(mut self) -> Result<()> {
        match std::mem::replace(&mut self.end, End::Kept) {
            End::Transaction(tx) => tx.commit()?,
            End::Savepoint => self.store.conn.execute_batch("RELEASE invoice_sync_sp")?,
            End::Kept => {}
        }
        Ok(())
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // A transaction rolls itself back when dropped; a savepoint is rolled back here.
        if let End::Savepoint = self.end {
            let _ = self
                .store
                .conn
                .execute_batch("ROLLBACK TO invoice_sync_sp; RELEASE invoice_sync_sp");
        }
    }
}

/// Which file a database path named when it was opened (device and inode), so that a
/// long-running process notices when the file is removed or replaced under it: SQLite
/// would go on writing to the deleted file, and links made then would be recorded
/// nowhere.
#[derive(Debug, Clone)]
pub struct FileIdentity {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Fails, in one sentence, when the path no longer names the file that was opened.
    pub fn check(&self) -> anyhow::Result<()> {
        match FileIdentity::of(&self.path) {
            Ok(now) if now.dev == self.dev && now.ino == self.ino => Ok(()),
            Ok(_) => anyhow::bail!(
                "the database {} was replaced by another file while invoice-sync had it open; stopping before any further CM or mail work (start again to use the new file)",
                self.path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "the database {} was removed while invoice-sync had it open; stopping before any further CM or mail work (restore it, or start again to create a new one)",
                self.path.display()
            ),
            Err(e) => anyhow::bail!(
                "cannot check the database {}: {e}; stopping before any further CM or mail work",
                self.path.display()
            ),
        }
    }
}

impl Store {
    /// Opens (creating if needed, with its folder) and migrates the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        let mut store = Self::setup(conn)
            .with_context(|| format!("cannot prepare the database {}", path.display()))?;
        store.identity = Some(
            FileIdentity::of(path)
                .with_context(|| format!("cannot read the database {}", path.display()))?,
        );
        Ok(store)
    }

    /// A migrated database in memory, gone when dropped: what a dry run works on when
    /// there is no database yet, so that it leaves the disk as it was.
    pub fn open_in_memory() -> anyhow::Result<Store> {
        Self::setup(Connection::open_in_memory()?)
    }

    /// The file this store opened, to check later that it is still the one at its path.
    pub fn identity(&self) -> Option<&FileIdentity> {
        self.identity.as_ref()
    }

    fn setup(mut conn: Connection) -> anyhow::Result<Store> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets `status` read while a cycle writes; NORMAL is durable across process
        // crashes in WAL mode (only an OS crash can lose the last transactions).
        // Only takes effect on a new database (before its first table): 16 KiB pages make
        // million-row imports about 10 % faster than 4 KiB ones (benches/ingest.rs); an
        // existing database keeps its page size.
        conn.execute_batch("PRAGMA page_size = 16384")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if mode != "wal" && mode != "memory" {
            bail!("the database does not support WAL mode (journal_mode is {mode})");
        }
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -16384;",
        )?;
        migrate(&mut conn)?;
        Ok(Store {
            conn,
            identity: None,
        })
    }

    /// Opens an existing database for reading only, unmigrated (a reader never changes the
    /// schema under the writer): the listeners' own connection, so that a scrape or a
    /// health check never waits for a cycle's write lock.
    pub fn open_read_only(path: &Path) -> anyhow::Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open the database {} to read", path.display()))?;
        conn.busy_timeout(READ_BUSY_TIMEOUT)?;
        Ok(Store {
            conn,
            identity: None,
        })
    }

    /// Does `work` as one unit of work (an immediate, write-locking transaction): kept
    /// when `work` returns `Ok`, rolled back when it returns an error or panics. The only
    /// way a caller outside the store changes several rows as one fact.
    pub fn write<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        kept(self.immediate()?, work)
    }

    /// [`Store::write`] as a savepoint, so that it also nests inside a [`Store::rehearsal`]
    /// (the dry run), where it is rolled back with everything else.
    pub fn nested<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        kept(self.savepoint()?, work)
    }

    /// A unit of work that is never kept: everything done through the store while it
    /// lives is rolled back when it is dropped, on success or error (dry runs).
    pub fn rehearsal(&self) -> Result<Tx<'_>> {
        self.deferred()
    }

    /// An immediate (write-locking) unit of work, rolled back when dropped uncommitted.
    pub(in crate::store) fn immediate(&self) -> Result<Tx<'_>> {
        self.transaction(rusqlite::TransactionBehavior::Immediate)
    }

    /// A deferred unit of work, rolled back when dropped uncommitted.
    fn deferred(&self) -> Result<Tx<'_>> {
        self.transaction(rusqlite::TransactionBehavior::Deferred)
    }

    fn transaction(&self, behavior: rusqlite::TransactionBehavior) -> Result<Tx<'_>> {
        Ok(Tx {
            store: self,
            end: End::Transaction(rusqlite::Transaction::new_unchecked(&self.conn, behavior)?),
        })
    }

    /// A unit of work that nests inside an open one (a dry run's), as a savepoint; on its
    /// own it is a transaction of its own. rusqlite's own savepoints need `&mut
    /// Connection`, which a shared store cannot lend.
    pub(in crate::store) fn savepoint(&self) -> Result<Tx<'_>> {
        self.conn.execute_batch("SAVEPOINT invoice_sync_sp")?;
        Ok(Tx {
            store: self,
            end: End::Savepoint,
        })
    }

    /// SQLite's own consistency check (`PRAGMA quick_check`): `Ok` when it says `ok`,
    /// else the problems it lists (the first few).
    pub fn quick_check(&self) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check(5)")?;
        let found: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if found.len() == 1 && found[0] == "ok" {
            return Ok(());
        }
        anyhow::bail!("the database is damaged: {}", found.join("; "))
    }

    /// Counts, from now on, the SQLite virtual-machine steps this store runs, `every` at a
    /// time: a measure of a cycle's work that does not depend on the machine's speed.
    pub fn count_steps(&self, every: i32) -> Result<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let steps = std::sync::Arc::new(AtomicU64::new(0));
        let counter = steps.clone();
        self.conn.progress_handler(
            every,
            Some(move || {
                counter.fetch_add(every.unsigned_abs().into(), Ordering::Relaxed);
                false
            }),
        )?;
        Ok(steps)
    }

    /// Whether the database answers a read (a health check's probe).
    pub fn ping(&self) -> Result<()> {
        self.conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })?;
        Ok(())
    }

    /// The schema version this database is at.
    pub fn schema_version(&self) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize)
    }
}

/// Does `work` in `tx` and keeps it when `work` returns `Ok`; an error (or a panic) drops
/// `tx` uncommitted, which rolls it back.
fn kept<T, E: From<Error>>(
    tx: Tx<'_>,
    work: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let done = work(&tx)?;
    tx.commit()?;
    Ok(done)
}

/// Applies every migration not yet applied, all in one transaction, so that a failure
/// leaves the database as it was. Safe to run any number of times.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    // A migration may rebuild a table others refer to (SQLite's documented way to change
    // a constraint): foreign keys are off while migrations run (the pragma has no effect
    // inside a transaction) and checked whole before the commit.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let migrated = migrate_in_transaction(conn);
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    migrated
}

fn migrate_in_transaction(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        bail!(
            "the database is at schema version {current}, newer than this program knows ({}); \
             use the newer invoice-sync that wrote it",
            MIGRATIONS.len()
        );
    }
    for (name, sql) in &MIGRATIONS[current..] {
        tx.execute_batch(sql)
            .with_context(|| format!("migration {name} failed"))?;
    }
    if current < MIGRATIONS.len() {
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            bail!("the migrated database has {broken} broken reference(s); nothing was changed");
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    }
    tx.commit()?;
    Ok(())
}

/// What a crash left unfinished, found and repaired at the start of a cycle.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Link creates that were in flight: `(invoice reference, merchant reference)`;
    /// each is now a reported possible orphan.
    pub links: Vec<(crate::domain::InvoiceRef, crate::domain::MerchantRef)>,
    /// iDEAL QR creates that were in flight (purchase ids), likewise.
    pub qr: Vec<String>,
    /// Mails that were being handed over, queued again (a receiver may get one twice).
    pub mails: usize,
}

/// Repairs what a crash or a kill left in flight, in one transaction: create intents
/// become possible orphans, mails in `sending` are queued again.
pub fn recover(db: &Store) -> Result<Recovered> {
    let tx = db.immediate()?;
    let recovered = Recovered {
        links: links::recover_interrupted(&tx)?,
        qr: qr::recover_interrupted(&tx)?,
        mails: outbox::recover_sending(&tx)?,
    };
    tx.commit()?;
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file at schema `version` (the migrations up to it run by hand), holding
    /// import 7 and invoice 1 with its revision, then `extra` SQL.
    fn database_at(path: &Path, version: usize, extra: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for (_, sql) in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = {version};
             INSERT INTO imports (id, file_name, sha256, source, rows_read, imported_at)
             VALUES (7, 'a.csv', 'abc', 'inbox', 3, '2026-01-01T00:00:00Z');
             INSERT INTO invoices (id, reference, state, revision, seen_import_id, seen_line)
             VALUES (1, 'INV-1', 'open', 1, 7, 2);
             INSERT INTO revisions (invoice_id, revision, customer_email, customer_name,
                    amount_minor, due_minor, currency, due_date, reason, import_id, source_line)
             VALUES (1, 1, 'a@example.com', 'A', 1000, 1000, 'EUR', '2027-01-01', 'new', 7, 2);
             {extra}"
        ))
        .unwrap();
    }

    /// Schema 10 writes every recorded time in the one form: a provisional expiry written
    /// with `+00:00` and a statement time written with the local offset read back as the
    /// same instants, ending in `Z`, and through the store's `Timestamp`.
    #[test]
    fn schema_10_writes_every_time_in_one_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        database_at(
            &path,
            9,
            "INSERT INTO links (id, invoice_id, revision, merchant_reference, state, link_ref,
                    uri, amount_minor, currency, created_at, expiry_date)
             VALUES (3, 1, 1, 'INV-1/r1', 'active', 'pml-1', 'https://pay.example/1', 1000,
                     'EUR', '2026-01-01T00:00:00Z', '2026-01-03T10:11:12+00:00');
             INSERT INTO statements (id, msg_id, stmt_id, currency, seq, opening_minor,
                    closing_minor, entries, new_only, created_at)
             VALUES (1, 'INVSYNC-00000001', 'INVSYNC-00000001-EUR', 'EUR', 1, 0, 0, 0, 0,
                     '2026-07-01T09:30:00+02:00');",
        );
        let s = Store::open(&path).unwrap();
        let (expiry, created): (String, String) = s
            .conn
            .query_row(
                "SELECT (SELECT expiry_date FROM links WHERE id = 3),
                        (SELECT created_at FROM statements WHERE id = 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(expiry, "2026-01-03T10:11:12Z");
        assert_eq!(created, "2026-07-01T07:30:00Z");
        let read: crate::domain::Timestamp = s
            .conn
            .query_row("SELECT expiry_date FROM links WHERE id = 3", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(read.to_text(), expiry);
    }

    /// Schema 8 rebuilds the outbox (a new kind, a step column): a database of schema 7
    /// with a sent link mail keeps it, its references hold, and its invoice gets no
    /// reminder date until reminders are switched on.
    #[test]
    fn schema_8_keeps_the_outbox_and_its_references() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        database_at(
            &path,
            7,
            "INSERT INTO links (id, invoice_id, revision, merchant_reference, state, link_ref,
                    uri, amount_minor, currency, created_at)
             VALUES (3, 1, 1, 'INV-1/r1', 'active', 'pml-1', 'https://pay.example/1', 1000,
                     'EUR', '2026-01-01T00:00:00Z');
             INSERT INTO outbox (id, invoice_id, revision, link_id, kind, state, message_id,
                    next_attempt_at, created_at, sent_at)
             VALUES (5, 1, 1, 3, 'link', 'sent', '<is-1@x>', '2026-01-01T00:00:00Z',
                     '2026-01-01T00:00:00Z', '2026-01-01T00:00:05Z');",
        );
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        let row: (i64, String, String, Option<i64>, String) = s
            .conn
            .query_row(
                "SELECT link_id, kind, state, step, sent_at FROM outbox WHERE id = 5",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                3,
                "link".into(),
                "sent".into(),
                None,
                "2026-01-01T00:00:05Z".into()
            )
        );
        let broken: i64 = s
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(broken, 0);
        let next: Option<String> = s
            .conn
            .query_row(
                "SELECT next_reminder_on FROM invoices WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(next, None);
        // A reminder row needs its step: the rebuilt table checks it.
        let bad = s.conn.execute(
            "INSERT INTO outbox (invoice_id, revision, link_id, kind, state, next_attempt_at, created_at)
             VALUES (1, 1, 3, 'reminder', 'queued', 'x', 'x')",
            [],
        );
        assert!(bad.is_err());
    }

    /// A database at schema 6 with imports and the rows that refer to them keeps them all
    /// through the rebuild of `imports` in schema 7, references intact.
    #[test]
    fn schema_7_keeps_the_imports_and_their_references() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        database_at(&path, 6, "");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        let (name, rows): (String, i64) = s
            .conn
            .query_row(
                "SELECT file_name, rows_read FROM imports WHERE id = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((name.as_str(), rows), ("a.csv", 3));
        let fk: i64 = s
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1, "foreign keys are on again");
        let broken: i64 = s
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(broken, 0);
        // A second import of the same content is possible only as an attempt again.
        let again = s.conn.execute(
            "INSERT INTO imports (file_name, sha256, source, imported_at)
             VALUES ('b.csv', 'abc', 'inbox', '2026-01-02T00:00:00Z')",
            [],
        );
        assert!(again.is_err(), "the first import of a content is unique");
        s.conn
            .execute(
                "INSERT INTO imports (file_name, sha256, source, imported_at, again_of)
                 VALUES ('a.csv', 'abc', 'argument', '2026-01-02T00:00:00Z', 7)",
                [],
            )
            .unwrap();
    }

    #[test]
    fn migrating_twice_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/db.sqlite");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = s
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let err = format!("{:#}", Store::open(&path).err().unwrap());
        assert!(err.contains("newer than this program"), "{err}");
    }
}
