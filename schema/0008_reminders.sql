-- invoice-sync schema, version 8: reminders.
--
-- - `revisions.customer_type`: b2b | b2c from the export (NULL: the configured default);
--   a consumer's last reminder may be the statutory final notice.
-- - `reminders`: one row per (invoice, step) ever decided, `sent` (its mail queued in
--   the same transaction) or `skipped` (a later step was due at the same time). The
--   primary key is what makes a step go out once, whatever runs at the same time: a
--   second decision for the same step fails on it and its transaction (with its mail)
--   is rolled back.
-- - `invoices.next_reminder_on`: the local date an open invoice's next step may go, so
--   a cycle reads only the invoices that have one due (its partial index), never every
--   open invoice. Set when a link mail is sent and when a reminder is decided; cleared
--   by the triggers below when the invoice leaves `open` or gets a new revision (its
--   replacement mail sets it again).
-- - `reminder_ladder`: the ladder settings the stored dates were computed with; when
--   they change, the dates are computed again once.
-- - `outbox`: rebuilt to allow the kind `reminder` (SQLite cannot change a CHECK in
--   place) and to carry the step it announces; the runner turns foreign keys off around
--   it and checks them after.
ALTER TABLE revisions ADD COLUMN customer_type TEXT
    CHECK (customer_type IS NULL OR customer_type = 'b2b' OR customer_type = 'b2c');

CREATE TABLE outbox_v8 (
    id               INTEGER PRIMARY KEY,
    invoice_id       INTEGER NOT NULL REFERENCES invoices(id),
    revision         INTEGER NOT NULL,
    link_id          INTEGER NOT NULL REFERENCES links(id),
    kind             TEXT    NOT NULL
                     CHECK (kind = 'link' OR kind = 'replacement' OR kind = 'resend'
                            OR kind = 'reminder'),
    state            TEXT    NOT NULL
                     CHECK (state = 'queued' OR state = 'sending' OR state = 'sent'
                            OR state = 'failed' OR state = 'cancelled'),
    message_id       TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    last_error       TEXT,
    created_at       TEXT    NOT NULL,
    sent_at          TEXT,
    step             INTEGER,              -- kind 'reminder': the step (days from the due date)
    FOREIGN KEY (invoice_id, revision) REFERENCES revisions(invoice_id, revision),
    CHECK ((kind = 'reminder') = (step IS NOT NULL))
);
INSERT INTO outbox_v8 (id, invoice_id, revision, link_id, kind, state, message_id, attempts,
                       next_attempt_at, last_error, created_at, sent_at)
    SELECT id, invoice_id, revision, link_id, kind, state, message_id, attempts,
           next_attempt_at, last_error, created_at, sent_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v8 RENAME TO outbox;
CREATE INDEX outbox_by_invoice ON outbox(invoice_id);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbox_by_link ON outbox(link_id);
CREATE INDEX outbox_sending ON outbox(id) WHERE state = 'sending';

CREATE TABLE reminders (
    invoice_id   INTEGER NOT NULL REFERENCES invoices(id),
    step         INTEGER NOT NULL,       -- days relative to the due date
    revision     INTEGER NOT NULL,       -- the invoice's revision when it was decided
    outcome      TEXT    NOT NULL CHECK (outcome = 'sent' OR outcome = 'skipped'),
    kind         TEXT    CHECK (kind IS NULL OR kind = 'before_due' OR kind = 'overdue'
                                OR kind = 'final_notice'),
    outbox_id    INTEGER REFERENCES outbox(id),
    decided_at   TEXT    NOT NULL,
    PRIMARY KEY (invoice_id, step),
    CHECK ((outcome = 'sent') = (outbox_id IS NOT NULL AND kind IS NOT NULL))
) WITHOUT ROWID;

ALTER TABLE invoices ADD COLUMN next_reminder_on TEXT;   -- YYYY-MM-DD, local
CREATE INDEX invoices_reminder_due ON invoices(next_reminder_on)
    WHERE next_reminder_on IS NOT NULL;

CREATE TRIGGER invoices_reminders_stop AFTER UPDATE OF state, revision ON invoices
    WHEN NEW.next_reminder_on IS NOT NULL
     AND (NEW.state <> 'open' OR NEW.revision IS NOT OLD.revision)
BEGIN
    UPDATE invoices SET next_reminder_on = NULL WHERE id = NEW.id;
END;

CREATE TABLE reminder_ladder (
    only         INTEGER PRIMARY KEY CHECK (only = 1),
    settings     TEXT    NOT NULL
);
