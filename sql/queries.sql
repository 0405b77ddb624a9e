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
