-- invoice-sync schema, version 2: payment links.
--
-- A link row is written BEFORE its create request is sent (the intent, state 'creating',
-- in_flight = 1), so that a crash between the request and the record of its answer is
-- found on the next run and reported as a possible orphan at CM, never silently repeated
-- or mailed twice.
CREATE TABLE links (
    id                  INTEGER PRIMARY KEY,
    invoice_id          INTEGER NOT NULL REFERENCES invoices(id),
    revision            INTEGER NOT NULL,
    merchant_reference  TEXT    NOT NULL UNIQUE,
    state               TEXT    NOT NULL
                        CHECK ((state = 'creating' OR state = 'active' OR state = 'deactivating' OR state = 'inactive' OR state = 'paid' OR state = 'failed')),
    in_flight           INTEGER NOT NULL DEFAULT 0,  -- 1 while a create request may be outstanding
    possible_orphan     INTEGER NOT NULL DEFAULT 0,  -- CM may hold an unrecorded link for this intent
    link_ref            TEXT UNIQUE,                 -- CM's `ref`
    uri                 TEXT,
    amount_minor        INTEGER NOT NULL,
    currency            TEXT    NOT NULL,
    expiry_date         TEXT,                        -- ISO 8601 as sent, NULL: no expiry
    cm_status           TEXT,                        -- CM's payment status: open | paid
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    created_at          TEXT    NOT NULL,
    activated_at        TEXT,
    deactivated_at      TEXT,
    deactivation_reason TEXT,
    -- payment status follow-up: checked often while new, rarely when old
    status_checks       INTEGER NOT NULL DEFAULT 0,
    last_checked_at     TEXT,
    next_check_at       TEXT,                        -- RFC 3339 UTC; NULL: not followed
    paid_at             TEXT,
    FOREIGN KEY (invoice_id, revision) REFERENCES revisions(invoice_id, revision)
);
CREATE INDEX links_by_invoice ON links(invoice_id, revision);
CREATE INDEX links_by_state ON links(state) WHERE (state = 'creating' OR state = 'active' OR state = 'deactivating');
CREATE INDEX links_due_for_check ON links(next_check_at) WHERE state = 'active';
-- At most one live link per invoice: a replacement is created only after the old link
-- is deactivated, and the database refuses anything else.
CREATE UNIQUE INDEX links_one_live_per_invoice ON links(invoice_id)
    WHERE (state = 'creating' OR state = 'active' OR state = 'deactivating');
