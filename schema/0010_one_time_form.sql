-- Every recorded time in one text form, UTC to the second with a `Z`
-- (`2026-12-07T10:00:00Z`), so that stored times compare as their texts do. Earlier
-- versions wrote a link's provisional expiry with `+00:00`, and a statement's times with
-- the local offset: those are rewritten as the same instants. strftime reads any
-- offset; a value it cannot read is left as it was (the program then refuses it by name).
UPDATE links SET expiry_date = strftime('%Y-%m-%dT%H:%M:%SZ', expiry_date)
 WHERE expiry_date IS NOT NULL AND expiry_date NOT LIKE '%Z'
   AND strftime('%Y-%m-%dT%H:%M:%SZ', expiry_date) IS NOT NULL;
UPDATE statements SET created_at = strftime('%Y-%m-%dT%H:%M:%SZ', created_at)
 WHERE created_at NOT LIKE '%Z' AND strftime('%Y-%m-%dT%H:%M:%SZ', created_at) IS NOT NULL;
UPDATE statement_payments SET exported_at = strftime('%Y-%m-%dT%H:%M:%SZ', exported_at)
 WHERE exported_at NOT LIKE '%Z' AND strftime('%Y-%m-%dT%H:%M:%SZ', exported_at) IS NOT NULL;
