-- invoice-sync schema, version 9: camt.053 statements of the payments received.
--
-- - `statements`: one row per statement written (one per currency in a file), numbered
--   per currency (`seq`, the electronic sequence number); its closing balance is the
--   next statement's opening balance, so the balances continue from file to file.
-- - `statement_payments`: the payments an `export-paid --new` wrote, each once (its key),
--   marked in the transaction that completes the file, so a daily export from cron puts
--   each payment into exactly one statement.
CREATE TABLE statements (
    id             INTEGER PRIMARY KEY,
    msg_id         TEXT    NOT NULL,           -- the file's GrpHdr/MsgId
    stmt_id        TEXT    NOT NULL UNIQUE,    -- Stmt/Id
    currency       TEXT    NOT NULL,
    seq            INTEGER NOT NULL,           -- Stmt/ElctrncSeqNb, per currency
    opening_minor  INTEGER NOT NULL,
    closing_minor  INTEGER NOT NULL,
    entries        INTEGER NOT NULL,
    new_only       INTEGER NOT NULL CHECK (new_only = 0 OR new_only = 1),
    created_at     TEXT    NOT NULL,
    UNIQUE (currency, seq)
);
CREATE TABLE statement_payments (
    kind           TEXT    NOT NULL CHECK (kind = 'link' OR kind = 'qr'),
    payment_id     INTEGER NOT NULL,           -- links.id or qr_transactions.id
    statement_id   INTEGER REFERENCES statements(id),  -- NULL: written by a CSV export
    exported_at    TEXT    NOT NULL,
    PRIMARY KEY (kind, payment_id)
) WITHOUT ROWID;
