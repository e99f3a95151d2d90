-- invoice-sync schema, version 7: `import --again`.
--
-- A file whose content was imported before changes nothing, unless the operator asks
-- `import --again FILE` after fixing the config: then the rows rejected last time are
-- read again, and nothing else. That needs
-- - an import record per attempt of the same content: the hash is no longer unique by
--   itself; the first import of a content is (`again_of` is NULL for it), and each
--   attempt after names the one it repeats;
-- - the physical lines each import rejected, to know which rows to read again.
-- The table is rebuilt to drop the column's UNIQUE constraint (SQLite cannot drop one in
-- place); the migration runner turns foreign keys off around it and checks them after.
CREATE TABLE imports_v7 (
    id             INTEGER PRIMARY KEY,
    file_name      TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    source         TEXT    NOT NULL CHECK (source IN ('inbox', 'argument')),
    rows_read      INTEGER NOT NULL DEFAULT 0,
    rows_accepted  INTEGER NOT NULL DEFAULT 0,
    rows_rejected  INTEGER NOT NULL DEFAULT 0,
    rows_skipped   INTEGER NOT NULL DEFAULT 0,
    invoices_new      INTEGER NOT NULL DEFAULT 0,
    invoices_changed  INTEGER NOT NULL DEFAULT 0,
    invoices_settled  INTEGER NOT NULL DEFAULT 0,
    snapshot_guard    INTEGER NOT NULL DEFAULT 0,
    imported_at    TEXT    NOT NULL,
    again_of       INTEGER REFERENCES imports(id)  -- the first import of this content
);
INSERT INTO imports_v7 (id, file_name, sha256, source, rows_read, rows_accepted,
                        rows_rejected, rows_skipped, invoices_new, invoices_changed,
                        invoices_settled, snapshot_guard, imported_at)
SELECT id, file_name, sha256, source, rows_read, rows_accepted, rows_rejected, rows_skipped,
       invoices_new, invoices_changed, invoices_settled, snapshot_guard, imported_at
FROM imports;
DROP TABLE imports;
ALTER TABLE imports_v7 RENAME TO imports;
CREATE UNIQUE INDEX imports_first_of_content ON imports(sha256) WHERE again_of IS NULL;
CREATE INDEX imports_by_content ON imports(sha256);

-- The lines an import rejected (the rejection report has the reasons).
CREATE TABLE rejected_lines (
    import_id  INTEGER NOT NULL REFERENCES imports(id),
    line       INTEGER NOT NULL,
    PRIMARY KEY (import_id, line)
) WITHOUT ROWID;
