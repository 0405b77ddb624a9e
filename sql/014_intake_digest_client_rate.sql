-- 014_intake_digest_client_rate: what `outbox serve` needs to tell a replay from a conflict, and to count
-- a client's request rate over all its processes.

-- intake_ids.digest: SHA-256 of the event as stored, normalised by jsonb (member order and white space
-- do not count; the event is already in its stored form: unset attributes left out, binary mode as its
-- JSON event format). A POST of a known (source, id) with the same digest is a replay (201, nothing
-- stored); with another digest it is a conflict (409, nothing stored). Existing keys get the digest of
-- their stored event; a key whose event is already gone keeps NULL, and a replay of it is taken as
-- identical (as every replay was before this migration) until `outbox purge` forgets the key.
ALTER TABLE intake_ids ADD COLUMN digest bytea;

UPDATE intake_ids k
   SET digest = sha256(convert_to(e.event::jsonb::text, 'UTF8'))
  FROM events e
 WHERE e.position = k.position AND e.enqueued_at = k.received_at;

-- intake_events calls this when a key it could not insert was committed by a concurrent statement
-- after its snapshot was taken (so the digest it would compare with was invisible to it): the whole
-- statement is undone, and the intake runs it again, now seeing that key.
CREATE FUNCTION intake_raced() RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'an intake key was taken in by a concurrent request; run the statement again'
        USING ERRCODE = 'serialization_failure';
END
$$;

-- client_rates: each API client's token bucket (OUTBOX_RATE_LIMIT per second, OUTBOX_RATE_BURST at
-- once), shared by every `outbox serve` process; one UPSERT per request (take_client_request).
-- UNLOGGED: no WAL, so its commit needs no WAL flush; a crash empties it, which only gives every
-- client a full bucket again. The row goes with its client.
CREATE UNLOGGED TABLE client_rates (
    client_id text             PRIMARY KEY REFERENCES api_clients (client_id) ON DELETE CASCADE,
    tokens    double precision NOT NULL,
    at        timestamptz      NOT NULL,
    taken     boolean          NOT NULL  -- whether the last request was let through
);
