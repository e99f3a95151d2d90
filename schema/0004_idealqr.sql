-- invoice-sync schema, version 4: iDEAL QR transactions.
--
-- One transaction per EUR invoice revision that has a payment link. As for links, the
-- intent ('creating', in_flight = 1) is committed before the create request. The iDEAL
-- QR API has no cancel call: a transaction whose invoice was replaced or settled is
-- 'withdrawn' here (no longer shown or mailed) but followed until CM reports a final
-- status, because a customer can still pay it until it expires.
CREATE TABLE qr_transactions (
    id               INTEGER PRIMARY KEY,
    invoice_id       INTEGER NOT NULL REFERENCES invoices(id),
    revision         INTEGER NOT NULL,
    link_id          INTEGER NOT NULL REFERENCES links(id),
    purchase_id      TEXT    NOT NULL UNIQUE,
    state            TEXT    NOT NULL
                     CHECK (state = 'creating' OR state = 'open' OR state = 'success'
                            OR state = 'cancelled' OR state = 'expired' OR state = 'failure'
                            OR state = 'refused' OR state = 'skipped'),
    withdrawn        INTEGER NOT NULL DEFAULT 0,   -- its invoice revision is no longer current/open
    in_flight        INTEGER NOT NULL DEFAULT 0,
    possible_orphan  INTEGER NOT NULL DEFAULT 0,
    cm_id            TEXT UNIQUE,                  -- CM's transaction id
    qr_url           TEXT,
    amount_cents     INTEGER NOT NULL,
    expires_at       TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    status_checks    INTEGER NOT NULL DEFAULT 0,
    next_check_at    TEXT,
    paid_at          TEXT,
    created_at       TEXT    NOT NULL,
    FOREIGN KEY (invoice_id, revision) REFERENCES revisions(invoice_id, revision)
);
CREATE INDEX qr_by_invoice ON qr_transactions(invoice_id, revision);
CREATE INDEX qr_due_for_check ON qr_transactions(next_check_at) WHERE state = 'open';

-- A payment seen twice for one invoice (link and QR): the merchant must refund one.
ALTER TABLE invoices ADD COLUMN double_payment INTEGER NOT NULL DEFAULT 0;
