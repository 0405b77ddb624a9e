-- Named queries, loaded by outbox/_sql.py. Each starts with a `-- name: NAME`
-- line and a comment saying what it is for. `{schema}` is the outbox schema,
-- filled in as a quoted identifier; values are always bind parameters.

-- name: insert_event
-- One event, in the caller's transaction. If a worker is idle, pg_notify
-- wakes it at commit (notifications of one transaction fold into one); busy
-- workers poll, and then the host commits without the NOTIFY's global lock.
WITH ins AS (
    INSERT INTO {schema}.events (event) VALUES (%s) RETURNING position
)
SELECT ins.position,
       (SELECT pg_notify(%s, '') WHERE EXISTS (SELECT 1 FROM {schema}.idle_workers))
  FROM ins;

-- name: insert_events
-- A batch in one statement. Binary array parameters (%b): psycopg's
-- text-format arrays escape every element and are several times slower.
-- unnest yields the elements in array order, so positions follow the input.
WITH ins AS (
    INSERT INTO {schema}.events (event)
    SELECT unnest(%b::text[])::json
    RETURNING position
)
SELECT ins.position,
       (SELECT pg_notify(%s, '') WHERE EXISTS (SELECT 1 FROM {schema}.idle_workers))
  FROM ins;

-- name: count_events
-- `outbox status`: all events, and those the router has not handled yet.
SELECT count(*) AS total, count(*) FILTER (WHERE routed_at IS NULL) AS unrouted FROM {schema}.events;

-- name: count_deliveries
-- `outbox status`: deliveries per state.
SELECT status, count(*) AS n FROM {schema}.deliveries GROUP BY status;

-- name: insert_subscription
-- `outbox subscriptions add`.
INSERT INTO {schema}.subscriptions
    (callback_url, auth, kanalen, types, content_mode, ordering_key, allow_insecure, handshake_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id;

-- name: list_subscriptions
-- `outbox subscriptions list`, and the router's view of who wants what.
SELECT id, callback_url, auth, kanalen, types, content_mode, status, paused_reason, ordering_key,
       allow_insecure, handshake_at, created_at, updated_at
  FROM {schema}.subscriptions
 ORDER BY created_at, id;

-- name: get_subscription
-- `outbox subscriptions show ID`.
SELECT id, callback_url, auth, kanalen, types, content_mode, status, paused_reason, ordering_key,
       allow_insecure, handshake_at, created_at, updated_at
  FROM {schema}.subscriptions
 WHERE id = %s;

-- name: set_subscription_status
-- pause (with a reason) / resume (reason NULL).
UPDATE {schema}.subscriptions
   SET status = %s, paused_reason = %s, updated_at = now()
 WHERE id = %s
RETURNING id;

-- name: delete_subscription
-- `outbox subscriptions remove ID`: its deliveries and attempts go with it.
DELETE FROM {schema}.subscriptions WHERE id = %s RETURNING id;

-- name: migrate_lock
-- Serialises concurrent `outbox migrate` runs on one schema (session-level lock).
SELECT pg_advisory_lock(hashtextextended(%s, 0));

-- name: migrate_unlock
-- Releases migrate_lock.
SELECT pg_advisory_unlock(hashtextextended(%s, 0));

-- name: create_schema
-- The outbox's own schema, so it never collides with the host's tables.
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: create_migrations_table
-- Which migration files have been applied, and their checksum then.
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
-- The applied migrations, in order.
SELECT version, name, checksum FROM {schema}.schema_migrations ORDER BY version;

-- name: set_migration_search_path
-- Migration files use unqualified names: they land in the outbox schema.
SET LOCAL search_path TO {schema};

-- name: record_migration
-- Marks one migration file as applied.
INSERT INTO {schema}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s);

-- name: subscription_delivery_counts
-- `outbox status`: per subscription, deliveries waiting, done and failed.
SELECT s.id, s.callback_url, s.status,
       count(d.id) FILTER (WHERE d.status IN ('pending', 'delivering')) AS pending,
       count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(d.id) FILTER (WHERE d.status = 'failed') AS failed
  FROM {schema}.subscriptions s
  LEFT JOIN {schema}.deliveries d ON d.subscription_id = s.id
 GROUP BY s.id
 ORDER BY s.created_at, s.id;

-- name: oldest_pending_seconds
-- `outbox status`: age of the oldest event still waiting (unrouted, or with an unfinished delivery).
SELECT extract(epoch FROM now() - least(
           (SELECT min(enqueued_at) FROM {schema}.events WHERE routed_at IS NULL),
           (SELECT min(created_at) FROM {schema}.deliveries WHERE status IN ('pending', 'delivering'))));

-- ==== the worker ====

-- name: route_lock
-- One router at a time per schema, so deliveries are created in event order (their ids are that order).
SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0));

-- name: unrouted_events
-- Committed events without deliveries yet, oldest first (events_unrouted_idx).
SELECT position, event::text FROM {schema}.events WHERE routed_at IS NULL ORDER BY position LIMIT %s;

-- name: insert_deliveries
-- One delivery per (event, subscription); a second router can never duplicate one.
INSERT INTO {schema}.deliveries (event_position, subscription_id, ordering_key)
SELECT * FROM unnest(%b::int8[], %b::uuid[], %b::text[])
ON CONFLICT (event_position, subscription_id) DO NOTHING;

-- name: mark_routed
-- The events whose deliveries now exist.
UPDATE {schema}.events SET routed_at = now() WHERE position = ANY (%b::int8[]) AND routed_at IS NULL;

-- name: claim
-- Due deliveries (pending and due, or delivering with an expired lease: a dead worker's), skipping
-- rows other workers hold (SKIP LOCKED), subscriptions this worker has saturated, paused subscriptions,
-- and rows whose ordering key has an earlier unfinished delivery. Sets a fresh claim token and lease.
-- The due rows are read in deliveries_due_idx order up to a window (a few times the limit) and only
-- then checked for order and locks: the cost follows the limit, not the number of pending rows, and
-- delivered/failed rows are not in that index at all. If the window's head is all blocked (one long
-- chain of one ordering key), fewer rows are claimed this time; the next claim looks again.
-- Measured with EXPLAIN ANALYZE (bench/claim.py, PostgreSQL 15, 2 cores): 100 of 1,000 due rows in
-- 2.7 ms next to 1,000 delivered rows, 3.4 ms next to 1,000,000 (the deeper primary-key btree);
-- the first version, with the paused-subscription filter as a subquery, took 1.1 s on 20,000 pending.
WITH candidates AS (
    -- The head of the due index, in order, without the subscriptions the worker passes as excluded
    -- (paused ones, and those it has saturated), so they cannot crowd the window. The list is a
    -- parameter, not a subquery: with a known list the planner estimates the filter from it and
    -- keeps the ordered scan of deliveries_due_idx that stops at the window.
    SELECT id FROM {schema}.deliveries
     WHERE status = 'pending' AND next_attempt_at <= now() AND subscription_id <> ALL (%(excluded)s::uuid[])
     ORDER BY next_attempt_at, id
     LIMIT %(window)s
), due AS (
    SELECT d.id
      FROM candidates c JOIN {schema}.deliveries d ON d.id = c.id
     WHERE d.status = 'pending'
       AND EXISTS (SELECT 1 FROM {schema}.subscriptions s WHERE s.id = d.subscription_id AND s.status = 'active')
       AND (d.ordering_key IS NULL OR NOT EXISTS (
               SELECT 1 FROM {schema}.deliveries e
                WHERE e.subscription_id = d.subscription_id AND e.ordering_key = d.ordering_key
                  AND e.id < d.id AND e.status IN ('pending', 'delivering')))
     ORDER BY d.next_attempt_at, d.id
     LIMIT %(limit)s
       FOR UPDATE OF d SKIP LOCKED
), expired AS (
    SELECT d.id
      FROM {schema}.deliveries d
     WHERE d.status = 'delivering' AND d.leased_until < now() AND d.subscription_id <> ALL (%(excluded)s::uuid[])
       AND EXISTS (SELECT 1 FROM {schema}.subscriptions s WHERE s.id = d.subscription_id AND s.status = 'active')
     ORDER BY d.leased_until
     LIMIT %(limit)s
       FOR UPDATE OF d SKIP LOCKED
), picked AS (
    SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT %(limit)s
)
UPDATE {schema}.deliveries d
   SET status = 'delivering', claim_token = %(token)s, leased_until = now() + make_interval(secs => %(lease)s),
       attempts = d.attempts + 1, updated_at = now()
  FROM picked p, {schema}.events ev, {schema}.subscriptions s
 WHERE d.id = p.id AND ev.position = d.event_position AND s.id = d.subscription_id
RETURNING d.id, d.attempts, d.subscription_id, s.callback_url, s.auth, s.content_mode, ev.event::text;

-- name: record_results
-- Writes outcomes back, only where the claim is still ours (same token, still delivering): a worker
-- whose lease expired cannot overwrite the new owner's result.
UPDATE {schema}.deliveries d
   SET status = r.status,
       next_attempt_at = CASE WHEN r.status = 'pending' THEN now() + make_interval(secs => r.delay)
                              ELSE d.next_attempt_at END,
       delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
       claim_token = NULL, leased_until = NULL,
       last_status_code = r.code, last_error = r.error, updated_at = now()
  FROM unnest(%b::int8[], %b::uuid[], %b::text[], %b::int4[], %b::text[], %b::float8[])
       AS r(id, token, status, code, error, delay)
 WHERE d.id = r.id AND d.claim_token = r.token AND d.status = 'delivering'
RETURNING d.id;

-- name: insert_attempts
-- One row per HTTP attempt (kept even when the fence refused the result: the attempt happened).
INSERT INTO {schema}.delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, error, response_body)
SELECT a.* FROM unnest(%b::int8[], %b::timestamptz[], %b::float8[], %b::int4[], %b::text[], %b::text[])
       AS a(delivery_id, attempted_at, duration_ms, status_code, error, response_body)
 WHERE EXISTS (SELECT 1 FROM {schema}.deliveries d WHERE d.id = a.delivery_id);

-- name: retire_subscriptions
-- A 410 Gone: the subscription is paused with the reason; its deliveries wait.
UPDATE {schema}.subscriptions
   SET status = 'paused', paused_reason = %s, updated_at = now()
 WHERE id = ANY (%b::uuid[]) AND status = 'active'
RETURNING id, callback_url;

-- name: release_claims
-- Shutdown: claims whose HTTP did not finish go back to pending, at once, this attempt not counted.
UPDATE {schema}.deliveries
   SET status = 'pending', claim_token = NULL, leased_until = NULL, next_attempt_at = now(),
       attempts = greatest(attempts - 1, 0), updated_at = now()
 WHERE id = ANY (%b::int8[]) AND claim_token = ANY (%b::uuid[]) AND status = 'delivering';

-- name: next_due_in
-- Seconds until the next pending delivery or lease expiry is due (NULL: none), to sleep no longer.
SELECT extract(epoch FROM least(
           (SELECT min(next_attempt_at) FROM {schema}.deliveries WHERE status = 'pending'),
           (SELECT min(leased_until) FROM {schema}.deliveries WHERE status = 'delivering')) - now());

-- name: mark_idle
-- This worker waits for a NOTIFY: enqueue will send one.
INSERT INTO {schema}.idle_workers (worker_id, listen_pid) VALUES (%s, %s)
ON CONFLICT (worker_id) DO UPDATE SET listen_pid = EXCLUDED.listen_pid, since = now();

-- name: mark_busy
-- This worker polls by itself: enqueue need not notify on its account.
DELETE FROM {schema}.idle_workers WHERE worker_id = %s;

-- name: forget_dead_workers
-- Idle rows of workers whose LISTEN connection is gone.
DELETE FROM {schema}.idle_workers w
 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.listen_pid);

-- name: retry_failed
-- `outbox retry`: failed deliveries back to pending with a fresh set of attempts.
UPDATE {schema}.deliveries
   SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
 WHERE status = 'failed'
   AND (%(subscription)s::uuid IS NULL OR subscription_id = %(subscription)s::uuid)
   AND (%(delivery)s::bigint IS NULL OR id = %(delivery)s::bigint)
RETURNING id;

-- name: purge_deliveries
-- `outbox purge`: a small batch of delivered deliveries older than the cutoff (attempts go with them).
DELETE FROM {schema}.deliveries
 WHERE id IN (SELECT id FROM {schema}.deliveries
               WHERE status = 'delivered' AND delivered_at < %s
               LIMIT %s);

-- name: purge_events
-- `outbox purge`: a small batch of routed events older than the cutoff with no delivery left.
DELETE FROM {schema}.events
 WHERE position IN (SELECT e.position FROM {schema}.events e
                     WHERE e.routed_at IS NOT NULL AND e.enqueued_at < %s
                       AND NOT EXISTS (SELECT 1 FROM {schema}.deliveries d WHERE d.event_position = e.position)
                     LIMIT %s);

-- name: listen
-- The worker's wake-up channel.
LISTEN {channel};

-- name: worker_session
-- Worker connections commit without waiting for the WAL flush: a commit lost in a PostgreSQL crash
-- only means a claim or result is redone, which at-least-once delivery allows; hosts keep full durability.
-- No JIT: the worker's queries are short, and compiling them costs more than it saves.
SET synchronous_commit TO off; SET jit TO off;
