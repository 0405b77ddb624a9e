-- Named queries, loaded by outbox/_sql.py. Each starts with a `-- name: NAME`
-- line and a comment saying what it is for. `{schema}` is the outbox schema,
-- filled in as a quoted identifier; values are always bind parameters.

-- name: insert_event
-- One event, in the caller's transaction: <schema>.insert_event (005) inserts it
-- and, if a worker is idle, queues a NOTIFY for the commit (notifications of one
-- transaction fold into one); busy workers poll, and then the host commits
-- without the NOTIFY's global lock. A function, so connections that do not
-- prepare statements get its plans cached all the same.
SELECT {schema}.insert_event(%s);

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
    (callback_url, kanalen, types, filters, content_mode, ordering_key, allow_insecure, handshake_at, agreement,
     requested_rate, allowed_rate, batch_max, content_type, preflight, allow_query_token, auth_kind,
     oauth2_token_url, oauth2_client_id, oauth2_scope, zgw_client_id, ca_bundle, client_cert, secrets,
     secrets_encrypted, owner, source, header_names, auth_hint, signing_secret_count, send_cloudevents,
     cloudevent_filters)
VALUES (%(callback_url)s, %(kanalen)s, %(types)s, %(filters)s, %(content_mode)s, %(ordering_key)s, %(allow_insecure)s,
        %(handshake_at)s, %(agreement)s, %(requested_rate)s, %(allowed_rate)s, %(batch_max)s, %(content_type)s,
        %(preflight)s, %(allow_query_token)s, %(auth_kind)s, %(oauth2_token_url)s, %(oauth2_client_id)s,
        %(oauth2_scope)s, %(zgw_client_id)s, %(ca_bundle)s, %(client_cert)s, %(secrets)s, %(secrets_encrypted)s,
        %(owner)s, %(source)s, %(header_names)s, %(auth_hint)s, %(signing_secret_count)s, %(send_cloudevents)s,
        %(cloudevent_filters)s)
RETURNING id;

-- name: update_subscription
-- `outbox subscriptions update ID`: every option at once (the CLI re-validates the whole subscription),
-- only if nobody changed the row since the CLI read it (updated_at as read).
UPDATE {schema}.subscriptions
   SET callback_url = %(callback_url)s, kanalen = %(kanalen)s, types = %(types)s, filters = %(filters)s,
       content_mode = %(content_mode)s,
       ordering_key = %(ordering_key)s, allow_insecure = %(allow_insecure)s, handshake_at = %(handshake_at)s,
       agreement = %(agreement)s, requested_rate = %(requested_rate)s, allowed_rate = %(allowed_rate)s,
       batch_max = %(batch_max)s, content_type = %(content_type)s, preflight = %(preflight)s,
       allow_query_token = %(allow_query_token)s, auth_kind = %(auth_kind)s,
       oauth2_token_url = %(oauth2_token_url)s, oauth2_client_id = %(oauth2_client_id)s,
       oauth2_scope = %(oauth2_scope)s, zgw_client_id = %(zgw_client_id)s, ca_bundle = %(ca_bundle)s,
       client_cert = %(client_cert)s, secrets = %(secrets)s, secrets_encrypted = %(secrets_encrypted)s,
       source = %(source)s, header_names = %(header_names)s, auth_hint = %(auth_hint)s,
       signing_secret_count = %(signing_secret_count)s, unsealed_headers = NULL,
       send_cloudevents = %(send_cloudevents)s, cloudevent_filters = %(cloudevent_filters)s, updated_at = now()
 WHERE id = %(id)s AND updated_at = %(read_at)s
RETURNING id;

-- name: record_handshake
-- `outbox subscriptions verify ID`: the handshake (or the probe) succeeded (again); a pre-flight
-- subscription stays one.
UPDATE {schema}.subscriptions
   SET agreement = CASE WHEN preflight THEN 'preflight' ELSE %s END, handshake_at = now(),
       requested_rate = %s, allowed_rate = %s, updated_at = now()
 WHERE id = %s
RETURNING id;

-- name: list_subscriptions
-- `outbox subscriptions list`, and the router's view of who wants what (with the shared pace).
SELECT s.id, s.callback_url, s.kanalen, s.types, s.filters, s.content_mode, s.status, s.paused_reason, s.ordering_key, s.allow_insecure,
       s.handshake_at, s.created_at, s.updated_at, s.agreement, s.requested_rate, s.allowed_rate, s.batch_max, s.content_type,
       s.preflight, s.allow_query_token, s.auth_kind, s.oauth2_token_url, s.oauth2_client_id, s.oauth2_scope, s.zgw_client_id,
       s.ca_bundle, s.client_cert, s.secrets, s.secrets_encrypted, s.owner, s.source, s.unsealed_headers, s.header_names,
       s.auth_hint, s.signing_secret_count, s.send_cloudevents,
       s.cloudevent_filters, p.pace, p.hold_until > now() AS held, p.concurrency_limit, f.failing_since
  FROM {schema}.subscriptions s
  LEFT JOIN {schema}.subscription_pace p ON p.subscription_id = s.id
  LEFT JOIN {schema}.failure_streaks f ON f.subscription_id = s.id
 ORDER BY s.created_at, s.id;

-- name: get_subscription
-- `outbox subscriptions show ID`.
SELECT id, callback_url, kanalen, types, filters, content_mode, status, paused_reason, ordering_key, allow_insecure,
       handshake_at, created_at, updated_at, agreement, requested_rate, allowed_rate, batch_max, content_type,
       preflight, allow_query_token, auth_kind, oauth2_token_url, oauth2_client_id, oauth2_scope, zgw_client_id,
       ca_bundle, client_cert, secrets, secrets_encrypted, owner, source, unsealed_headers, header_names,
       auth_hint, signing_secret_count, send_cloudevents, cloudevent_filters
  FROM {schema}.subscriptions
 WHERE id = %s;

-- name: sealed_secrets
-- `outbox secrets rotate`: every stored secret, locked until the re-encrypted ones are written.
SELECT id, secrets, secrets_encrypted FROM {schema}.subscriptions WHERE secrets IS NOT NULL FOR UPDATE;

-- name: reseal_secrets
-- `outbox secrets rotate`: one subscription's secrets, encrypted with the new key.
UPDATE {schema}.subscriptions SET secrets = %s, secrets_encrypted = %s, updated_at = now() WHERE id = %s;

-- name: unsealed_subscriptions
-- The rows written before 015 (header values in clear, no hints), locked until they are completed;
-- another process completing some meanwhile skips them.
SELECT id, secrets, secrets_encrypted, unsealed_headers FROM {schema}.subscriptions
 WHERE unsealed_headers IS NOT NULL
 ORDER BY id
   FOR UPDATE SKIP LOCKED;

-- name: seal_subscription
-- One of them completed: its header values sealed with its secrets, the hints filled in.
UPDATE {schema}.subscriptions
   SET secrets = %(secrets)s, secrets_encrypted = %(secrets_encrypted)s, header_names = %(header_names)s,
       auth_hint = %(auth_hint)s, signing_secret_count = %(signing_secret_count)s, unsealed_headers = NULL,
       updated_at = now()
 WHERE id = %(id)s;

-- name: set_subscription_status
-- pause (with a reason) / resume (reason NULL). A pause of an active subscription announces itself
-- (subscription-paused, by an operator, named when known); a resume ends its failure streak, so the
-- auto-disable counts afresh. Returns (id, operational event position or NULL).
WITH was AS (
    SELECT id, status FROM {schema}.subscriptions WHERE id = %(id)s FOR UPDATE
), changed AS (
    UPDATE {schema}.subscriptions s
       SET status = %(status)s, paused_reason = %(reason)s, updated_at = now()
      FROM was
     WHERE s.id = was.id
    RETURNING s.id, s.callback_url, s.status, s.paused_reason, was.status AS was
), streak_ended AS (
    DELETE FROM {schema}.failure_streaks f USING changed c
     WHERE f.subscription_id = c.id AND c.status = 'active'
)
SELECT c.id,
       CASE WHEN c.status = 'paused' AND c.was = 'active' THEN {schema}.announce(
           'nl.overheid.outbox.subscription-paused', %(source)s, c.id::text,
           jsonb_build_object('subscriptionId', c.id, 'callbackUrl', {schema}.public_callback(c.callback_url),
                              'pausedBy', 'operator', 'operator', %(by)s::text, 'reason', c.paused_reason,
                              'lastStatusCode', NULL,
                              'pausedAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
       END
  FROM changed c;

-- name: delete_subscription
-- `outbox subscriptions remove ID`: its deliveries and attempts go with it.
DELETE FROM {schema}.subscriptions WHERE id = %s RETURNING id;

-- name: list_owned_subscriptions
-- `outbox serve` (/abonnement, /subscriptions): a client's own subscriptions, or all (owner NULL: outbox.beheer).
SELECT id, callback_url, kanalen, types, filters, content_mode, status, paused_reason, ordering_key, allow_insecure,
       handshake_at, created_at, updated_at, agreement, requested_rate, allowed_rate, batch_max, content_type,
       preflight, allow_query_token, auth_kind, oauth2_token_url, oauth2_client_id, oauth2_scope, zgw_client_id,
       ca_bundle, client_cert, secrets, secrets_encrypted, owner, source, unsealed_headers, header_names,
       auth_hint, signing_secret_count, send_cloudevents, cloudevent_filters
  FROM {schema}.subscriptions
 WHERE %(owner)s::text IS NULL OR owner = %(owner)s
 ORDER BY created_at, id;

-- name: get_owned_subscription
-- `outbox serve`: one subscription, if it is the client's (owner NULL: any, for outbox.beheer).
SELECT id, callback_url, kanalen, types, filters, content_mode, status, paused_reason, ordering_key, allow_insecure,
       handshake_at, created_at, updated_at, agreement, requested_rate, allowed_rate, batch_max, content_type,
       preflight, allow_query_token, auth_kind, oauth2_token_url, oauth2_client_id, oauth2_scope, zgw_client_id,
       ca_bundle, client_cert, secrets, secrets_encrypted, owner, source, unsealed_headers, header_names,
       auth_hint, signing_secret_count, send_cloudevents, cloudevent_filters
  FROM {schema}.subscriptions
 WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s);

-- name: delete_owned_subscription
-- `outbox serve`: delete a subscription if it is the client's (owner NULL: any); its deliveries go with it.
DELETE FROM {schema}.subscriptions
 WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
RETURNING id;

-- name: kanalen
-- `outbox serve` GET /kanaal: each kanaal named by the catalogue's nl.overheid.<kanaal>.… types or by a
-- subscription of %(owner)s (NULL: every subscription, for outbox.beheer), with the filter keys those
-- subscriptions use on it: a client never learns what other clients' abonnementen name or filter on.
WITH named AS (
    SELECT split_part(type, '.', 3) AS naam, NULL::text AS filter_key
      FROM {schema}.event_types
     WHERE type LIKE 'nl.overheid.%%.%%' AND split_part(type, '.', 3) <> ''
       AND NOT operational  -- the outbox's own: opt-in by type, never through a kanaal (sql/017)
    UNION ALL
    SELECT k ->> 'naam', f.key
      FROM {schema}.subscriptions s
     CROSS JOIN LATERAL jsonb_array_elements(s.kanalen) AS k
      LEFT JOIN LATERAL jsonb_object_keys(COALESCE(k -> 'filters', '{{}}'::jsonb)) AS f(key) ON true
     WHERE %(owner)s::text IS NULL OR s.owner = %(owner)s
)
SELECT naam, COALESCE(array_agg(DISTINCT filter_key ORDER BY filter_key)
                      FILTER (WHERE filter_key IS NOT NULL), '{{}}') AS filters
  FROM named
 WHERE %(naam)s::text IS NULL OR naam = %(naam)s
 GROUP BY naam
 ORDER BY naam;

-- name: migrate_lock
-- Serialises concurrent `outbox migrate` runs on one schema. Transaction-level (taken again by each
-- migration's transaction): a session lock would stay on a pooler's server connection (PgBouncer).
SELECT pg_advisory_xact_lock(hashtextextended(%s, 0));

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

-- name: schema_migrated
-- The worker at start: does the schema have its migrations table at all?
SELECT to_regclass(format('%%I.schema_migrations', %s::text)) IS NOT NULL;

-- name: schema_version
-- The worker at start: the newest applied migration.
SELECT max(version) FROM {schema}.schema_migrations;

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
-- `outbox status`: per subscription, deliveries waiting, done and failed; in flight (all workers) and
-- the concurrency limit, why and when it last changed (NULL: not adapted yet).
SELECT s.id, s.callback_url, s.status,
       count(d.id) FILTER (WHERE d.status IN ('blocked', 'pending', 'delivering')) AS pending,
       count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(d.id) FILTER (WHERE d.status = 'failed') AS failed,
       count(d.id) FILTER (WHERE d.status = 'delivering') AS in_flight,
       p.concurrency_limit, p.limit_reason, p.limit_changed_at
  FROM {schema}.subscriptions s
  LEFT JOIN {schema}.deliveries d ON d.subscription_id = s.id
  LEFT JOIN {schema}.subscription_pace p ON p.subscription_id = s.id
 GROUP BY s.id, p.subscription_id
 ORDER BY s.created_at, s.id;

-- name: subscription_concurrency
-- `outbox subscriptions list/show`: each subscription's concurrency limit (NULL: not adapted yet), why
-- and when it last changed, and what all workers have in flight for it (deliveries_subscription_status_idx).
SELECT s.id, p.concurrency_limit, p.limit_reason, p.limit_changed_at,
       (SELECT count(*) FROM {schema}.deliveries d WHERE d.subscription_id = s.id AND d.status = 'delivering')
  FROM {schema}.subscriptions s
  LEFT JOIN {schema}.subscription_pace p ON p.subscription_id = s.id
 WHERE %(id)s::uuid IS NULL OR s.id = %(id)s::uuid;

-- name: oldest_pending_seconds
-- `outbox status`: age of the oldest event still waiting (unrouted, or with an unfinished delivery).
SELECT extract(epoch FROM now() - least(
           (SELECT min(enqueued_at) FROM {schema}.events WHERE routed_at IS NULL),
           (SELECT min(created_at) FROM {schema}.deliveries WHERE status IN ('blocked', 'pending', 'delivering'))));

-- ==== the worker ====

-- name: route_lock
-- One router at a time per schema, so deliveries are created in event order (their ids are that order).
SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0));

-- name: unrouted_events
-- Committed events without deliveries yet, oldest first (events_unrouted_idx of each leaf, merged), with
-- their enqueued_at: the deliveries carry it, so their joins to events name the leaf.
-- target_subscription: a 'source' consumer's event goes to that subscription only (020).
SELECT position, event::text, enqueued_at, target_subscription
  FROM {schema}.events WHERE routed_at IS NULL ORDER BY position LIMIT %s;

-- name: lock_keys
-- Per-key advisory locks for (subscription, ordering key) pairs, taken in one fixed order so two
-- takers never deadlock. Router, recorder and retry take them before they decide blocked/pending.
SELECT pg_advisory_xact_lock(h)
  FROM (SELECT DISTINCT hashtextextended(%s || k.subscription_id::text || '/' || k.ordering_key, 0) AS h
          FROM unnest(%b::uuid[], %b::text[]) AS k(subscription_id, ordering_key)
         WHERE k.ordering_key IS NOT NULL
         ORDER BY 1) AS locks;

-- name: insert_deliveries
-- One delivery per (event, subscription), in event order (ids follow it); a second router can never
-- duplicate one. A delivery behind an unfinished one of its key (in the table or earlier in this
-- batch) starts blocked. Subscriptions removed meanwhile are skipped, not an error. New deliveries
-- are live: they go straight into deliveries_live, whose unique key is the conflict target.
INSERT INTO {schema}.deliveries_live (event_position, event_enqueued_at, subscription_id, ordering_key, status)
SELECT r.position, r.enqueued_at, r.subscription_id, r.ordering_key,
       CASE WHEN r.ordering_key IS NOT NULL AND (r.nth > 1 OR EXISTS (
                SELECT 1 FROM {schema}.deliveries e
                 WHERE e.subscription_id = r.subscription_id AND e.ordering_key = r.ordering_key
                   AND e.status IN ('blocked', 'pending', 'delivering')))
            THEN 'blocked' ELSE 'pending' END
  FROM (SELECT u.*, row_number() OVER (PARTITION BY u.subscription_id, u.ordering_key ORDER BY u.position) AS nth
          FROM unnest(%b::int8[], %b::timestamptz[], %b::uuid[], %b::text[])
               AS u(position, enqueued_at, subscription_id, ordering_key)) AS r
  JOIN {schema}.subscriptions s ON s.id = r.subscription_id
 ORDER BY r.position, r.subscription_id
ON CONFLICT (event_position, subscription_id) DO NOTHING;

-- name: mark_routed
-- The events whose deliveries now exist: positions, and the range of their enqueued_at, so only their
-- leaves are read (bounds prune even a generic plan when it starts; `= ANY (array)` would not).
UPDATE {schema}.events SET routed_at = now()
 WHERE position = ANY (%b::int8[]) AND enqueued_at BETWEEN %s AND %s AND routed_at IS NULL;

-- name: subscriptions_version
-- Read before list_subscriptions in the same transaction: the version of the subscriptions the
-- worker is about to read (a change committed in between only makes the fast path fall back).
SELECT version FROM {schema}.subscriptions_version;

-- name: fast_path
-- The idle fast path's whole flight (sql/012_fast_path_function.sql): the route lock, the worker's
-- assumptions checked, the deliveries made (those it may claim already claimed), the events marked
-- routed. Returns the deliveries made, or one row whose `refused` names the failed assumption.
SELECT refused, id, event_position, subscription_id, ordering_key, status, attempts
  FROM {schema}.fast_path(%(lock)s, %(version)s, %(event_positions)b::int8[], %(event_texts)b::text[],
                          %(event_enqueued_at)b::timestamptz[], %(last)s::int8, %(first_enqueued_at)s::timestamptz,
                          %(last_enqueued_at)s::timestamptz, %(positions)b::int8[],
                          %(enqueued_at)b::timestamptz[], %(subscription_ids)b::uuid[], %(keys)b::text[],
                          %(claim)b::bool[], %(token)s::uuid, %(lease)s::float8, %(key_lock)s,
                          %(adaptive)s, %(initial)s::float8);

-- name: claim
-- Due deliveries, per active subscription up to its free capacity (a paused, held or saturated one is
-- not in the list, so its backlog is never scanned), plus rows whose lease expired (a dead worker's),
-- skipping rows other workers hold (SKIP LOCKED). Only heads of their ordering key are pending, so
-- nothing needs skipping for order. A subscription takes no more than its concurrency limit (adaptive:
-- on its pace row, NULL = the initial limit; fixed: max_requests) minus what all workers have in flight
-- for it (lock_concurrency serialised the claims, so this count is current), in requests of `unit`
-- events. A rate-limited subscription also takes no more than its tokens allow (refill_pace locked and
-- refilled them in this transaction). Sets a fresh claim token and lease.
-- The list was read by an earlier statement: a pause committed since (a 410 recorded with its
-- delivery put back to pending, an operator) is seen here, so nothing is sent to a paused target.
WITH due AS (
    SELECT d.id, false AS rescued
      FROM unnest(%(subscriptions)s::uuid[], %(caps)s::int4[], %(units)s::int4[], %(rated)s::bool[],
                  %(max_requests)s::int4[])
           AS q(subscription_id, cap, unit, rated, max_requests)
      JOIN {schema}.subscriptions s ON s.id = q.subscription_id AND s.status = 'active'
      LEFT JOIN {schema}.subscription_pace p ON p.subscription_id = q.subscription_id
     CROSS JOIN LATERAL (  -- a lease that expired is a dead worker's: it must not hold the limit (rescued below)
           SELECT count(*) AS n FROM {schema}.deliveries
            WHERE subscription_id = q.subscription_id AND status = 'delivering' AND leased_until >= now()) AS f
     CROSS JOIN LATERAL (
           SELECT id FROM {schema}.deliveries
            WHERE subscription_id = q.subscription_id AND status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at, id
            LIMIT least(q.cap,
                        CASE WHEN q.rated THEN greatest(floor(coalesce(p.tokens, 0)), 0)::int4 * q.unit
                             ELSE q.cap END,
                        greatest(CASE WHEN %(adaptive)s
                                      THEN least(q.max_requests,
                                                 floor(coalesce(p.concurrency_limit, %(initial)s))::int4)
                                      ELSE q.max_requests END
                                 - ceil(f.n::float8 / q.unit)::int4, 0) * q.unit)
              FOR UPDATE SKIP LOCKED) AS d
     LIMIT %(limit)s
), expired AS (
    SELECT d.id, true AS rescued
      FROM {schema}.deliveries d
     WHERE d.status = 'delivering' AND d.leased_until < now()
       AND d.subscription_id = ANY (%(subscriptions)s::uuid[])
       AND EXISTS (SELECT 1 FROM {schema}.subscriptions s WHERE s.id = d.subscription_id AND s.status = 'active')
     ORDER BY d.leased_until
     LIMIT %(limit)s
       FOR UPDATE OF d SKIP LOCKED
), picked AS (
    SELECT id, rescued FROM expired UNION ALL SELECT id, rescued FROM due LIMIT %(limit)s
)
UPDATE {schema}.deliveries d
   SET status = 'delivering', claim_token = %(token)s, leased_until = now() + make_interval(secs => %(lease)s),
       attempts = d.attempts + 1, updated_at = now()
  FROM picked p, {schema}.events ev
 WHERE d.id = p.id AND d.status IN ('pending', 'delivering')  -- deliveries_live only
   AND ev.position = d.event_position AND ev.enqueued_at = d.event_enqueued_at  -- the event's leaf only
RETURNING d.id, d.attempts, d.subscription_id, ev.event::text, d.ordering_key, p.rescued, d.event_enqueued_at;

-- name: lock_concurrency
-- Before the claim: one worker at a time claims for a subscription that has due deliveries, so the
-- claim's count of what all workers have in flight for it is current (it runs after the lock is
-- granted, with a fresh snapshot) and together they keep to its concurrency limit. Advisory locks
-- (nothing is written), taken in one order by every worker (no deadlocks), and only for subscriptions
-- with due work: an idle subscription costs no lock.
SELECT pg_advisory_xact_lock(h)
  FROM (SELECT hashtextextended(%(concurrency_lock)s || q.subscription_id::text, 0) AS h
          FROM unnest(%(subscriptions)s::uuid[]) AS q(subscription_id)
         WHERE EXISTS (SELECT 1 FROM {schema}.deliveries
                        WHERE subscription_id = q.subscription_id AND status = 'pending'
                          AND next_attempt_at <= now())
         ORDER BY 1) AS locks;

-- name: claim_left
-- After the claim, in its transaction: the subscriptions that still have due deliveries (held back by
-- their concurrency limit, rate or this process's slots), so that deliveries to them finishing wake
-- the worker; and the database's clock at the claim, against which a later cut of the limit is judged.
SELECT q.subscription_id, now() AS claimed_at
  FROM unnest(%(subscriptions)s::uuid[]) AS q(subscription_id)
 WHERE EXISTS (SELECT 1 FROM {schema}.deliveries
                WHERE subscription_id = q.subscription_id AND status = 'pending' AND next_attempt_at <= now())
UNION ALL
SELECT NULL, now();

-- name: create_pace
-- Rate-limited subscriptions get their token bucket, full, the first time.
INSERT INTO {schema}.subscription_pace (subscription_id, tokens)
SELECT q.subscription_id, q.burst
  FROM unnest(%(fresh_ids)s::uuid[], %(fresh_bursts)s::float8[]) AS q(subscription_id, burst)
  JOIN {schema}.subscriptions s ON s.id = q.subscription_id
 ORDER BY q.subscription_id
ON CONFLICT (subscription_id) DO NOTHING;

-- name: refill_pace
-- Before the claim: refill the buckets of rate-limited subscriptions (rate x pace, up to one
-- second's worth) and lock them until commit, so workers spend tokens in turn, never twice. The
-- rows are locked in subscription-id order (every worker the same order: no deadlocks), and the
-- clock is read after the lock was granted (now() is when the transaction began: a worker that
-- waited for the lock would count time another already counted).
WITH locked AS (
    SELECT subscription_id FROM {schema}.subscription_pace
     WHERE subscription_id = ANY (%(rated_ids)s::uuid[])
     ORDER BY subscription_id
       FOR UPDATE
)
UPDATE {schema}.subscription_pace p
   SET tokens = least(q.burst, p.tokens + greatest(extract(epoch FROM clock_timestamp() - p.refilled_at), 0)
                                          * q.per_second * p.pace),
       refilled_at = greatest(p.refilled_at, clock_timestamp())
  FROM locked l, unnest(%(rated_ids)s::uuid[], %(per_second)s::float8[], %(bursts)s::float8[])
       AS q(subscription_id, per_second, burst)
 WHERE p.subscription_id = l.subscription_id AND q.subscription_id = l.subscription_id;

-- name: spend_pace
-- After the claim: one token per request made of what this claim took (`unit` events per request).
UPDATE {schema}.subscription_pace p
   SET tokens = p.tokens - ceil(c.n::float8 / q.unit)
  FROM (SELECT subscription_id, count(*) AS n FROM {schema}.deliveries
         WHERE status = 'delivering' AND claim_token = %(token)s GROUP BY subscription_id) AS c,
       unnest(%(rated_ids)s::uuid[], %(rated_units)s::int4[]) AS q(subscription_id, unit)
 WHERE p.subscription_id = c.subscription_id AND q.subscription_id = c.subscription_id;

-- name: next_token_in
-- After the spend: seconds until a rate-limited subscription that ran out has a token again (NULL:
-- none ran out), so the worker wakes then instead of at its next poll.
SELECT min((1 - p.tokens) / (q.per_second * p.pace))
  FROM {schema}.subscription_pace p
  JOIN unnest(%(rated_ids)s::uuid[], %(per_second)s::float8[]) AS q(subscription_id, per_second)
    ON q.subscription_id = p.subscription_id
 WHERE p.tokens < 1;

-- name: slow_down
-- A 429: hold the subscription until the wait is over, and halve its pace (never below 1/64).
-- Subscriptions removed meanwhile are skipped (their row would break the foreign key).
INSERT INTO {schema}.subscription_pace AS p (subscription_id, tokens, pace, hold_until)
SELECT q.subscription_id, 0, 0.5, now() + make_interval(secs => q.delay)
  FROM unnest(%b::uuid[], %b::float8[]) AS q(subscription_id, delay)
  JOIN {schema}.subscriptions s ON s.id = q.subscription_id
 ORDER BY q.subscription_id
ON CONFLICT (subscription_id) DO UPDATE
   SET pace = greatest(p.pace / 2, 1.0 / 64), tokens = least(p.tokens, 0),
       hold_until = greatest(coalesce(p.hold_until, now()), EXCLUDED.hold_until);

-- name: speed_up
-- Deliveries went through: a slowed-down subscription recovers its pace step by step (rows locked
-- in subscription-id order, as everywhere).
WITH locked AS (
    SELECT subscription_id FROM {schema}.subscription_pace
     WHERE subscription_id = ANY (%b::uuid[]) AND pace < 1
     ORDER BY subscription_id
       FOR UPDATE
)
UPDATE {schema}.subscription_pace p SET pace = least(1.0, pace * 1.25)
  FROM locked l
 WHERE p.subscription_id = l.subscription_id;

-- name: create_concurrency
-- The recorder, before adapt_concurrency: a pace row for subscriptions that have none yet (in
-- subscription-id order; removed subscriptions are skipped).
INSERT INTO {schema}.subscription_pace (subscription_id)
SELECT q.subscription_id
  FROM unnest(%(fresh)s::uuid[]) AS q(subscription_id)
  JOIN {schema}.subscriptions s ON s.id = q.subscription_id
 ORDER BY q.subscription_id
ON CONFLICT (subscription_id) DO NOTHING;

-- name: generic_plans
-- The rest of this transaction uses generic plans (adapt_concurrency: PostgreSQL kept choosing a
-- custom plan for it, ~4 ms of planning each time, against a generic plan of the same shape).
SELECT set_config('plan_cache_mode', 'force_generic_plan', true);

-- name: adapt_concurrency
-- The recorder: adapt each subscription's concurrency limit to the answers of this batch (rows locked
-- in subscription-id order, as everywhere). Per subscription the worker gives: `ok` answers (2xx) with
-- their median (`typical`) and slowest duration and the latest claim time among them, `finished`
-- results, the strongest congestion `signal` (timeout, connection error, 503, 429, slow connect) with the latest claim
-- time among those, and `slow_connects`: answers whose new connection took a second longer than the
-- target's fastest (a dropped SYN: the receiver's listen backlog overflowed). `used` is what was in
-- flight: what all workers still have, plus this batch.
--   * cut, only by answers to requests claimed after the last cut (so at most once per round trip:
--     what was already in flight when the limit was cut does not cut it again; after a latency cut, one
--     recent answer time later: the receiver's queue drains first), to a share of `used`
--     (never below 1); slow start ends there:
--       - a signal: half; but slow connects past slow start: one less per slow connect, between
--         0.5 and 0.9 (a dropped SYN costs its request a second, not the receiver's health: a
--         receiver that drops one now and then at a limit is still best served near that limit);
--       - 'latency', one 2xx close to timing out (`patience`: a quarter of the request timeout) and
--         three times the baseline (a receiver's connection queue overflowing: dropped SYNs): half;
--       - 'latency', both this batch's median and the recent answer time (batch medians averaged,
--         weighed by their number of answers: a straggler weighs 5%) above 1.5 times the baseline plus
--         `slack` (5% of the request timeout: noise on our side, stragglers): requests queue at the
--         receiver: baseline / recent of it (Little's law: what the receiver serves at once), between
--         0.8 and 0.9 (gentler than a signal: a few dropped SYNs are not yet timeouts);
--   * grow, on 2xx without a signal while this batch's median stays within 1.25 times the baseline
--     plus half the slack,
--     and at least half the limit was in use (a limit never used is no proof the receiver takes it):
--     +1 per 2xx in slow start (doubling per round trip), but at most doubling per 0.5 s (a dropped SYN
--     is seen a second after the overflow: faster growth would overshoot far past it); slow start
--     ends without a cut once this batch's median and the recent answer time before it (two batches
--     in a row: one is often the worker's own stall) pass twice the baseline plus 1% of `slack`
--     (HyStart's idea: the receiver's queue is forming; the overshoot's dropped SYNs stalled the
--     drain for a second), then
--     +1/limit per 2xx (+1 per round trip, at most 5 a second: with answers in milliseconds,
--     probing for the next dropped SYN that fast spends more time above the receiver's capacity than
--     below it), up
--     to `maximum` (OUTBOX_SUBSCRIPTION_CONCURRENCY, or what the subscription's rate allows);
--   * a limit above this worker's maximum comes down to it.
-- The baseline is the lowest batch median of 2xx seen, drifting up 2% a second, so it follows a
-- receiver that became slower for good. Returns each row's limit and reason, whether this cut it, and the answer times judged (ms).
WITH input AS (
    SELECT *
      FROM unnest(%(ids)s::uuid[], %(ok)s::int4[], %(finished)s::int4[], %(signals)s::text[],
                  %(signal_claimed)s::timestamptz[], %(typical)s::float8[], %(slowest)s::float8[],
                  %(ok_claimed)s::timestamptz[], %(maxima)s::float8[], %(slow_connects)s::int4[])
           AS i(subscription_id, ok, finished, signal, signal_claimed, typical, slowest, ok_claimed, maximum,
                slow_connects)
), locked AS (
    SELECT subscription_id, coalesce(concurrency_limit, %(initial)s) AS current, slow_start_threshold,
           coalesce(limit_cut_at, '-infinity') AS cut_at,
           coalesce(greatest(extract(epoch FROM now() - limit_changed_at), 0), 1) AS unchanged_for,
           latency_base_ms * (1 + 0.02 * greatest(extract(epoch FROM now() - latency_base_at), 0)) AS base,
           latency_recent_ms
      FROM {schema}.subscription_pace
     WHERE subscription_id = ANY (%(ids)s::uuid[])
     ORDER BY subscription_id
       FOR UPDATE
), averaged AS (
    SELECT *,
           CASE WHEN i.typical IS NULL THEN l.latency_recent_ms
                ELSE coalesce(l.latency_recent_ms, i.typical) * power(0.95, i.ok)
                     + i.typical * (1 - power(0.95, i.ok)) END AS recent
      FROM locked l
      JOIN input i USING (subscription_id)
), judged AS (
    SELECT a.subscription_id, a.current, a.slow_start_threshold, a.base, a.recent, a.ok, a.maximum, a.typical,
           a.unchanged_for, a.slow_connects,
           a.slowest, a.signal IS NOT NULL AS signalled,
           CASE WHEN a.signal IS NOT NULL AND a.signal_claimed > a.cut_at THEN a.signal
                WHEN a.ok_claimed > a.cut_at
                     AND (a.slowest > greatest(3 * a.base, %(patience)s)
                          OR least(a.recent, a.typical) > 1.5 * a.base + %(slack)s)
                     THEN 'latency'
           END AS cut,
           CASE WHEN a.signal IS NULL AND a.slowest > greatest(3 * a.base, %(patience)s) THEN 0.5
                WHEN a.signal IS NULL THEN greatest(0.8, least(0.9, a.base / nullif(a.recent, 0)))
                ELSE 0.5 END AS factor,
           coalesce(a.typical <= 1.25 * a.base + %(slack)s / 2, true) AS fast,
           -- Warm in this batch and in the one before (`latency_recent_ms` before this batch is mostly
           -- it): one slow batch is often the worker's own stall (a pass holding its loop while
           -- answers wait), not the receiver's queue; ending slow start on it halved a fast receiver's drain.
           coalesce(a.typical > 2 * a.base + %(slack)s / 100
                    AND a.latency_recent_ms > 2 * a.base + %(slack)s / 100, false) AS warm,
           (SELECT count(*) FROM {schema}.deliveries d
             WHERE d.subscription_id = a.subscription_id AND d.status = 'delivering') + a.finished AS used
      FROM averaged a
), decided AS (
    SELECT j.*,
           j.cut IS NULL AND NOT j.signalled AND j.warm AND j.current < coalesce(j.slow_start_threshold, 'infinity')
               AS slow_start_ends,
           CASE WHEN j.cut = 'slow connect' AND j.slow_start_threshold IS NOT NULL
                     THEN greatest(1, least(j.current, j.used) * 0.5,
                                   least(least(j.current, j.used) * 0.9, least(j.current, j.used) - j.slow_connects))
                WHEN j.cut IS NOT NULL THEN greatest(1, least(j.current, j.used) * j.factor)
                WHEN j.current > j.maximum THEN j.maximum
                WHEN j.cut IS NULL AND NOT j.signalled AND j.warm
                     AND j.current < coalesce(j.slow_start_threshold, 'infinity') THEN NULL
                WHEN NOT j.signalled AND j.fast AND j.ok > 0 AND j.used * 2 >= j.current AND j.current < j.maximum
                     THEN least(j.maximum, j.current + CASE WHEN j.current < coalesce(j.slow_start_threshold,
                                                                                      'infinity')
                                                            THEN least(j.ok, j.current
                                                                             * (power(2, least(j.unchanged_for, 0.25) / 0.5) - 1))
                                                            ELSE least(j.ok / j.current, 5 * j.unchanged_for) END)
           END AS next
      FROM judged j
)
UPDATE {schema}.subscription_pace p
   SET concurrency_limit = coalesce(d.next, d.current),
       slow_start_threshold = CASE WHEN d.cut IS NOT NULL THEN d.next WHEN d.slow_start_ends THEN d.current
                                   ELSE p.slow_start_threshold END,
       limit_reason = CASE WHEN d.cut IS NOT NULL THEN d.cut
                           WHEN d.next IS NULL THEN p.limit_reason
                           WHEN d.next >= d.maximum THEN 'maximum'
                           ELSE 'growing' END,
       limit_changed_at = CASE WHEN d.next IS NOT NULL THEN now() ELSE p.limit_changed_at END,
       -- After a latency cut, requests claimed within one recent answer time still queue behind the
       -- ones before the cut: they must not cut again.
       limit_cut_at = CASE WHEN d.cut = 'latency' THEN now() + make_interval(secs => coalesce(d.recent, 0) / 1000)
                           WHEN d.cut IS NOT NULL THEN now() ELSE p.limit_cut_at END,
       latency_base_ms = CASE WHEN d.typical IS NULL THEN p.latency_base_ms ELSE least(d.typical, d.base) END,
       latency_base_at = CASE WHEN d.typical IS NULL THEN p.latency_base_at ELSE now() END,
       latency_recent_ms = d.recent
  FROM decided d
 WHERE p.subscription_id = d.subscription_id
RETURNING p.subscription_id, p.concurrency_limit, p.limit_reason, d.cut IS NOT NULL AS cut, d.recent, d.slowest,
          d.base;

-- name: record_preflight
-- A pre-flight handshake succeeded: when, and the rate the target allows.
-- Only while the subscription is still a pre-flight one (the operator may have changed it meanwhile).
UPDATE {schema}.subscriptions SET handshake_at = now(), allowed_rate = %s, updated_at = now()
 WHERE id = %s AND agreement = 'preflight'
   AND (allowed_rate IS DISTINCT FROM %s OR handshake_at < now() - interval '1 minute' OR handshake_at IS NULL);

-- name: record_batch
-- The recorder's batch (in batched mode, the results of whole requests) in one statement: the
-- outcomes written only where the claim is still ours (same token, still delivering: a worker whose
-- lease expired cannot overwrite the new owner's result; a delivered or failed row gets its finished_at
-- and moves out of deliveries_live into the final leaf of its kind and time); one attempt row per
-- result (kept even when the fence refused the result: the attempt happened; and when its delivery
-- was removed meanwhile with its subscription: attempts have no foreign key, their leaf goes at the
-- longest retention); and for each key
-- whose delivery this statement finished (delivered or failed) the oldest blocked one made pending,
-- unless the key has another head. The statement's snapshot still shows the finished rows as delivering, so they
-- are left out of that check by id. Run after lock_keys for the finished keys, in the same
-- transaction (its snapshot must follow the locks). A delivery this statement failed, of an event that is
-- not itself operational, announces itself: a nl.overheid.outbox.delivery-failed event (announce, sql/017;
-- the last parameter is its source), looked up row by row (LATERAL … LIMIT 1: never a join plan over
-- events), so a batch without failures pays only an empty scan. Returns ('recorded' | 'promoted' |
-- 'announced', id or event position; NULL: not written, nobody opted in).
WITH r AS (
    SELECT * FROM unnest(%b::int8[], %b::uuid[], %b::text[], %b::int4[], %b::text[], %b::float8[],
                         %b::timestamptz[], %b::float8[], %b::text[], %b::text[])
           AS r(id, token, status, code, error, delay, attempted_at, duration_ms, attempt_error, response_body)
), recorded AS (
    UPDATE {schema}.deliveries d
       SET status = r.status,
           next_attempt_at = CASE WHEN r.status = 'pending' THEN now() + make_interval(secs => r.delay)
                                  ELSE d.next_attempt_at END,
           delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
           finished_at = CASE WHEN r.status IN ('delivered', 'failed') THEN now() END,
           claim_token = NULL, leased_until = NULL,
           last_status_code = r.code, last_error = r.error, updated_at = now()
      FROM r
     WHERE d.id = r.id AND d.claim_token = r.token AND d.status = 'delivering'
    RETURNING d.id, d.subscription_id, d.ordering_key, d.status, d.event_position, d.event_enqueued_at,
              d.attempts, d.last_status_code, d.last_error
), attempted AS (
    INSERT INTO {schema}.delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, error, response_body)
    SELECT r.id, r.attempted_at, r.duration_ms, r.code, r.attempt_error, r.response_body
      FROM r
), promoted AS (
    UPDATE {schema}.deliveries d
       SET status = 'pending', next_attempt_at = now(), updated_at = now()
      FROM (SELECT DISTINCT ON (b.subscription_id, b.ordering_key) b.id
              FROM {schema}.deliveries b
              JOIN (SELECT DISTINCT subscription_id, ordering_key FROM recorded
                     WHERE status IN ('delivered', 'failed') AND ordering_key IS NOT NULL) AS k
                ON b.subscription_id = k.subscription_id AND b.ordering_key = k.ordering_key
             WHERE b.status = 'blocked'
             ORDER BY b.subscription_id, b.ordering_key, b.id) AS n
     WHERE d.id = n.id
       AND NOT EXISTS (SELECT 1 FROM {schema}.deliveries e
                        WHERE e.subscription_id = d.subscription_id AND e.ordering_key = d.ordering_key
                          AND e.status IN ('pending', 'delivering')
                          AND e.id NOT IN (SELECT id FROM recorded WHERE status IN ('delivered', 'failed')))
    RETURNING d.id
), announced AS (
    SELECT {schema}.announce(
               'nl.overheid.outbox.delivery-failed', %s, f.subscription_id::text,
               jsonb_build_object(
                   'deliveryId', f.id, 'subscriptionId', f.subscription_id,
                   'callbackUrl', (SELECT {schema}.public_callback(s.callback_url)
                                     FROM {schema}.subscriptions s WHERE s.id = f.subscription_id),
                   'event', jsonb_build_object('id', e.event ->> 'id', 'source', e.event ->> 'source',
                                               'type', e.event ->> 'type', 'subject', e.event ->> 'subject'),
                   'attempts', f.attempts, 'lastStatusCode', f.last_status_code, 'lastError', f.last_error,
                   'reason', CASE WHEN f.last_status_code = 415 THEN 'unsupported-media-type'
                                  WHEN f.last_error LIKE 'abandoned:%%' THEN 'abandoned'
                                  ELSE 'attempts-exhausted' END,
                   'failedAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))) AS position
      FROM recorded f
     CROSS JOIN LATERAL (SELECT v.event FROM {schema}.events v
                          WHERE v.position = f.event_position AND v.enqueued_at = f.event_enqueued_at
                          LIMIT 1) AS e
     WHERE f.status = 'failed' AND (e.event ->> 'type') NOT LIKE 'nl.overheid.outbox.%%'
)
SELECT 'recorded', id FROM recorded
UNION ALL
SELECT 'promoted', id FROM promoted
UNION ALL
SELECT 'announced', position FROM announced;

-- name: retire_subscriptions
-- A 410 Gone: the subscription is paused with the reason; its deliveries wait. Those in the second list
-- (a 410 that answered an event that is not operational) announce it: subscription-paused, by the receiver.
WITH paused AS (
    UPDATE {schema}.subscriptions
       SET status = 'paused', paused_reason = %(reason)s, updated_at = now()
     WHERE id = ANY (%(ids)s::uuid[]) AND status = 'active'
    RETURNING id, callback_url, paused_reason
)
SELECT p.id, p.callback_url,
       CASE WHEN p.id = ANY (%(announce)s::uuid[]) THEN {schema}.announce(
           'nl.overheid.outbox.subscription-paused', %(source)s, p.id::text,
           jsonb_build_object('subscriptionId', p.id, 'callbackUrl', {schema}.public_callback(p.callback_url),
                              'pausedBy', 'receiver', 'operator', NULL, 'reason', p.paused_reason,
                              'lastStatusCode', 410,
                              'pausedAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
       END
  FROM paused p;

-- name: release_claims
-- Shutdown: claims whose HTTP did not finish go back to pending, at once, this attempt not counted.
UPDATE {schema}.deliveries
   SET status = 'pending', claim_token = NULL, leased_until = NULL, next_attempt_at = now(),
       attempts = greatest(attempts - 1, 0), updated_at = now()
 WHERE id = ANY (%b::int8[]) AND claim_token = ANY (%b::uuid[]) AND status = 'delivering';

-- name: next_due_in
-- Seconds until the next pending delivery (of the active subscriptions) or lease expiry is due
-- (NULL: none), so the worker sleeps no longer than that.
SELECT extract(epoch FROM least(
           (SELECT min(n.next_attempt_at)
              FROM unnest(%s::uuid[]) AS q(subscription_id)
             CROSS JOIN LATERAL (SELECT next_attempt_at FROM {schema}.deliveries
                                  WHERE subscription_id = q.subscription_id AND status = 'pending'
                                  ORDER BY next_attempt_at LIMIT 1) AS n),
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

-- name: failed_for_retry
-- `outbox retry` and the admin's action: the failed deliveries asked for, locked (in id order) until the
-- retry commits.
-- Narrowed by the operators' filters (outbox._deliveries_filter; the event's fields through its row).
SELECT d.id, d.subscription_id, d.ordering_key
  FROM {schema}.deliveries d
  JOIN {schema}.events e ON e.position = d.event_position AND e.enqueued_at = d.event_enqueued_at
 WHERE d.status = 'failed'
   AND (%(subscription)s::uuid IS NULL OR d.subscription_id = %(subscription)s::uuid)
   AND (%(delivery)s::bigint IS NULL OR d.id = %(delivery)s::bigint)
   AND (%(deliveries)s::int8[] IS NULL OR d.id = ANY (%(deliveries)s::int8[]))
   AND (%(since)s::timestamptz IS NULL OR d.event_enqueued_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR d.event_enqueued_at < %(until)s::timestamptz)
   AND (%(type)s::text IS NULL OR e.event ->> 'type' = %(type)s::text)
   AND (%(subject)s::text IS NULL OR e.event ->> 'subject' = %(subject)s::text)
   AND (%(event_id)s::text IS NULL OR e.event ->> 'id' = %(event_id)s::text)
   AND (%(source)s::text IS NULL OR e.event ->> 'source' = %(source)s::text)
 ORDER BY d.id
   FOR UPDATE OF d;

-- name: retry_failed
-- `outbox retry`: back with a fresh set of attempts; pending if it is the head of its key, else
-- blocked behind the unfinished one (the oldest of several retried together goes first). The row
-- moves from its final leaf back into deliveries_live.
UPDATE {schema}.deliveries d
   SET status = CASE WHEN d.ordering_key IS NOT NULL AND (r.nth > 1 OR EXISTS (
                         SELECT 1 FROM {schema}.deliveries e
                          WHERE e.subscription_id = d.subscription_id AND e.ordering_key = d.ordering_key
                            AND e.status IN ('blocked', 'pending', 'delivering')))
                     THEN 'blocked' ELSE 'pending' END,
       attempts = 0, next_attempt_at = now(), updated_at = now(), finished_at = NULL
  FROM (SELECT id, row_number() OVER (PARTITION BY subscription_id, ordering_key ORDER BY id) AS nth
          FROM {schema}.deliveries WHERE id = ANY (%b::int8[]) AND status = 'failed') AS r
 WHERE d.id = r.id AND d.status = 'failed'
RETURNING d.id;

-- name: partition_leaves
-- `outbox purge` and `outbox status`: the leaves of a time-partitioned table (events,
-- deliveries_delivered, deliveries_failed, delivery_attempts) with their bounds, oldest first; the
-- DEFAULT leaf has no bounds.
SELECT c.relname::text, l.lower_bound, l.upper_bound
  FROM {schema}.partition_leaves(%s) l
  JOIN pg_class c ON c.oid = l.leaf
 ORDER BY l.lower_bound NULLS FIRST;

-- name: ensure_partitions
-- The worker at start and every few minutes: leaves of every time-partitioned table up to the
-- instant (NULL: the database's now()) + ahead (seconds), `step` seconds wide; one line per leaf
-- created or skipped. The caller sets a lock_timeout, so it never queues behind a long transaction
-- with the hot tables waiting behind it.
SELECT line FROM {schema}.ensure_partitions(make_interval(secs => %s), make_interval(secs => %s), %s) AS line;

-- name: partition_lock_timeout
-- Partition DDL waits at most this long for its lock (then gives up and is tried again later): a DDL
-- lock request queued behind a long transaction would make every writer of the table wait behind it.
SET LOCAL lock_timeout TO '2s';

-- name: drop_partition
-- `outbox purge`: one delivered/failed/attempts leaf whose range ended before its cutoff.
SELECT {schema}.drop_partition(%s::regclass);

-- name: retire_events_partition
-- `outbox purge`: one events leaf whose range ended before the cutoff; the events still needed are
-- kept (copied into events_default). Returns how many were kept.
SELECT kept FROM {schema}.retire_events_partition(%s::regclass);

-- name: purge_delivered_leftovers
-- `outbox purge`: a small batch of the delivered deliveries in the DEFAULT leaf older than the cutoff
-- (rows that found no leaf when they were written).
DELETE FROM {schema}.deliveries_delivered_default
 WHERE id IN (SELECT id FROM {schema}.deliveries_delivered_default WHERE finished_at < %s LIMIT %s);

-- name: purge_failed_leftovers
-- `outbox purge`: the same for failed deliveries (their own, longer cutoff).
DELETE FROM {schema}.deliveries_failed_default
 WHERE id IN (SELECT id FROM {schema}.deliveries_failed_default WHERE finished_at < %s LIMIT %s);

-- name: purge_attempt_leftovers
-- `outbox purge`: a small batch of attempts in the DEFAULT leaf older than the longest cutoff.
DELETE FROM {schema}.delivery_attempts_default
 WHERE id IN (SELECT id FROM {schema}.delivery_attempts_default WHERE attempted_at < %s LIMIT %s);

-- name: purge_event_leftovers
-- `outbox purge`: a small batch of the events in events_default older than the cutoff that nothing
-- needs any more: routed, and no delivery (live, or final and kept) refers to them. The probe names
-- the event's enqueued_at, which the final leaves' BRIN index answers; deliveries_live by its unique key.
DELETE FROM {schema}.events_default
 WHERE (position, enqueued_at) IN (
       SELECT e.position, e.enqueued_at FROM {schema}.events_default e
        WHERE e.enqueued_at < %s AND e.routed_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM {schema}.deliveries d
                           WHERE d.event_position = e.position AND d.event_enqueued_at = e.enqueued_at)
        LIMIT %s);

-- name: purge_intake_ids
-- `outbox purge`: a small batch of intake keys past the cutoff whose event is gone (a replay is
-- recognised for as long as its event is kept). The key's received_at is its event's enqueued_at, so
-- the probe reads one leaf (run-time pruning), not every leaf of events.
DELETE FROM {schema}.intake_ids
 WHERE (source, id) IN (SELECT k.source, k.id FROM {schema}.intake_ids k
                         WHERE k.received_at < %s
                           AND NOT EXISTS (SELECT 1 FROM {schema}.events e
                                            WHERE e.position = k.position AND e.enqueued_at = k.received_at)
                         LIMIT %s);

-- name: begin
-- Worker connections are in autocommit; their multi-statement work opens its transaction itself,
-- inside the pipeline, so no round trip is spent on BEGIN alone.
BEGIN;

-- name: commit
-- Closes the transaction `begin` opened, in the same pipeline flight as the work.
COMMIT;

-- name: listen
-- The worker's wake-up channel.
LISTEN {channel};

-- name: worker_session
-- Worker connections commit without waiting for the WAL flush: a commit lost in a PostgreSQL crash
-- only means a claim or result is redone, which at-least-once delivery allows; hosts keep full durability.
-- No JIT: the worker's queries are short, and compiling them costs more than it saves.
SET synchronous_commit TO off; SET jit TO off;

-- ==== metrics ====

-- name: metrics_snapshot
-- `outbox run --metrics-port`: the backlog gauges in one statement, run every few seconds by every
-- worker, so it reads only live rows, never the delivered/failed history: pending through
-- deliveries_due_idx (index-only), delivering through deliveries_leased_idx, blocked per subscription
-- through deliveries_subscription_status_idx, unrouted through events_unrouted_idx. The oldest waiting
-- delivery is the one with the lowest unfinished id (ids follow routing order: one router at a time),
-- so its created_at costs one primary-key lookup instead of a min(created_at) over the whole backlog.
-- Each count sits beside its min(id) on purpose: a lone min(id) is planned as a walk up the primary
-- key through the whole history. EXPLAIN ANALYZE on 1M deliveries with 45k unfinished: about 11 ms.
SELECT p.n AS pending, b.n AS blocked, w.n AS delivering, u.n AS unrouted,
       (SELECT count(*) FROM {schema}.subscriptions WHERE status = 'paused') AS paused,
       extract(epoch FROM now() - least(
           u.oldest,
           (SELECT created_at FROM {schema}.deliveries
             WHERE id = least(p.min_id, b.min_id, w.min_id) AND status IN ('blocked', 'pending', 'delivering'))))
           AS oldest_age
  FROM (SELECT count(*) AS n, min(id) AS min_id FROM {schema}.deliveries WHERE status = 'pending') AS p,
       (SELECT count(*) AS n, min(id) AS min_id FROM {schema}.deliveries WHERE status = 'delivering') AS w,
       (SELECT coalesce(sum(c.n), 0) AS n, min(c.min_id) AS min_id
          FROM {schema}.subscriptions s
         CROSS JOIN LATERAL (SELECT count(*) AS n, min(id) AS min_id FROM {schema}.deliveries
                              WHERE subscription_id = s.id AND status = 'blocked') AS c) AS b,
       (SELECT count(*) AS n,
               (SELECT enqueued_at FROM {schema}.events WHERE routed_at IS NULL ORDER BY position LIMIT 1) AS oldest
          FROM {schema}.events WHERE routed_at IS NULL) AS u;

-- name: metrics_partitions
-- `outbox run --metrics-port`: how far ahead of now each time-partitioned table has ranged leaves (the upper
-- bound of its last leaf; negative: new rows go to its DEFAULT leaf; no ranged leaf at all: 0). Reads the
-- catalogue only (pg_inherits, pg_class), never the tables.
SELECT t.parent, extract(epoch FROM coalesce(max(l.upper_bound), now()) - now()) AS ahead
  FROM unnest(ARRAY['events', 'deliveries_delivered', 'deliveries_failed', 'delivery_attempts']) AS t(parent)
  LEFT JOIN LATERAL {schema}.partition_leaves(t.parent) AS l ON true
 GROUP BY t.parent
 ORDER BY t.parent;

-- name: catalogue_version
-- Hosts, at most every OUTBOX_CATALOGUE_TTL seconds: has the catalogue changed since it was loaded?
SELECT version FROM {schema}.catalogue_version;

-- name: catalogue
-- Hosts: the whole catalogue, with its version, read in one statement.
SELECT v.version, e.type, e.source, e.schema, e.is_enabled, e.slug
  FROM {schema}.catalogue_version v
  LEFT JOIN {schema}.event_types e ON true;

-- name: list_event_types
-- `outbox event-types list/export`.
SELECT slug, type, name, source, schema, is_enabled, description, operational FROM {schema}.event_types ORDER BY slug;

-- name: get_event_type
-- `outbox event-types show SLUG`.
SELECT slug, type, name, source, schema, is_enabled, description, operational FROM {schema}.event_types WHERE slug = %s;

-- name: get_event_type_for_update
-- `outbox event-types update/enable/disable`: the entry, locked until the change is written.
SELECT slug, type, name, source, schema, is_enabled, description, operational FROM {schema}.event_types WHERE slug = %s
   FOR UPDATE;

-- name: insert_event_type
-- `outbox event-types add`.
INSERT INTO {schema}.event_types (slug, type, name, source, schema, is_enabled, description)
VALUES (%(slug)s, %(type)s, %(name)s, %(source)s, %(schema)s, %(is_enabled)s, %(description)s)
RETURNING slug;

-- name: upsert_event_type
-- `outbox event-types import`: by slug; a row that is already the same is not touched (idempotent, and the
-- catalogue version only moves when something changed).
INSERT INTO {schema}.event_types AS e (slug, type, name, source, schema, is_enabled, description)
VALUES (%(slug)s, %(type)s, %(name)s, %(source)s, %(schema)s, %(is_enabled)s, %(description)s)
ON CONFLICT (slug) DO UPDATE
   SET type = EXCLUDED.type, name = EXCLUDED.name, source = EXCLUDED.source, schema = EXCLUDED.schema,
       is_enabled = EXCLUDED.is_enabled, description = EXCLUDED.description, updated_at = now()
 WHERE (e.type, e.name, e.source, e.schema, e.is_enabled, e.description)
       IS DISTINCT FROM (EXCLUDED.type, EXCLUDED.name, EXCLUDED.source, EXCLUDED.schema, EXCLUDED.is_enabled,
                         EXCLUDED.description)
RETURNING slug;

-- name: update_event_type
-- `outbox event-types update SLUG` (the whole entry, checked again) and enable/disable.
UPDATE {schema}.event_types
   SET slug = %(slug)s, type = %(type)s, name = %(name)s, source = %(source)s, schema = %(schema)s,
       is_enabled = %(is_enabled)s, description = %(description)s, updated_at = now()
 WHERE slug = %(current_slug)s
RETURNING slug;

-- name: delete_event_type
-- `outbox event-types remove SLUG`.
DELETE FROM {schema}.event_types WHERE slug = %s RETURNING slug;

-- name: find_event_types
-- `GET /api/v1/event-types`: the catalogue, optionally only one type and/or only enabled or disabled ones.
SELECT slug, type, name, source, schema, is_enabled, description, operational FROM {schema}.event_types
 WHERE (%(type)s::text IS NULL OR type = %(type)s::text)
   AND (%(is_enabled)s::boolean IS NULL OR is_enabled = %(is_enabled)s::boolean)
 ORDER BY slug;

-- name: insert_api_client
-- `outbox clients add`: a new API client (its secret sealed by the SecretBox).
INSERT INTO {schema}.api_clients (client_id, scopes, secret, secret_encrypted)
VALUES (%(client_id)s, %(scopes)s, %(secret)s, %(secret_encrypted)s)
ON CONFLICT (client_id) DO NOTHING
RETURNING created_at;

-- name: list_api_clients
-- `outbox clients list`: every client without its secret.
SELECT client_id, scopes, created_at, rotated_at FROM {schema}.api_clients ORDER BY client_id;

-- name: get_api_client
-- The service's look-up of the client a JWT names (cached for OUTBOX_CLIENT_CACHE_TTL).
SELECT client_id, scopes, secret, secret_encrypted, created_at, rotated_at
  FROM {schema}.api_clients WHERE client_id = %s;

-- name: rotate_api_client
-- `outbox clients rotate`: a new secret; the old one stops working when the services' caches expire.
UPDATE {schema}.api_clients SET secret = %s, secret_encrypted = %s, rotated_at = now()
 WHERE client_id = %s
RETURNING client_id;

-- name: delete_api_client
-- `outbox clients remove`: its subscriptions stay, owned by the operator (owner set NULL by the foreign key).
DELETE FROM {schema}.api_clients WHERE client_id = %s RETURNING client_id;

-- name: sealed_client_secrets
-- `outbox secrets rotate`: every client's stored secret, locked for re-encryption.
SELECT client_id, secret, secret_encrypted FROM {schema}.api_clients ORDER BY client_id FOR UPDATE;

-- name: reseal_client_secret
-- `outbox secrets rotate`: one client's secret re-encrypted with the first key.
UPDATE {schema}.api_clients SET secret = %s, secret_encrypted = %s WHERE client_id = %s;

-- name: intake_events
-- `outbox serve`: the events of one or more POSTs to /cloudevents in one statement (the documents as
-- one JSON array: one parameter to send, parsed once, each element kept as its own text; with each
-- event its request's number in the group). A (source, id) already taken in is a replay when its
-- digest (SHA-256 of the event as jsonb text: member order and white space do not count; without the
-- Distributed Tracing attributes traceparent and tracestate, which a traced producer's retry changes; a
-- key stored before that rule may hold the whole event's digest, also a replay) is the stored
-- one, or unknown (a key from before 014): skipped, the request still succeeds. With another digest,
-- or repeated in the group with another digest, its request is refused whole: none of its events is
-- stored, and the statement returns the conflicting keys with the request's number. Positions are
-- drawn from the events' position sequence (%s, resolved once) in input order, so intake_ids can name
-- the event it stored. A concurrent statement with the same key waits on the key's row and then
-- stores nothing; when that row was committed after this statement's snapshot (its digest unseen),
-- intake_raced() undoes the whole statement with a serialization failure, and the writer runs it
-- again. A skipped row leaves a gap in the positions, as a rollback does. Returns the keys stored
-- (request NULL) and the refused requests' conflicting keys; queues a NOTIFY for the commit when a
-- worker is idle and something was stored.
WITH input AS (
    SELECT t.source, t.id, t.document, t.request, t.ord,
           sha256(convert_to((t.document::jsonb - 'traceparent' - 'tracestate')::text, 'UTF8')) AS digest
      FROM ROWS FROM (unnest(%b::text[]), unnest(%b::text[]), json_array_elements(%s::json), unnest(%b::int[]))
           WITH ORDINALITY AS t (source, id, document, request, ord)
),
ranked AS (
    SELECT i.*, k.source IS NOT NULL AS known, k.digest AS known_digest,
           first_value(i.digest) OVER (PARTITION BY i.source, i.id ORDER BY i.ord) AS first_digest
      FROM input i LEFT JOIN {schema}.intake_ids k ON k.source = i.source AND k.id = i.id
),
conflicts AS (
    SELECT source, id, request FROM ranked
     WHERE CASE WHEN known
                THEN known_digest <> digest  -- and not a key stored with the whole event's digest (before tracing)
                     AND known_digest <> sha256(convert_to(document::jsonb::text, 'UTF8'))
                ELSE first_digest <> digest END
),
numbered AS (
    -- nextval is evaluated after the sort (PostgreSQL postpones volatile output expressions past it).
    SELECT r.source, r.id, r.document, r.digest, r.known, nextval(%s::regclass) AS position
      FROM ranked r
     WHERE r.request NOT IN (SELECT request FROM conflicts)
     ORDER BY r.ord
),
keys AS (
    INSERT INTO {schema}.intake_ids (source, id, position, digest)
    SELECT source, id, position, digest FROM numbered
     ORDER BY source, id  -- one lock order for every statement: overlapping retries cannot deadlock
    ON CONFLICT DO NOTHING
    RETURNING source, id, position, received_at
),
raced AS (
    SELECT {schema}.intake_raced()
      FROM numbered n
     WHERE NOT n.known AND NOT EXISTS (SELECT 1 FROM keys k WHERE k.source = n.source AND k.id = n.id)
     LIMIT 1
),
stored AS (
    -- enqueued_at = the key's received_at: purge finds a key's event in its leaf by both.
    INSERT INTO {schema}.events (position, event, enqueued_at)
    SELECT n.position, n.document, k.received_at FROM numbered n JOIN keys k ON k.position = n.position
    RETURNING position
),
woken AS (
    SELECT pg_notify(%s, '') WHERE EXISTS (SELECT 1 FROM stored) AND EXISTS (SELECT 1 FROM {schema}.idle_workers)
)
SELECT k.source, k.id, NULL::int AS request FROM keys k LEFT JOIN woken ON true
UNION ALL
SELECT source, id, request FROM conflicts
UNION ALL
SELECT NULL, NULL, NULL FROM raced;  -- never a row: intake_raced() raises (its own branch, so it always runs)

-- name: events_position_sequence
-- `outbox serve`: the sequence behind events.position, for intake_events.
SELECT pg_get_serial_sequence(format('%%I.events', %s::text), 'position');

-- ==== outbox serve: the shared client rate (014) ====

-- name: take_client_request
-- `outbox serve`: one request from the client's token bucket, shared by every process (client_rates):
-- refilled at %(rate)s per second since its last request, up to %(burst)s, and one token taken when a
-- whole one is there. The conflict update runs with the row locked, so concurrent requests of one
-- client (any process) take their turns; clock_timestamp() is read after the lock. Returns whether
-- the request may go on and the tokens left (when refused: how far from a whole token it is).
INSERT INTO {schema}.client_rates AS r (client_id, tokens, at, taken)
VALUES (%(client)s, %(burst)s::float8 - 1, clock_timestamp(), true)
ON CONFLICT (client_id) DO UPDATE
   SET (tokens, at, taken) = (
           SELECT CASE WHEN f.tokens >= 1 THEN f.tokens - 1 ELSE f.tokens END, f.now, f.tokens >= 1
             FROM (SELECT least(%(burst)s::float8,
                                r.tokens + %(rate)s::float8 * greatest(0, extract(epoch FROM c.now - r.at))::float8)
                          AS tokens,
                          c.now
                     FROM (SELECT clock_timestamp() AS now) c) f)
RETURNING taken, tokens;


-- ==== Failures announce themselves (issue 19 §3: operational events, auto-disable; sql/017) ====

-- name: mark_failing
-- The recorder, for a batch with failed attempts: a failure streak starts for each subscription that
-- has none (DO NOTHING takes no row lock: workers never wait on each other here).
INSERT INTO {schema}.failure_streaks (subscription_id, failing_since)
SELECT DISTINCT s, now() FROM unnest(%b::uuid[]) AS s ORDER BY s
ON CONFLICT (subscription_id) DO NOTHING;

-- name: clear_failing
-- The recorder: a 2xx for subscriptions it knows to be failing ends their streak (in id order).
DELETE FROM {schema}.failure_streaks WHERE subscription_id = ANY (%b::uuid[]);

-- name: disable_failing
-- The auto-disable round (OUTBOX_DISABLE_AFTER): an active subscription whose streak began longer ago
-- than the limit is paused with the reason and announces it (subscription-disabled), unless a delivery
-- succeeded since its streak began (a 2xx recorded by a worker that did not know of the streak): then
-- the streak ends instead. Its deliveries stay as they are (they wait); the streak row goes either way.
-- Several workers may run it at once: the UPDATE's status check lets one of them pause (and announce).
WITH due AS (
    SELECT f.subscription_id, f.failing_since,
           EXISTS (SELECT 1 FROM {schema}.deliveries x
                    WHERE x.subscription_id = f.subscription_id AND x.status = 'delivered'
                      AND x.finished_at >= f.failing_since) AS healed
      FROM {schema}.failure_streaks f
      JOIN {schema}.subscriptions s ON s.id = f.subscription_id AND s.status = 'active'
     WHERE f.failing_since < now() - make_interval(secs => %(after)s)
), ended AS (
    DELETE FROM {schema}.failure_streaks f USING due d WHERE f.subscription_id = d.subscription_id
), disabled AS (
    UPDATE {schema}.subscriptions s
       SET status = 'paused', updated_at = now(),
           paused_reason = 'disabled after ' || %(after_text)s || ' of failures: no delivery succeeded since '
                           || to_char(d.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                           || ' (OUTBOX_DISABLE_AFTER)'
      FROM due d
     WHERE s.id = d.subscription_id AND NOT d.healed AND s.status = 'active'
    RETURNING s.id, s.callback_url, s.paused_reason, d.failing_since
)
SELECT x.id, x.callback_url, x.paused_reason, {schema}.announce(
           'nl.overheid.outbox.subscription-disabled', %(source)s, x.id::text,
           jsonb_build_object(
               'subscriptionId', x.id, 'callbackUrl', {schema}.public_callback(x.callback_url),
               'reason', x.paused_reason,
               'failingSince', to_char(x.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'disableAfterSeconds', %(after)s::float8,
               'lastStatusCode', l.last_status_code, 'lastError', l.last_error,
               'disabledAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
  FROM disabled x
  LEFT JOIN LATERAL (SELECT d.last_status_code, d.last_error FROM {schema}.deliveries d
                      WHERE d.subscription_id = x.id AND d.status IN ('pending', 'delivering', 'failed')
                        AND d.last_error IS NOT NULL  -- 'delivering': claimed again, it keeps its last answer
                      ORDER BY d.updated_at DESC LIMIT 1) AS l ON true;

-- ==== the console (/console/) and `outbox operators` (017) ====

-- name: insert_operator
-- `outbox operators add`: a new account; nothing when the name is taken.
INSERT INTO {schema}.operators (name, role, password_hash) VALUES (%s, %s, %s)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: set_operator_password
-- `outbox operators passwd`: a new password ends every session of the account.
WITH changed AS (
    UPDATE {schema}.operators SET password_hash = %(hash)s, updated_at = now() WHERE name = %(name)s RETURNING name
), ended AS (
    DELETE FROM {schema}.operator_sessions WHERE operator IN (SELECT name FROM changed)
)
SELECT name FROM changed;

-- name: set_operator_role
-- `outbox operators add --replace`-free role change (`outbox operators role`).
UPDATE {schema}.operators SET role = %s, updated_at = now() WHERE name = %s RETURNING name;

-- name: delete_operator
-- `outbox operators remove` (its sessions go with it: ON DELETE CASCADE).
DELETE FROM {schema}.operators WHERE name = %s RETURNING name;

-- name: list_operators
-- `outbox operators list`: never the hash.
SELECT o.name, o.role, o.created_at, o.updated_at,
       (SELECT count(*) FROM {schema}.operator_sessions s WHERE s.operator = o.name AND s.expires_at > now()) AS sessions
  FROM {schema}.operators o
 ORDER BY o.name;

-- name: get_operator_for_signin
-- Sign-in: the account's role and hash.
SELECT name, role, password_hash FROM {schema}.operators WHERE name = %s;

-- name: update_operator_hash
-- Sign-in: argon2's parameters changed since the hash was made, so it is made again.
UPDATE {schema}.operators SET password_hash = %s WHERE name = %s AND password_hash = %s;

-- name: signin_locked
-- Sign-in: is the account name or the client address locked (at least %(limit)s / %(address_limit)s
-- failures, the last one less than %(lockout)s seconds ago)?
SELECT EXISTS (
    SELECT 1 FROM {schema}.signin_failures
     WHERE ((kind = 'account' AND key = %(name)s AND failures >= %(limit)s)
         OR (kind = 'address' AND key = %(address)s AND failures >= %(address_limit)s))
       AND last_at > now() - make_interval(secs => %(lockout)s));

-- name: record_signin_failure
-- Sign-in failed: one more failure for the name and for the address; a count whose last failure is
-- older than the lockout time starts again.
INSERT INTO {schema}.signin_failures AS f (kind, key, failures)
VALUES ('account', %(name)s, 1), ('address', %(address)s, 1)
ON CONFLICT (kind, key) DO UPDATE
   SET failures = CASE WHEN f.last_at <= now() - make_interval(secs => %(lockout)s) THEN 1 ELSE f.failures + 1 END,
       first_at = CASE WHEN f.last_at <= now() - make_interval(secs => %(lockout)s) THEN now() ELSE f.first_at END,
       last_at = now();

-- name: clear_signin_failures
-- Signed in: the account's count starts again (the address's does not: one good account must not
-- clear an address that guesses others).
DELETE FROM {schema}.signin_failures WHERE kind = 'account' AND key = %s;

-- name: insert_operator_session
-- Signed in: the session (its token's SHA-256), ending at the latest %s seconds from now.
INSERT INTO {schema}.operator_sessions (token_hash, operator, expires_at)
VALUES (%s, %s, now() + make_interval(secs => %s));

-- name: touch_operator_session
-- Every console request: the session of this token, if neither its idle time (%(idle)s seconds) nor its
-- absolute end has passed, with the account's current role; its idle time starts again.
UPDATE {schema}.operator_sessions s
   SET last_seen_at = now()
  FROM {schema}.operators o
 WHERE s.token_hash = %(token_hash)s AND o.name = s.operator
   AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => %(idle)s)
RETURNING o.name, o.role;

-- name: delete_operator_session
-- Sign-out, or a session found expired.
DELETE FROM {schema}.operator_sessions WHERE token_hash = %s;

-- name: purge_operator_sessions
-- At sign-in: sessions past their end (absolute or idle) go.
DELETE FROM {schema}.operator_sessions
 WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => %s);

-- name: insert_audit
-- Every console action: who, what, which object, a detail (never a secret).
INSERT INTO {schema}.console_audit (operator, action, object_kind, object_id, detail)
VALUES (%s, %s, %s, %s, %s)
RETURNING id, at;

-- name: audit_for_object
-- A page's audit entries: what was done to its object, newest first.
SELECT at, operator, action, detail FROM {schema}.console_audit
 WHERE object_kind = %s AND object_id = %s
 ORDER BY at DESC, id DESC
 LIMIT %s;

-- name: console_overview
-- The overview: deliveries per state, the oldest pending delivery's age (seconds), deliveries finished
-- and failed in the last hour. Counted through the status and finish indexes.
SELECT (SELECT coalesce(jsonb_object_agg(status, n), '{{}}'::jsonb)
          FROM (SELECT status, count(*) AS n FROM {schema}.deliveries GROUP BY status) c) AS states,
       (SELECT extract(epoch FROM now() - min(created_at)) FROM {schema}.deliveries
         WHERE status IN ('blocked', 'pending', 'delivering')) AS oldest_pending,
       (SELECT count(*) FROM {schema}.deliveries WHERE status = 'delivered' AND finished_at > now() - interval '1 hour')
           AS delivered_last_hour,
       (SELECT count(*) FROM {schema}.delivery_attempts
         WHERE attempted_at > now() - interval '1 hour' AND (error IS NOT NULL OR status_code NOT BETWEEN 200 AND 299))
           AS failed_attempts_last_hour,
       (SELECT count(*) FROM {schema}.deliveries WHERE status = 'failed' AND finished_at > now() - interval '1 hour')
           AS failed_last_hour;

-- name: console_subscription_health
-- The console's subscriptions: per subscription, the last success, the failures in a row since it (the
-- failed attempts of its unfinished and failed deliveries that changed after it: each attempt of a
-- delivery not yet delivered failed), what waits and what failed, its pace (the share of its rate the
-- workers use after 429s) and concurrency limit. finished_at prunes the leaves.
WITH last AS (
    SELECT s.id,
           (SELECT max(d.finished_at) FROM {schema}.deliveries d
             WHERE d.subscription_id = s.id AND d.status = 'delivered') AS last_success
      FROM {schema}.subscriptions s
     WHERE %(id)s::uuid IS NULL OR s.id = %(id)s::uuid
)
SELECT l.id, l.last_success,
       (SELECT coalesce(sum(d.attempts), 0) FROM {schema}.deliveries d
         WHERE d.subscription_id = l.id AND d.status IN ('pending', 'delivering')
           AND d.updated_at > coalesce(l.last_success, '-infinity'))
     + (SELECT coalesce(sum(d.attempts), 0) FROM {schema}.deliveries d
         WHERE d.subscription_id = l.id AND d.status = 'failed'
           AND d.finished_at > coalesce(l.last_success, '-infinity')) AS failures_in_a_row,
       (SELECT count(*) FROM {schema}.deliveries d
         WHERE d.subscription_id = l.id AND d.status IN ('blocked', 'pending', 'delivering')) AS waiting,
       (SELECT count(*) FROM {schema}.deliveries d WHERE d.subscription_id = l.id AND d.status = 'failed') AS failed,
       p.pace, p.concurrency_limit
  FROM last l
  LEFT JOIN {schema}.subscription_pace p ON p.subscription_id = l.id;

-- ==== deliveries and events as operators read them (`outbox deliveries`, `outbox events`, the console; 019) ====

-- name: deliveries_page
-- One page of deliveries, newest first, after the cursor (the id of the previous page's last row).
-- Each state is a branch of its own with its state written out, so the planner prunes it to that
-- state's leaves and walks them backwards by id (with a subscription: deliveries_subscription_status_idx
-- (subscription_id, status, id); else the leaves' primary keys); every branch stops after `limit` rows
-- however deep the cursor, and the branches are merged. Each row's event is read by its key in a
-- LATERAL subquery (OFFSET 0 keeps it one: else the planner, pricing a probe of every events leaf, hashes
-- the whole events table). A subject or event id is looked up first (events_subject_idx,
-- events_event_id_idx). Run unprepared (custom plans): a filter not given ("IS NULL OR"), and a state not
-- asked for, fold away.
WITH matching AS NOT MATERIALIZED (
    SELECT d.id, e.event ->> 'id' AS event_id, e.event ->> 'source' AS source, e.event ->> 'type' AS type,
           e.event ->> 'subject' AS subject, d.subscription_id, d.status, d.attempts, d.last_status_code,
           d.last_error, d.next_attempt_at, e.enqueued_at, d.created_at, d.updated_at, d.finished_at
      FROM {schema}.deliveries d
     CROSS JOIN LATERAL (SELECT x.event, x.enqueued_at FROM {schema}.events x
                          WHERE x.position = d.event_position AND x.enqueued_at = d.event_enqueued_at
                         OFFSET 0) AS e
     WHERE (%(subscription)s::uuid IS NULL OR d.subscription_id = %(subscription)s::uuid)
       AND (%(after)s::bigint IS NULL OR d.id < %(after)s::bigint)
       AND (%(since)s::timestamptz IS NULL OR d.event_enqueued_at >= %(since)s::timestamptz)
       AND (%(until)s::timestamptz IS NULL OR d.event_enqueued_at < %(until)s::timestamptz)
       AND (%(subject)s::text IS NULL OR d.event_enqueued_at = ANY (
               ARRAY(SELECT s.enqueued_at FROM {schema}.events s WHERE s.event ->> 'subject' = %(subject)s::text)))
       AND (%(event_id)s::text IS NULL OR d.event_enqueued_at = ANY (
               ARRAY(SELECT s.enqueued_at FROM {schema}.events s WHERE s.event ->> 'id' = %(event_id)s::text)))
       AND (%(type)s::text IS NULL OR e.event ->> 'type' = %(type)s::text)
       AND (%(subject)s::text IS NULL OR e.event ->> 'subject' = %(subject)s::text)
       AND (%(event_id)s::text IS NULL OR e.event ->> 'id' = %(event_id)s::text)
       AND (%(source)s::text IS NULL OR e.event ->> 'source' = %(source)s::text)
)
SELECT * FROM (
       (SELECT * FROM matching WHERE status = 'blocked' AND 'blocked' = ANY (%(states)s::text[]) ORDER BY id DESC LIMIT %(limit)s)
       UNION ALL
       (SELECT * FROM matching WHERE status = 'pending' AND 'pending' = ANY (%(states)s::text[]) ORDER BY id DESC LIMIT %(limit)s)
       UNION ALL
       (SELECT * FROM matching WHERE status = 'delivering' AND 'delivering' = ANY (%(states)s::text[]) ORDER BY id DESC LIMIT %(limit)s)
       UNION ALL
       (SELECT * FROM matching WHERE status = 'delivered' AND 'delivered' = ANY (%(states)s::text[]) ORDER BY id DESC LIMIT %(limit)s)
       UNION ALL
       (SELECT * FROM matching WHERE status = 'failed' AND 'failed' = ANY (%(states)s::text[]) ORDER BY id DESC LIMIT %(limit)s)
) AS page
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: deliveries_count
-- How many deliveries a filter matches (the console's "retry all N matching" confirmation).
SELECT count(*)
  FROM {schema}.deliveries d
  JOIN {schema}.events e ON e.position = d.event_position AND e.enqueued_at = d.event_enqueued_at
 WHERE d.status = ANY (%(states)s::text[])
   AND (%(subscription)s::uuid IS NULL OR d.subscription_id = %(subscription)s::uuid)
   AND (%(since)s::timestamptz IS NULL OR d.event_enqueued_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR d.event_enqueued_at < %(until)s::timestamptz)
   AND (%(type)s::text IS NULL OR e.event ->> 'type' = %(type)s::text)
   AND (%(subject)s::text IS NULL OR e.event ->> 'subject' = %(subject)s::text)
   AND (%(event_id)s::text IS NULL OR e.event ->> 'id' = %(event_id)s::text)
   AND (%(source)s::text IS NULL OR e.event ->> 'source' = %(source)s::text);

-- name: delivery_get
-- `outbox deliveries show ID`: the delivery, its event and its subscription's public callback.
SELECT d.id, d.event_position, d.event_enqueued_at, e.event, d.subscription_id, s.callback_url, d.status,
       d.ordering_key, d.attempts, d.last_status_code, d.last_error, d.next_attempt_at, d.leased_until,
       e.enqueued_at, d.created_at, d.updated_at, d.finished_at
  FROM {schema}.deliveries d
  JOIN {schema}.events e ON e.position = d.event_position AND e.enqueued_at = d.event_enqueued_at
  JOIN {schema}.subscriptions s ON s.id = d.subscription_id
 WHERE d.id = %(id)s;

-- name: delivery_attempts
-- Its attempts, oldest first, with the first `excerpt` characters of each answer.
SELECT id, attempted_at, duration_ms, status_code, error, left(response_body, %(excerpt)s) AS response_excerpt,
       octet_length(response_body) AS response_bytes
  FROM {schema}.delivery_attempts
 WHERE delivery_id = %(id)s
 ORDER BY attempted_at, id;

-- name: events_by_id
-- `outbox events show ID [--source S]`: events with this CloudEvents id (events_event_id_idx), newest first.
SELECT position, enqueued_at, routed_at, event
  FROM {schema}.events
 WHERE event ->> 'id' = %(event_id)s
   AND (%(source)s::text IS NULL OR event ->> 'source' = %(source)s::text)
 ORDER BY enqueued_at DESC, position DESC
 LIMIT %(limit)s;

-- name: events_by_subject
-- The console's event search by subject (events_subject_idx), newest first.
SELECT position, enqueued_at, routed_at, event
  FROM {schema}.events
 WHERE event ->> 'subject' = %(subject)s
 ORDER BY enqueued_at DESC, position DESC
 LIMIT %(limit)s;

-- name: event_deliveries
-- Where one event went: its deliveries, by (position, enqueued_at) so each leaf is reached by its own
-- index (the live leaf's unique key, the final leaves' BRIN on event_enqueued_at).
SELECT d.event_position, d.event_enqueued_at, d.id, d.subscription_id, s.callback_url, d.status, d.attempts,
       d.last_status_code, d.last_error, d.next_attempt_at, d.created_at, d.finished_at
  FROM {schema}.deliveries d
  JOIN {schema}.subscriptions s ON s.id = d.subscription_id
 WHERE d.event_position = ANY (%(positions)s::int8[]) AND d.event_enqueued_at = ANY (%(enqueued)s::timestamptz[])
 ORDER BY d.id;


-- ==== Consumers: inbound webhooks (issue 22; sql/020) ====

-- name: insert_mapping
-- A new mapping with its first version. Returns nothing when the id is taken.
WITH m AS (
    INSERT INTO {schema}.mappings (id, description) VALUES (%(id)s, %(description)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO {schema}.mapping_versions (mapping_id, version, expression, headers)
SELECT id, 1, %(expression)s, %(headers)s FROM m
RETURNING mapping_id, version;

-- name: add_mapping_version
-- A mapping's next version (the row lock on mappings orders concurrent changes); returns it, or nothing
-- when there is no such mapping. The description changes only when given.
WITH m AS (
    UPDATE {schema}.mappings
       SET current_version = current_version + 1, updated_at = now(),
           description = CASE WHEN %(set_description)s THEN %(description)s ELSE description END
     WHERE id = %(id)s
    RETURNING id, current_version
)
INSERT INTO {schema}.mapping_versions (mapping_id, version, expression, headers)
SELECT id, current_version, %(expression)s, %(headers)s FROM m
RETURNING mapping_id, version;

-- name: mapping
-- One mapping at its current version, or at the version asked for (%(version)s, NULL: current).
SELECT m.id, m.description, v.version, v.expression, v.headers, m.current_version, m.created_at, v.created_at,
       (SELECT coalesce(array_agg(c.name ORDER BY c.name), '{{}}') FROM {schema}.consumers c WHERE c.mapping_id = m.id)
  FROM {schema}.mappings m
  JOIN {schema}.mapping_versions v ON v.mapping_id = m.id AND v.version = coalesce(%(version)s, m.current_version)
 WHERE m.id = %(id)s;

-- name: list_mappings
-- Every mapping at its current version, by id, with the consumers that use it.
SELECT m.id, m.description, v.version, v.expression, v.headers, m.current_version, m.created_at, v.created_at,
       (SELECT coalesce(array_agg(c.name ORDER BY c.name), '{{}}') FROM {schema}.consumers c WHERE c.mapping_id = m.id)
  FROM {schema}.mappings m
  JOIN {schema}.mapping_versions v ON v.mapping_id = m.id AND v.version = m.current_version
 ORDER BY m.id;

-- name: mapping_history
-- A mapping's versions, newest first.
SELECT version, expression, headers, created_at
  FROM {schema}.mapping_versions WHERE mapping_id = %(id)s ORDER BY version DESC;

-- name: delete_mapping
-- Removes a mapping and its versions; a consumer that uses it makes this fail (foreign key), so the
-- caller asks `mapping_users` first.
DELETE FROM {schema}.mappings WHERE id = %(id)s RETURNING id;

-- name: insert_consumer
-- A new consumer; nothing when its name or endpoint is taken (the caller says which).
INSERT INTO {schema}.consumers (name, endpoint, mapping_id, target_type, target_id, is_enabled, verification,
                                secrets, secrets_encrypted, max_body_bytes, rate_limit, rate_burst)
VALUES (%(name)s, %(endpoint)s, %(mapping_id)s, %(target_type)s, %(target_id)s, %(is_enabled)s, %(verification)s,
        %(secrets)s, %(secrets_encrypted)s, %(max_body_bytes)s, %(rate_limit)s, %(rate_burst)s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: update_consumer
-- Every field of a consumer at once (the caller merged the change into what it read).
UPDATE {schema}.consumers
   SET name = %(name)s, endpoint = %(endpoint)s, mapping_id = %(mapping_id)s, target_type = %(target_type)s,
       target_id = %(target_id)s, is_enabled = %(is_enabled)s, verification = %(verification)s,
       secrets = %(secrets)s, secrets_encrypted = %(secrets_encrypted)s, max_body_bytes = %(max_body_bytes)s,
       rate_limit = %(rate_limit)s, rate_burst = %(rate_burst)s, updated_at = now()
 WHERE id = %(id)s
RETURNING id;

-- name: set_consumer_enabled
UPDATE {schema}.consumers SET is_enabled = %(enabled)s, updated_at = now() WHERE id = %(id)s RETURNING id;

-- name: delete_consumer
-- Removes a consumer with its receipts, failures and rate bucket.
DELETE FROM {schema}.consumers WHERE id = %(id)s RETURNING id;

-- name: event_type_slug_exists
SELECT 1 FROM {schema}.event_types WHERE slug = %s;

-- name: subscription_exists
SELECT 1 FROM {schema}.subscriptions WHERE id = %s::uuid;

-- name: consumer_taken
-- Which of a name and an endpoint another consumer than %(id)s holds (for the error of an add or update).
SELECT name = %(name)s, endpoint = %(endpoint)s
  FROM {schema}.consumers
 WHERE (name = %(name)s OR endpoint = %(endpoint)s) AND id IS DISTINCT FROM %(id)s::uuid;

-- name: list_consumers
-- Every consumer by name, with its failures waiting for a replay.
SELECT c.id, c.name, c.endpoint, c.mapping_id, c.target_type, c.target_id, c.is_enabled, c.verification,
       c.secrets, c.secrets_encrypted, c.max_body_bytes, c.rate_limit, c.rate_burst, c.created_at, c.updated_at,
       (SELECT count(*) FROM {schema}.consumer_failures f WHERE f.consumer_id = c.id AND f.replayed_at IS NULL)
  FROM {schema}.consumers c
 ORDER BY c.name;

-- name: consumer_by_key
-- One consumer by id (when %(key)s is one), name or endpoint.
SELECT c.id, c.name, c.endpoint, c.mapping_id, c.target_type, c.target_id, c.is_enabled, c.verification,
       c.secrets, c.secrets_encrypted, c.max_body_bytes, c.rate_limit, c.rate_burst, c.created_at, c.updated_at,
       (SELECT count(*) FROM {schema}.consumer_failures f WHERE f.consumer_id = c.id AND f.replayed_at IS NULL)
  FROM {schema}.consumers c
 WHERE c.id = %(id)s::uuid OR c.name = %(key)s OR c.endpoint = %(key)s
 ORDER BY c.id = %(id)s::uuid DESC, c.name = %(key)s DESC
 LIMIT 1;

-- name: hook_consumer
-- `outbox serve`, for /hooks/{endpoint}: the consumer with its mapping's current version.
SELECT c.id, c.name, c.endpoint, c.mapping_id, c.target_type, c.target_id, c.is_enabled, c.verification,
       c.secrets, c.secrets_encrypted, c.max_body_bytes, c.rate_limit, c.rate_burst, c.created_at, c.updated_at,
       0::bigint, v.version, v.expression, v.headers
  FROM {schema}.consumers c
  LEFT JOIN {schema}.mappings m ON m.id = c.mapping_id
  LEFT JOIN {schema}.mapping_versions v ON v.mapping_id = m.id AND v.version = m.current_version
 WHERE c.endpoint = %(endpoint)s;

-- name: consumer_events
-- `outbox serve`: the mapped events of one or more consumer requests in one statement (group commit, as
-- intake_events). Per request: its consumer, the verified webhook id (NULL: the method has none), the
-- event's (source, id), the event as stored, and its target subscription (NULL: route by subscriptions).
-- A request whose webhook id the consumer has recorded is a replay; an event whose (source, id) was
-- taken in before (by a consumer or by /cloudevents) is a duplicate: neither stores anything, and both
-- are answered as a success (a sender's retry). A new webhook id is recorded with the event it names,
-- whether that event is new or a duplicate. Concurrent statements with the same keys wait on each
-- other's rows (ON CONFLICT) and then store nothing. Returns per request whether its event was stored
-- and the event a replayed webhook id named when it was recorded.
WITH input AS (
    SELECT t.*, sha256(convert_to((t.document::jsonb - 'traceparent' - 'tracestate')::text, 'UTF8')) AS digest
      FROM ROWS FROM (unnest(%b::uuid[]), unnest(%b::text[]), unnest(%b::text[]), unnest(%b::text[]),
                      json_array_elements(%s::json), unnest(%b::uuid[]))
           WITH ORDINALITY AS t (consumer_id, webhook_id, source, id, document, target, ord)
),
receipts AS (
    INSERT INTO {schema}.consumer_receipts (consumer_id, webhook_id, event_source, event_id)
    SELECT consumer_id, webhook_id, source, id FROM input
     WHERE webhook_id IS NOT NULL
     ORDER BY consumer_id, webhook_id
    ON CONFLICT DO NOTHING
    RETURNING consumer_id, webhook_id
),
fresh AS (
    SELECT i.* FROM input i
     WHERE i.webhook_id IS NULL
        OR EXISTS (SELECT 1 FROM receipts r WHERE r.consumer_id = i.consumer_id AND r.webhook_id = i.webhook_id)
),
numbered AS (
    SELECT f.source, f.id, f.document, f.digest, f.target, f.ord, nextval(%s::regclass) AS position
      FROM fresh f
     WHERE NOT EXISTS (SELECT 1 FROM {schema}.intake_ids k WHERE k.source = f.source AND k.id = f.id)
     ORDER BY f.ord
),
keys AS (
    INSERT INTO {schema}.intake_ids (source, id, position, digest)
    SELECT source, id, position, digest FROM numbered
     ORDER BY source, id
    ON CONFLICT DO NOTHING
    RETURNING position, received_at
),
stored AS (
    INSERT INTO {schema}.events (position, event, enqueued_at, target_subscription)
    SELECT n.position, n.document, k.received_at, n.target FROM numbered n JOIN keys k ON k.position = n.position
    RETURNING position
),
woken AS (
    SELECT pg_notify(%s, '') WHERE EXISTS (SELECT 1 FROM stored) AND EXISTS (SELECT 1 FROM {schema}.idle_workers)
)
SELECT i.ord, EXISTS (SELECT 1 FROM numbered n JOIN keys k ON k.position = n.position WHERE n.ord = i.ord),
       r.event_source, r.event_id
  FROM input i
  LEFT JOIN woken ON true
  LEFT JOIN {schema}.consumer_receipts r
         ON r.consumer_id = i.consumer_id AND r.webhook_id = i.webhook_id
        AND NOT EXISTS (SELECT 1 FROM receipts n WHERE n.consumer_id = i.consumer_id AND n.webhook_id = i.webhook_id)
 ORDER BY i.ord;

-- name: take_consumer_request
-- `outbox serve`: one request from the consumer's token bucket (consumer_rates), as take_client_request.
INSERT INTO {schema}.consumer_rates AS r (consumer_id, tokens, at, taken)
VALUES (%(consumer)s, %(burst)s::float8 - 1, clock_timestamp(), true)
ON CONFLICT (consumer_id) DO UPDATE
   SET (tokens, at, taken) = (
           SELECT CASE WHEN f.tokens >= 1 THEN f.tokens - 1 ELSE f.tokens END, f.now, f.tokens >= 1
             FROM (SELECT least(%(burst)s::float8,
                                r.tokens + %(rate)s::float8 * greatest(0, extract(epoch FROM c.now - r.at))::float8)
                          AS tokens,
                          c.now
                     FROM (SELECT clock_timestamp() AS now) c) f)
RETURNING taken, tokens;

-- name: insert_consumer_failure
-- A request that passed verification and failed the mapping, the profile, the catalogue or its target.
INSERT INTO {schema}.consumer_failures (consumer_id, code, problems, mapping_version, body, headers, webhook_id)
VALUES (%(consumer_id)s, %(code)s, %(problems)s, %(mapping_version)s, %(body)s, %(headers)s, %(webhook_id)s)
RETURNING id, received_at;

-- name: consumer_failures
-- A consumer's failures, newest first (a keyset page: before %(before)s, NULL: from the newest);
-- %(open)s: only those not replayed.
SELECT id, consumer_id, received_at, code, problems, mapping_version, octet_length(body), headers, webhook_id,
       replayed_at, event_source, event_id
  FROM {schema}.consumer_failures
 WHERE consumer_id = %(consumer_id)s
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
   AND (NOT %(open)s OR replayed_at IS NULL)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: consumer_failure
-- One failure with its body, for showing and replaying.
SELECT id, consumer_id, received_at, code, problems, mapping_version, body, headers, webhook_id,
       replayed_at, event_source, event_id
  FROM {schema}.consumer_failures
 WHERE id = %(id)s;

-- name: failure_replayed
-- A replay stored (or found) the failure's event. Only once: a replay that lost a race changes nothing.
UPDATE {schema}.consumer_failures
   SET replayed_at = now(), event_source = %(source)s, event_id = %(event_id)s
 WHERE id = %(id)s AND replayed_at IS NULL
RETURNING id;

-- name: failure_failed_again
-- A replay that failed again: the failure now says why, with the version it was tried with.
UPDATE {schema}.consumer_failures
   SET code = %(code)s, problems = %(problems)s, mapping_version = %(mapping_version)s
 WHERE id = %(id)s AND replayed_at IS NULL
RETURNING id;

-- name: delete_consumer_failures
-- Removes failures of a consumer (all, or those with the given ids).
DELETE FROM {schema}.consumer_failures
 WHERE consumer_id = %(consumer_id)s AND (%(ids)s::int8[] IS NULL OR id = ANY (%(ids)s::int8[]));

-- name: purge_consumer_receipts
-- Webhook ids recorded before the cutoff (twice the longest tolerance window ago): their timestamps
-- are refused by now, so the id is no longer needed to tell a replay.
DELETE FROM {schema}.consumer_receipts WHERE received_at < %s;

-- name: sealed_consumer_secrets
-- `outbox secrets rotate`: every consumer's sealed verification secrets, locked until the re-encryption commits.
SELECT id, name, secrets, secrets_encrypted FROM {schema}.consumers WHERE secrets IS NOT NULL ORDER BY id FOR UPDATE;

-- name: reseal_consumer_secrets
UPDATE {schema}.consumers SET secrets = %s, secrets_encrypted = %s WHERE id = %s;

-- name: purge_consumer_receipts_batch
-- `outbox serve`, every minute: a batch of the webhook ids recorded before the cutoff (as purge_consumer_receipts).
DELETE FROM {schema}.consumer_receipts
 WHERE (consumer_id, webhook_id) IN (SELECT consumer_id, webhook_id FROM {schema}.consumer_receipts
                                      WHERE received_at < %s LIMIT %s);

-- name: purge_replayed_consumer_failures
-- `outbox purge`: kept requests replayed before the cutoff (their event is in the outbox); open ones stay
-- until an operator replays or removes them.
DELETE FROM {schema}.consumer_failures WHERE replayed_at < %s;
