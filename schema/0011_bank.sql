-- invoice-sync schema, version 11: the merchant's own bank statements (README, *Bank
-- transfers*).
--
-- - `invoices.creditor_key`: the body of the invoice's ISO 11649 creditor reference (what
--   follows `RF` and the check digits), derived from its reference, with a partial
--   index: a structured reference and a reference named in a remittance are both found
--   through it. It is written by the bank import, for every invoice above
--   `creditor_key_mark` (invoices are never deleted and a reference never changes, so
--   row ids only grow and a key once written stays true), not by the CSV ingest: an
--   index insert per imported row would slow every import down for a feature that
--   reads the keys only when a statement arrives. `paid_by` says what paid it (NULL: derived from its links and QR codes);
--   `overpaid_minor` is the surplus to refund (NULL: none); `reversed` flags an invoice
--   a bank reversal reopened.
-- - `revisions.bank_entry_id`: the transfer a revision subtracts (a partial payment);
--   `export_due_minor`: the amount the export asked when the revision was made by a
--   transfer, so that the same export row read again changes nothing.
-- - `bank_files`: one row per statement file applied; the SHA-256 makes a second read of
--   the same bytes a no-op.
-- - `bank_entries`: one row per entry known (`entry_key`: the bank's reference, else the
--   entry's content and its occurrence in the file), so an entry seen again in another
--   statement is applied once. `id` is the ENTRY of `bank match`.
ALTER TABLE invoices ADD COLUMN creditor_key TEXT;
ALTER TABLE invoices ADD COLUMN paid_by TEXT
    CHECK (paid_by IS NULL OR paid_by = 'link' OR paid_by = 'ideal_qr' OR paid_by = 'transfer');
ALTER TABLE invoices ADD COLUMN overpaid_minor INTEGER;
ALTER TABLE invoices ADD COLUMN reversed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX invoices_by_creditor_key ON invoices(creditor_key) WHERE creditor_key IS NOT NULL;
CREATE TABLE creditor_key_mark (
    only        INTEGER PRIMARY KEY CHECK (only = 1),
    invoice_id  INTEGER NOT NULL       -- every invoice up to here has its creditor_key
);
INSERT INTO creditor_key_mark VALUES (1, 0);
CREATE INDEX invoices_flagged ON invoices(id) WHERE overpaid_minor IS NOT NULL OR reversed = 1;

ALTER TABLE revisions ADD COLUMN bank_entry_id INTEGER;
ALTER TABLE revisions ADD COLUMN export_due_minor INTEGER;

CREATE TABLE bank_files (
    id           INTEGER PRIMARY KEY,
    file_name    TEXT    NOT NULL,
    sha256       TEXT    NOT NULL UNIQUE,
    format       TEXT    NOT NULL,
    entries      INTEGER NOT NULL DEFAULT 0,   -- entries read
    new_entries  INTEGER NOT NULL DEFAULT 0,   -- of which not known before
    imported_at  TEXT    NOT NULL
);

CREATE TABLE bank_entries (
    id                   INTEGER PRIMARY KEY,
    entry_key            TEXT    NOT NULL UNIQUE,
    file_id              INTEGER NOT NULL REFERENCES bank_files(id),
    line                 INTEGER NOT NULL,
    account              TEXT    NOT NULL,
    booking_date         TEXT,                    -- YYYY-MM-DD
    value_date           TEXT,
    amount_minor         INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency             TEXT    NOT NULL,
    direction            TEXT    NOT NULL CHECK (direction = 'CRDT' OR direction = 'DBIT'),
    status               TEXT    NOT NULL CHECK (status = 'BOOK' OR status = 'PDNG' OR status = 'INFO'),
    reversal             INTEGER NOT NULL DEFAULT 0,
    return_reason        TEXT,
    counterparty_name    TEXT,
    counterparty_iban    TEXT,
    remittance           TEXT,
    structured_reference TEXT,
    bank_reference       TEXT,
    end_to_end_id        TEXT,
    outcome              TEXT    NOT NULL
                         CHECK (outcome = 'matched' OR outcome = 'suggested' OR outcome = 'unmatched'
                                OR outcome = 'reversed' OR outcome = 'ignored'),
    invoice_id           INTEGER REFERENCES invoices(id),   -- matched (or the one a reversal reopened)
    suggested_invoice_id INTEGER REFERENCES invoices(id),
    reason               TEXT,
    reverses_entry_id    INTEGER REFERENCES bank_entries(id),
    matched_by           TEXT CHECK (matched_by IS NULL OR matched_by = 'reference'
                                     OR matched_by = 'remittance' OR matched_by = 'operator'),
    matched_at           TEXT,
    seen_at              TEXT    NOT NULL
);
CREATE INDEX bank_entries_by_invoice ON bank_entries(invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX bank_entries_open ON bank_entries(id)
    WHERE outcome = 'unmatched' OR outcome = 'suggested';
-- A reversal looks for the credit it undoes among the matched credits of one account
-- and amount.
CREATE INDEX bank_entries_credits ON bank_entries(account, amount_minor)
    WHERE direction = 'CRDT' AND outcome = 'matched';
-- Working tables of one statement file, emptied at its start (regular tables, so that
-- their pages stay in the page cache's bounds at any size):
-- - `bank_seen`: how often each content (of entries without a bank reference) occurred
--   in the file so far;
-- - `bank_open_due`: the open invoices by the amount they ask, made when the file's first
--   unmatched credit looks for a suggestion (an index on every invoice's amount would
--   cost every import a random B-tree insert per row).
CREATE TABLE bank_seen (content TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE bank_open_due (
    currency    TEXT    NOT NULL,
    due_minor   INTEGER NOT NULL,
    invoice_id  INTEGER NOT NULL,
    PRIMARY KEY (currency, due_minor, invoice_id)
) WITHOUT ROWID;
CREATE TABLE bank_open_due_made (only INTEGER PRIMARY KEY CHECK (only = 1));

-- `statement_payments` also marks transfers a `--new` CSV export wrote (rebuilt: SQLite
-- cannot change a CHECK in place; the runner turns foreign keys off around it).
CREATE TABLE statement_payments_v11 (
    kind           TEXT    NOT NULL CHECK (kind = 'link' OR kind = 'qr' OR kind = 'transfer'),
    payment_id     INTEGER NOT NULL,
    statement_id   INTEGER REFERENCES statements(id),
    exported_at    TEXT    NOT NULL,
    PRIMARY KEY (kind, payment_id)
) WITHOUT ROWID;
INSERT INTO statement_payments_v11 SELECT kind, payment_id, statement_id, exported_at
    FROM statement_payments;
DROP TABLE statement_payments;
ALTER TABLE statement_payments_v11 RENAME TO statement_payments;
