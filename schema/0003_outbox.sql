-- invoice-sync schema, version 3: the mail outbox.
--
-- A mail row is written in the same transaction that records the link it announces, so
-- no link is left unmailed and no mail exists for an unrecorded link. Before a send the
-- row goes to 'sending' (committed); after the server accepts it, 'sent'. A crash in
-- between puts it back to 'queued': a duplicate can only come from a crash between the
-- server's acceptance and that record, and the Message-ID lets the receiver see it.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    invoice_id       INTEGER NOT NULL REFERENCES invoices(id),
    revision         INTEGER NOT NULL,
    link_id          INTEGER NOT NULL REFERENCES links(id),
    kind             TEXT    NOT NULL
                     CHECK (kind = 'link' OR kind = 'replacement' OR kind = 'resend'),
    state            TEXT    NOT NULL
                     CHECK (state = 'queued' OR state = 'sending' OR state = 'sent'
                            OR state = 'failed' OR state = 'cancelled'),
    message_id       TEXT,                 -- set when composed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,     -- RFC 3339 UTC
    last_error       TEXT,
    created_at       TEXT    NOT NULL,
    sent_at          TEXT,
    FOREIGN KEY (invoice_id, revision) REFERENCES revisions(invoice_id, revision)
);
CREATE INDEX outbox_by_invoice ON outbox(invoice_id);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbox_by_link ON outbox(link_id);
