-- invoice-sync schema, version 6: the cycle finds its work without reading history.
--
-- A database that has served for years holds a million settled invoices and a handful
-- of open ones; a cycle must cost what changed, not what was ever seen.
--
-- The create plan reads a work queue, `link_work`: the invoices whose need for a link may
-- have changed. It is written in the same transaction as the change, by the triggers
-- below, so nothing can change an invoice's need for a link without queueing it:
-- - an invoice whose state or current revision changes;
-- - an invoice one of whose links changes state or deactivation reason (a replaced
--   link confirmed inactive, a link that lapsed at its provisional expiry, …).
-- New invoices are not queued one by one (a B-tree insert per imported row would slow
-- a million-row import down): every invoice above `link_work_mark` is new to the plan,
-- which takes the open ones into the queue and moves the mark (invoices are never
-- deleted, so row ids only grow). The plan drops an entry once the invoice needs no
-- create, and keeps the ones whose create is still to come.
CREATE TABLE link_work (
    invoice_id  INTEGER PRIMARY KEY
);
CREATE TABLE link_work_mark (
    only        INTEGER PRIMARY KEY CHECK (only = 1),
    invoice_id  INTEGER NOT NULL       -- every invoice up to here was taken into the queue
);
INSERT INTO link_work SELECT id FROM invoices WHERE state = 'open';
INSERT INTO link_work_mark VALUES (1, coalesce((SELECT max(id) FROM invoices), 0));

CREATE TRIGGER invoices_queue_link_work AFTER UPDATE OF state, revision ON invoices
    WHEN NEW.state IS NOT OLD.state OR NEW.revision IS NOT OLD.revision
BEGIN
    INSERT OR IGNORE INTO link_work VALUES (NEW.id);
END;
CREATE TRIGGER links_queue_link_work AFTER UPDATE OF state, deactivation_reason ON links
    WHEN NEW.state IS NOT OLD.state OR NEW.deactivation_reason IS NOT OLD.deactivation_reason
BEGIN
    INSERT OR IGNORE INTO link_work VALUES (NEW.invoice_id);
END;

-- Crash recovery at the start of every cycle looks for interrupted requests and sends;
-- these partial indexes hold only those (normally none).
CREATE INDEX links_in_flight ON links(id) WHERE in_flight = 1;
CREATE INDEX qr_in_flight ON qr_transactions(id) WHERE in_flight = 1;
CREATE INDEX outbox_sending ON outbox(id) WHERE state = 'sending';
