-- invoice-sync schema, version 5: provisional expiry.
--
-- A link is created with an expiry_date a few hours ahead (cm.provisional_expiry_hours),
-- so that a link whose create answer was lost (timeout, cut connection, kill) stops being
-- payable by itself. Once the answer is recorded, a PATCH gives it its real expiry; until
-- then `provisional = 1` and no mail may announce it.
ALTER TABLE links ADD COLUMN provisional INTEGER NOT NULL DEFAULT 0;
CREATE INDEX links_provisional ON links(id) WHERE provisional = 1 AND state = 'active';
