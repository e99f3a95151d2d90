-- invoice-sync schema, version 1: imports, invoices and their revisions.
-- Value checks are written as OR chains, not IN lists: SQLite builds an ephemeral table
-- per row for an IN list of three or more items in a CHECK, which halved import speed.
-- Append-only: never edit a released migration; add 0002_... instead.

-- One row per file whose rows were applied. The SHA-256 of the content makes a
-- second drop of the same bytes a no-op.
CREATE TABLE imports (
    id             INTEGER PRIMARY KEY,
    file_name      TEXT    NOT NULL,
    sha256         TEXT    NOT NULL UNIQUE,
    source         TEXT    NOT NULL CHECK (source IN ('inbox', 'argument')),
    rows_read      INTEGER NOT NULL DEFAULT 0,
    rows_accepted  INTEGER NOT NULL DEFAULT 0,
    rows_rejected  INTEGER NOT NULL DEFAULT 0,
    rows_skipped   INTEGER NOT NULL DEFAULT 0,
    invoices_new      INTEGER NOT NULL DEFAULT 0,
    invoices_changed  INTEGER NOT NULL DEFAULT 0,
    invoices_settled  INTEGER NOT NULL DEFAULT 0,
    snapshot_guard    INTEGER NOT NULL DEFAULT 0,  -- 1: the 50 % guard held settlement back
    imported_at    TEXT    NOT NULL
);

-- One row per invoice reference. `revision` points at the current revision; the
-- link step derives what to do from state + links (a later migration).
CREATE TABLE invoices (
    id              INTEGER PRIMARY KEY,
    reference       TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL
                    CHECK ((state = 'open' OR state = 'paid' OR state = 'settled_elsewhere' OR state = 'expired' OR state = 'failed')),
    revision        INTEGER NOT NULL,
    last_error      TEXT,
    paid_at         TEXT,
    settled_at      TEXT,
    seen_import_id  INTEGER REFERENCES imports(id),  -- the last import that listed it
    seen_line       INTEGER,                         -- and on which line
    updated_at      TEXT              -- NULL: unchanged since its first import
);
-- (When an invoice was first seen is its revision 1's import time: not repeated here,
-- as every byte per row counts for million-row imports.)
-- No index on state: it would cost every imported row a B-tree insert, and the queries
-- that filter on it run once per cycle (a scan of one narrow table).

-- Every version of an invoice that asked for a different payment. Old revisions are
-- kept; a new one is added when the amount due, currency, due date or address changes.
CREATE TABLE revisions (
    invoice_id      INTEGER NOT NULL REFERENCES invoices(id),
    revision        INTEGER NOT NULL,
    customer_email  TEXT    NOT NULL,
    customer_name   TEXT    NOT NULL,
    amount_minor    INTEGER NOT NULL,  -- the invoice total, minor units
    due_minor       INTEGER NOT NULL,  -- what the link asks: the outstanding balance, else the amount
    currency        TEXT    NOT NULL,
    due_date        TEXT    NOT NULL,  -- YYYY-MM-DD
    language        TEXT,              -- ISO 639-1, NULL: cm.default_language
    country_code    TEXT,              -- ISO 3166-1 alpha-2, NULL: cm.default_country
    reason          TEXT    NOT NULL
                    CHECK ((reason = 'new' OR reason = 'changed' OR reason = 'partial_payment' OR reason = 'reopened')),
    import_id       INTEGER NOT NULL REFERENCES imports(id),  -- when: imports.imported_at
    source_line     INTEGER NOT NULL,
    PRIMARY KEY (invoice_id, revision)
) WITHOUT ROWID;
