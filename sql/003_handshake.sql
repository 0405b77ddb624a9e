-- 003_handshake: what the abuse-protection handshake of the webhook guideline agreed.
--
-- `outbox subscriptions add` sends OPTIONS with WebHook-Request-Origin (and
-- WebHook-Request-Rate when the operator asks for a rate) and stores a
-- subscription only when the target allows that origin; `--skip-handshake`
-- records that delivery was agreed out of band instead.

ALTER TABLE subscriptions
    -- 'handshake': the target allowed us (handshake_at says when);
    -- 'out-of-band': the operator says it was agreed otherwise (e.g. in a contract).
    ADD COLUMN agreement text NOT NULL DEFAULT 'out-of-band' CHECK (agreement IN ('handshake', 'out-of-band')),
    -- The rate asked for (requests per minute), if any.
    ADD COLUMN requested_rate integer CHECK (requested_rate > 0),
    -- WebHook-Allowed-Rate as answered: requests per minute, or '*' for no limit.
    ADD COLUMN allowed_rate text CHECK (allowed_rate ~ '^(\*|[0-9]+)$'),
    ADD CHECK ((agreement = 'handshake') = (handshake_at IS NOT NULL));
