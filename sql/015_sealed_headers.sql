-- 015_sealed_headers: header values are secrets, and listings read no secret.
--
-- 1. The Subscriptions API's `protocolsettings.headers` were stored in clear (`headers`, 008). Their
--    values may be credentials (X-Api-Key …), so they now live in `secrets`, with the other
--    secrets: sealed with OUTBOX_SECRET_KEY when it is set. Only the names stay in clear
--    (`header_names`), for listings.
-- 2. What listings show of the secrets is kept in clear beside them when they are written, so a
--    list or a read opens no secret (only delivery and verification do): `auth_hint` (the scheme
--    and at most the last 4 characters of `auth`, as the CLI has always shown it) and
--    `signing_secret_count`.
--
-- The key is known only to the processes (OUTBOX_SECRET_KEY), not to SQL, so this file cannot
-- seal the existing values. It renames the column to `unsealed_headers` and leaves it set on every
-- row written before it (the mark of a row still to be completed); `outbox migrate` (right after
-- applying this file), `outbox run` at start, `outbox secrets rotate` and any update of the row
-- move the values into `secrets`, fill in the hints and set `unsealed_headers` to NULL. Rows
-- written from now on never set it. Until then the worker still sends those headers.
ALTER TABLE subscriptions RENAME COLUMN headers TO unsealed_headers;
ALTER TABLE subscriptions
    ALTER COLUMN unsealed_headers DROP NOT NULL,
    ALTER COLUMN unsealed_headers DROP DEFAULT,
    ADD COLUMN header_names text[] NOT NULL DEFAULT '{}',
    ADD COLUMN auth_hint text,
    ADD COLUMN signing_secret_count integer NOT NULL DEFAULT 0 CHECK (signing_secret_count BETWEEN 0 AND 2);

UPDATE subscriptions SET header_names = ARRAY(SELECT jsonb_object_keys(unsealed_headers));
-- Nothing to seal and no secret to describe: already complete.
UPDATE subscriptions SET unsealed_headers = NULL WHERE unsealed_headers = '{}' AND secrets IS NULL;
