-- 009_partitions: events, deliveries and delivery_attempts partitioned, so retention drops whole
-- tables instead of deleting rows on the hot path.
--
--   events             PARTITION BY RANGE (enqueued_at): a leaf per interval + events_default
--   deliveries         PARTITION BY LIST (status):
--     deliveries_live        ('blocked', 'pending', 'delivering'): one plain table with the claim's
--                            partial indexes, exactly as before. A query that names a live status is
--                            pruned to it when it is planned, so the claim's plan is the old one.
--     deliveries_delivered   ('delivered') PARTITION BY RANGE (finished_at): a leaf per interval + default
--     deliveries_failed      ('failed')    PARTITION BY RANGE (finished_at): a leaf per interval + default
--   delivery_attempts  PARTITION BY RANGE (attempted_at): a leaf per interval + default
--
-- A delivery that is delivered or failed moves (the recorder's UPDATE: a DELETE from deliveries_live
-- and an INSERT into the final leaf) into a leaf that is only ever inserted into: no dead tuples, no
-- vacuum work, and every row in it is final by construction, so `outbox purge` drops the whole leaf
-- once its range has ended before the retention cutoff. A pending delivery can never be in one.
--
-- Keys: a primary key on a partitioned table must hold the partition key, so `deliveries` and
-- `delivery_attempts` have none on the parent; `id` is the primary key of each leaf and globally
-- unique by its sequence (identity columns on partitioned tables need PostgreSQL 17: the sequences
-- continue from the old identities). Nothing can reference a partitioned table without its partition
-- key, so the foreign keys deliveries → events and attempts → deliveries are gone: the code keeps
-- them (purge never drops an event a kept delivery refers to). Deliveries carry their event's
-- `enqueued_at`, so a join to events names the leaf. UNIQUE (event_position, subscription_id) holds
-- in deliveries_live, where the router inserts (an event is routed once, in the transaction that
-- marks it routed).
--
-- Leaves are named by their start (UTC): events_p20261129t0000. `ensure_partitions(ahead, step)`
-- creates them from the last bound up to now() + ahead; the workers call it at start and every ten
-- minutes (OUTBOX_PARTITION_INTERVAL). A row outside every leaf goes to the DEFAULT leaf and is
-- never refused. This migration puts the existing rows in one leaf per calendar month (not one per
-- day of history) and creates today's and the next days' leaves.

-- ==== 1. The old tables step aside (their rows are copied below, then they are dropped) ====
ALTER TABLE events RENAME TO events_v8;
ALTER TABLE deliveries RENAME TO deliveries_v8;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_v8;
ALTER SEQUENCE events_position_seq RENAME TO events_v8_position_seq;
ALTER SEQUENCE deliveries_id_seq RENAME TO deliveries_v8_id_seq;
ALTER SEQUENCE delivery_attempts_id_seq RENAME TO delivery_attempts_v8_id_seq;
-- Index names live in the schema's namespace: the new tables take them over.
ALTER TABLE deliveries_v8 DROP CONSTRAINT deliveries_event_position_fkey;
ALTER TABLE delivery_attempts_v8 DROP CONSTRAINT delivery_attempts_delivery_id_fkey;
ALTER TABLE delivery_attempts_v8 DROP CONSTRAINT delivery_attempts_pkey;
ALTER TABLE deliveries_v8 DROP CONSTRAINT deliveries_pkey;
ALTER TABLE deliveries_v8 DROP CONSTRAINT deliveries_event_position_subscription_id_key;
ALTER TABLE events_v8 DROP CONSTRAINT events_pkey;
DROP INDEX events_unrouted_idx, deliveries_due_idx, deliveries_leased_idx, deliveries_ordering_idx,
           deliveries_subscription_status_idx, delivery_attempts_delivery_idx;

-- ==== 2. The new tables ====
CREATE SEQUENCE events_position_seq AS bigint;
SELECT setval('events_position_seq', last_value, is_called) FROM events_v8_position_seq;

-- One row per enqueued CloudEvent (see 001_initial.sql); hosts only INSERT here.
CREATE TABLE events (
    position    bigint      NOT NULL DEFAULT nextval('events_position_seq'),
    event       json        NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    routed_at   timestamptz,
    CONSTRAINT events_pkey PRIMARY KEY (position, enqueued_at)
) PARTITION BY RANGE (enqueued_at);
ALTER SEQUENCE events_position_seq OWNED BY events.position;
-- Per leaf: only unrouted rows, so the router's scan is as small as the backlog.
CREATE INDEX events_unrouted_idx ON events (position) WHERE routed_at IS NULL;
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE SEQUENCE deliveries_id_seq AS bigint;
SELECT setval('deliveries_id_seq', last_value, is_called) FROM deliveries_v8_id_seq;

-- One delivery per (event, matching subscription); the states are described in 001_initial.sql.
CREATE TABLE deliveries (
    id                bigint      NOT NULL DEFAULT nextval('deliveries_id_seq'),
    event_position    bigint      NOT NULL,
    -- The event's enqueued_at, copied by the router: the events leaf the event is in.
    event_enqueued_at timestamptz NOT NULL,
    subscription_id   uuid        NOT NULL,
    status            text        NOT NULL DEFAULT 'pending',
    ordering_key      text,
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    leased_until      timestamptz,
    claim_token       uuid,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    -- When it became delivered or failed (the recorder); NULL while live. The final leaves' key.
    finished_at       timestamptz,
    CONSTRAINT deliveries_subscription_id_fkey
        FOREIGN KEY (subscription_id) REFERENCES subscriptions (id) ON DELETE CASCADE,
    CONSTRAINT deliveries_status_check
        CHECK (status IN ('blocked', 'pending', 'delivering', 'delivered', 'failed')),
    CONSTRAINT deliveries_attempts_check CHECK (attempts >= 0),
    CONSTRAINT deliveries_delivered_at_check CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    CONSTRAINT deliveries_claim_check
        CHECK ((status = 'delivering') = (claim_token IS NOT NULL AND leased_until IS NOT NULL)),
    CONSTRAINT deliveries_finished_at_check
        CHECK ((status IN ('delivered', 'failed')) = (finished_at IS NOT NULL)
               AND (status <> 'delivered' OR finished_at = delivered_at))
) PARTITION BY LIST (status);
ALTER SEQUENCE deliveries_id_seq OWNED BY deliveries.id;

-- Status per subscription, `outbox retry --subscription`, and the subscription's ON DELETE CASCADE.
CREATE INDEX deliveries_subscription_status_idx ON deliveries (subscription_id, status);

-- The live deliveries: the only table the claim, the router and the recorder's fence read.
CREATE TABLE deliveries_live PARTITION OF deliveries (
    CONSTRAINT deliveries_live_pkey PRIMARY KEY (id),
    -- Routing creates each delivery exactly once, even with several routers.
    CONSTRAINT deliveries_live_event_subscription_key UNIQUE (event_position, subscription_id)
) FOR VALUES IN ('blocked', 'pending', 'delivering');

-- The claim's indexes, as in 001_initial.sql, on the live leaf only.
CREATE INDEX deliveries_due_idx ON deliveries_live (subscription_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX deliveries_leased_idx ON deliveries_live (leased_until) WHERE status = 'delivering';
CREATE INDEX deliveries_ordering_idx ON deliveries_live (subscription_id, ordering_key, id)
    WHERE status IN ('blocked', 'pending', 'delivering') AND ordering_key IS NOT NULL;

CREATE TABLE deliveries_delivered PARTITION OF deliveries FOR VALUES IN ('delivered') PARTITION BY RANGE (finished_at);
CREATE TABLE deliveries_failed PARTITION OF deliveries FOR VALUES IN ('failed') PARTITION BY RANGE (finished_at);
-- Which events kept deliveries still need (purge): final rows are written in time order and their
-- events were enqueued shortly before, so a BRIN index of a few pages answers "event older than X"
-- by skipping nearly every block.
CREATE INDEX deliveries_delivered_event_idx ON deliveries_delivered USING brin (event_enqueued_at);
CREATE INDEX deliveries_failed_event_idx ON deliveries_failed USING brin (event_enqueued_at);
CREATE TABLE deliveries_delivered_default PARTITION OF deliveries_delivered (PRIMARY KEY (id)) DEFAULT;
CREATE TABLE deliveries_failed_default PARTITION OF deliveries_failed (PRIMARY KEY (id)) DEFAULT;

CREATE SEQUENCE delivery_attempts_id_seq AS bigint;
SELECT setval('delivery_attempts_id_seq', last_value, is_called) FROM delivery_attempts_v8_id_seq;

-- One row per HTTP attempt; insert-only. Kept as long as the longest retention (failed deliveries').
CREATE TABLE delivery_attempts (
    id            bigint      NOT NULL DEFAULT nextval('delivery_attempts_id_seq'),
    delivery_id   bigint      NOT NULL,
    attempted_at  timestamptz NOT NULL,
    duration_ms   double precision NOT NULL CONSTRAINT delivery_attempts_duration_ms_check CHECK (duration_ms >= 0),
    status_code   integer,
    error         text,
    response_body text CONSTRAINT delivery_attempts_response_body_check CHECK (octet_length(response_body) <= 4096),
    CONSTRAINT delivery_attempts_check CHECK ((status_code IS NULL) <> (error IS NULL))
) PARTITION BY RANGE (attempted_at);
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id);
CREATE TABLE delivery_attempts_default PARTITION OF delivery_attempts (PRIMARY KEY (id)) DEFAULT;

-- ==== 3. Leaves: listing, creating, dropping ====

-- The leaves of one of the time-partitioned tables with their bounds (NULL for the DEFAULT leaf).
-- ISO dates: the bounds are printed and read back in this function, whatever the caller's DateStyle.
CREATE FUNCTION partition_leaves(parent text)
RETURNS TABLE (leaf regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path FROM CURRENT
SET datestyle TO 'ISO, YMD'
AS $$
    SELECT c.oid::regclass,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']*)''\)'))[1]::timestamptz,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']*)''\)'))[1]::timestamptz
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = parent::regclass
     ORDER BY 2 NULLS FIRST
$$;

-- Creates one leaf [start, stop) of `parent` without blocking its writers: a new table attached
-- (ATTACH takes SHARE UPDATE EXCLUSIVE on the parent; CREATE TABLE … PARTITION OF would take ACCESS
-- EXCLUSIVE). Leaves of deliveries and attempts get their primary key on `id`. Returns the name.
CREATE FUNCTION create_partition(parent text, start timestamptz, stop timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET datestyle TO 'ISO, YMD'
AS $$
DECLARE
    leaf text := parent || '_p' || to_char(start AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MI');
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', leaf, parent);
    IF parent <> 'events' THEN
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id)', leaf);
    END IF;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, leaf, start, stop);
    RETURN leaf;
END
$$;

-- Creates the missing leaves of every time-partitioned table, `step` wide, from the last bound up to
-- now() + ahead; one line per leaf created or skipped. Idempotent, and one caller at a time (an
-- advisory lock): several workers may run it at once. New leaves continue from the last bound, so a
-- changed step never makes ranges overlap; after a long stop the leaves start again at the current
-- step (the gap is the DEFAULT leaf's: never thousands of empty leaves). A range the DEFAULT leaf
-- already holds rows of is skipped with a warning, not an error: those rows stay there and purge
-- deletes them row by row.
CREATE FUNCTION ensure_partitions(ahead interval, step interval)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    parent  text;
    key     text;
    last    timestamptz;
    start   timestamptz;
    stop    timestamptz;
    busy    boolean;
BEGIN
    IF step < interval '5 minutes' OR step > interval '31 days' OR date_part('month', step) <> 0 THEN
        RAISE EXCEPTION 'partition interval: must be from 5 minutes up to 31 days, got %', step
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('nlgov-outbox partitions ' || current_schema(), 0));
    FOR parent, key IN VALUES ('events', 'enqueued_at'), ('deliveries_delivered', 'finished_at'),
                              ('deliveries_failed', 'finished_at'), ('delivery_attempts', 'attempted_at') LOOP
        SELECT max(upper_bound) INTO last FROM partition_leaves(parent);
        start := date_bin(step, now(), coalesce(last, timestamptz '2000-01-01 00:00:00+00'));
        IF last IS NOT NULL AND last > start THEN
            start := last;
        END IF;
        WHILE start < now() + ahead LOOP
            stop := start + step;
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)',
                           parent || '_default', key, key)
               INTO busy USING start, stop;
            IF busy THEN
                RAISE WARNING 'partition of % from % not created: its DEFAULT leaf holds rows of that range',
                    parent, start;
                RETURN NEXT format('skipped %s from %s: %s_default holds rows of that range', parent, start, parent);
            ELSE
                RETURN NEXT 'created ' || create_partition(parent, start, stop);
            END IF;
            start := stop;
        END LOOP;
    END LOOP;
END
$$;

-- Drops a final leaf (delivered or failed deliveries, attempts) whose range ended before its cutoff;
-- `outbox purge`. Refuses anything that is not such a leaf (nor a DEFAULT leaf).
CREATE FUNCTION drop_partition(leaf regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_inherits i
                    WHERE i.inhrelid = leaf
                      AND i.inhparent IN ('deliveries_delivered'::regclass, 'deliveries_failed'::regclass,
                                          'delivery_attempts'::regclass))
       OR (SELECT relpartbound IS NULL OR pg_get_expr(relpartbound, oid) = 'DEFAULT' FROM pg_class WHERE oid = leaf) THEN
        RAISE EXCEPTION '%: not a ranged leaf of deliveries_delivered, deliveries_failed or delivery_attempts', leaf;
    END IF;
    EXECUTE format('DROP TABLE %s', leaf);
END
$$;

-- Retires an events leaf whose range ended before the events' cutoff, in one transaction: the events
-- still needed (unrouted, or referenced by any delivery that is kept) are copied back into `events`,
-- where they land in events_default, and the leaf is dropped. What is needed is gathered before the
-- ACCESS EXCLUSIVE lock that DETACH takes (enqueue waits on it), so the lock is held only for the
-- copy of those few rows; under it only the unrouted rows are read again (an event routed meanwhile
-- was unrouted when they were first read, so it is kept either way). Returns the events kept.
CREATE FUNCTION retire_events_partition(leaf regclass, OUT kept bigint)
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
    EXECUTE format('INSERT INTO events (position, event, enqueued_at, routed_at)
                    SELECT l.position, l.event, l.enqueued_at, l.routed_at FROM %s l
                     WHERE l.position IN (SELECT position FROM retire_needed)', leaf);
    GET DIAGNOSTICS kept = ROW_COUNT;
    EXECUTE format('DROP TABLE %s', leaf);
    DROP TABLE retire_needed;
END
$$;

-- ==== 4. The existing rows: a leaf per calendar month of history, then today's leaves ====
DO $convert$
DECLARE
    parent text;
    oldest timestamptz;
    bound  timestamptz;
    today  timestamptz := date_bin(interval '1 day', now(), timestamptz '2000-01-01 00:00:00+00');
BEGIN
    FOR parent, oldest IN
        SELECT 'events', min(enqueued_at) FROM events_v8
        UNION ALL SELECT 'deliveries_delivered', min(delivered_at) FROM deliveries_v8 WHERE status = 'delivered'
        UNION ALL SELECT 'deliveries_failed', min(updated_at) FROM deliveries_v8 WHERE status = 'failed'
        UNION ALL SELECT 'delivery_attempts', min(attempted_at) FROM delivery_attempts_v8
    LOOP
        CONTINUE WHEN oldest IS NULL OR oldest >= today;
        bound := date_trunc('month', oldest AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        WHILE bound < today LOOP
            PERFORM create_partition(parent, bound,
                                     least(today, (date_trunc('month', bound AT TIME ZONE 'UTC')
                                                   + interval '1 month') AT TIME ZONE 'UTC'));
            bound := (date_trunc('month', bound AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        END LOOP;
    END LOOP;
END
$convert$;
SELECT count(*) FROM ensure_partitions(interval '2 days', interval '1 day');

INSERT INTO events (position, event, enqueued_at, routed_at)
SELECT position, event, enqueued_at, routed_at FROM events_v8;

-- A failed delivery's finished_at is its last change (when it failed, unless retried and failed again).
INSERT INTO deliveries (id, event_position, event_enqueued_at, subscription_id, status, ordering_key, attempts,
                        next_attempt_at, leased_until, claim_token, last_status_code, last_error, created_at,
                        updated_at, delivered_at, finished_at)
SELECT d.id, d.event_position, e.enqueued_at, d.subscription_id, d.status, d.ordering_key, d.attempts,
       d.next_attempt_at, d.leased_until, d.claim_token, d.last_status_code, d.last_error, d.created_at,
       d.updated_at, d.delivered_at,
       CASE d.status WHEN 'delivered' THEN d.delivered_at WHEN 'failed' THEN d.updated_at END
  FROM deliveries_v8 d
  JOIN events_v8 e ON e.position = d.event_position;  -- the old foreign key: every delivery has its event

INSERT INTO delivery_attempts (id, delivery_id, attempted_at, duration_ms, status_code, error, response_body)
SELECT id, delivery_id, attempted_at, duration_ms, status_code, error, response_body FROM delivery_attempts_v8;

DROP TABLE delivery_attempts_v8, deliveries_v8, events_v8;
ANALYZE events, deliveries, delivery_attempts;
