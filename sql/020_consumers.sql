-- 020_consumers: inbound webhooks (OpenConnector's Consumers): external systems call
-- `outbox serve` at /hooks/{endpoint}; the request is verified, mapped to a CloudEvent and taken in.

-- mappings: JSONata expressions that turn a request ({"body", "headers"}) into a CloudEvent
-- (worker/consumers/mapping.py). A mapping is versioned: every change adds a version, the old ones
-- stay (a failure names the version it failed with), and consumers use the current one.
CREATE TABLE mappings (
    id              text        PRIMARY KEY CHECK (id ~ '^[a-z0-9]+([-_.][a-z0-9]+)*$' AND length(id) <= 100),
    description     text,
    current_version integer     NOT NULL DEFAULT 1 CHECK (current_version > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mapping_versions (
    mapping_id text        NOT NULL REFERENCES mappings (id) ON DELETE CASCADE,
    version    integer     NOT NULL CHECK (version > 0),
    expression text        NOT NULL CHECK (expression <> ''),
    -- The request headers the expression may read (lowercase names); no others reach it.
    headers    text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping_id, version)
);

-- consumers: the seed's fields (name, endpoint, mappingId, targetType, targetId, isEnabled) and what
-- verification and the limits need. targetType 'event-type': targetId is an event catalogue slug, the
-- mapped event is validated against that entry and routed to every matching subscription; 'source':
-- targetId is one subscription's id, and the event goes to that subscription only
-- (events.target_subscription). Neither is a foreign key: removing a subscription or a catalogue
-- entry must not depend on consumers; a consumer whose target is gone answers 503 and keeps the request.
CREATE TABLE consumers (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  text        NOT NULL UNIQUE CHECK (name ~ '^[^[:cntrl:]]{1,100}$' AND name = btrim(name)),
    endpoint              text        NOT NULL UNIQUE CHECK (endpoint ~ '^[a-z0-9]+([-_.][a-z0-9]+)*$' AND length(endpoint) <= 100),
    mapping_id            text        REFERENCES mappings (id) ON DELETE RESTRICT,
    target_type           text        NOT NULL CHECK (target_type IN ('event-type', 'source')),
    target_id             text        NOT NULL CHECK (target_id <> ''),
    is_enabled            boolean     NOT NULL DEFAULT true,
    -- The verification config without its secrets ({"method": …, …}: worker/consumers/verification.py);
    -- the secrets are sealed like a subscription's (worker/store/secret_box.py).
    verification          jsonb       NOT NULL CHECK (verification ? 'method'),
    secrets               text,
    secrets_encrypted     boolean     NOT NULL DEFAULT false,
    max_body_bytes        integer     NOT NULL CHECK (max_body_bytes BETWEEN 1 AND 10485760),
    rate_limit            double precision CHECK (rate_limit > 0),  -- requests per second; NULL: none
    rate_burst            integer     CHECK (rate_burst > 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_burst IS NULL))
);

CREATE INDEX consumers_mapping_idx ON consumers (mapping_id);

-- consumer_receipts: the webhook ids (Standard Webhooks' webhook-id) a consumer has taken in, written in
-- the statement that stores the event: a request with a recorded id is a replay (the sender's retry),
-- answered as a success with nothing stored again. Kept at least twice the tolerance window (beyond
-- it the timestamp check refuses the request): `outbox purge` and `outbox serve` delete older ones.
CREATE TABLE consumer_receipts (
    consumer_id  uuid        NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    webhook_id   text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    event_source text        NOT NULL,
    event_id     text        NOT NULL,
    PRIMARY KEY (consumer_id, webhook_id)
);

CREATE INDEX consumer_receipts_received_idx ON consumer_receipts (received_at);

-- consumer_failures: requests that passed verification but not the mapping, the profile or the
-- catalogue (answered 422), or whose target was gone (503), kept for the operator with what the mapping
-- may read (the body and the mapping's chosen headers; never the verification headers) until replayed
-- or removed. A replay maps the body again with the mapping's current version.
CREATE TABLE consumer_failures (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer_id     uuid        NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    received_at     timestamptz NOT NULL DEFAULT now(),
    code            text        NOT NULL,
    problems        jsonb       NOT NULL,  -- [{"name", "code", "reason"}]
    mapping_version integer,
    body            bytea       NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '{}',
    webhook_id      text,
    replayed_at     timestamptz,
    event_source    text,       -- the event a replay stored
    event_id        text,
    CHECK ((replayed_at IS NULL) = (event_id IS NULL))
);

CREATE INDEX consumer_failures_consumer_idx ON consumer_failures (consumer_id, id DESC);

-- consumer_rates: each consumer's token bucket (rate_limit per second, rate_burst at once), shared by
-- every `outbox serve` process; UNLOGGED as client_rates (sql/014): a crash only refills the buckets.
CREATE UNLOGGED TABLE consumer_rates (
    consumer_id uuid             PRIMARY KEY REFERENCES consumers (id) ON DELETE CASCADE,
    tokens      double precision NOT NULL,
    at          timestamptz      NOT NULL,
    taken       boolean          NOT NULL  -- whether the last request was let through
);

-- An event for one subscription only (a 'source' consumer's): the router routes it to that subscription
-- whatever its filters say, and to no other. NULL for every other event. Adding a nullable column
-- without a default rewrites nothing.
ALTER TABLE events ADD COLUMN target_subscription uuid;

-- retire_events_partition (009) copies the events still needed back into `events`: now with their target,
-- or an unrouted targeted event would go to every matching subscription.
CREATE OR REPLACE FUNCTION retire_events_partition(leaf regclass, OUT kept bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    low  timestamptz;
    high timestamptz;
BEGIN
    SELECT p.lower_bound, p.upper_bound INTO low, high FROM partition_leaves('events') p WHERE p.leaf = $1;
    IF high IS NULL THEN
        RAISE EXCEPTION '%: not a ranged leaf of events', leaf;
    END IF;
    CREATE TEMP TABLE retire_needed (position bigint) ON COMMIT DROP;
    EXECUTE format('INSERT INTO retire_needed SELECT position FROM %s WHERE routed_at IS NULL', leaf);
    INSERT INTO retire_needed
    SELECT event_position FROM deliveries WHERE event_enqueued_at >= low AND event_enqueued_at < high;
    ANALYZE retire_needed;
    EXECUTE format('ALTER TABLE events DETACH PARTITION %s', leaf);
    EXECUTE format('INSERT INTO retire_needed SELECT position FROM %s WHERE routed_at IS NULL', leaf);
    EXECUTE format('INSERT INTO events (position, event, enqueued_at, routed_at, target_subscription)
                    SELECT l.position, l.event, l.enqueued_at, l.routed_at, l.target_subscription FROM %s l
                     WHERE l.position IN (SELECT position FROM retire_needed)', leaf);
    GET DIAGNOSTICS kept = ROW_COUNT;
    EXECUTE format('DROP TABLE %s', leaf);
    DROP TABLE retire_needed;
END
$$;

-- The console's audit trail also names consumers (enable, disable, replay).
ALTER TABLE console_audit DROP CONSTRAINT console_audit_object_kind_check;
ALTER TABLE console_audit ADD CONSTRAINT console_audit_object_kind_check
    CHECK (object_kind IN ('subscription', 'delivery', 'deliveries', 'operator', 'consumer'));
