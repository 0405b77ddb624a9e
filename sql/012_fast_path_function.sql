-- 012_fast_path_function: the idle fast path's flight as one function call.
--
-- The fast path (010) sent five statements in a pipeline: BEGIN, the route lock, fast_guard,
-- fast_route, COMMIT. Measured on an idle worker (bench/throughput.py --only latency), that flight
-- took ~1.6 ms from the pooled connection to the last result, ~0.9 ms of it in the server, and the
-- client's pipeline handling cost an event-loop turn per statement. As one PL/pgSQL call, the
-- worker sends one statement in autocommit and reads one result, and the server caches each plan.
--
-- The steps and their snapshots are those of the three statements it replaces: a VOLATILE
-- function takes a fresh snapshot for each statement it runs (READ COMMITTED), so the checks after
-- the route lock see every routing committed before the lock was granted, and the insert after the
-- per-key locks sees every delivery of those keys committed before them.
--   1. the route lock (one router at a time per schema, as route_lock); not granted: 'locked';
--   2. the subscriptions are the version the worker read: else 'version';
--   3. the events are unrouted, stored exactly as the NOTIFYs said (any database user may NOTIFY:
--      a forged payload must not be routed, nor mark a real event routed), and no older event
--      waits unrouted (routing these now keeps event order): else 'order';
--   4. the per-key locks, in lock_keys' order (claims take them too: one order, no deadlock);
--   5. the deliveries as insert_deliveries makes them (blocked behind an unfinished one of their
--      key, ids in event order), except that a head the worker may claim (`p_claim`: it has a slot
--      and the subscription is neither rate-limited, held after a 429 nor slowed down, checked
--      here again, and all workers' requests in flight to it are below its concurrency limit) is
--      inserted already claimed (delivering, token, lease, attempt 1);
--   6. the events marked routed.
-- Returns the deliveries made, or one row whose `refused` names the failed assumption (nothing
-- written): the worker then takes the normal path.

DO $migration$
BEGIN
    EXECUTE format($create$
        CREATE FUNCTION %1$I.fast_path(
            p_route_lock text, p_version bigint,
            p_event_positions int8[], p_event_texts text[], p_event_enqueued_at timestamptz[],
            last_position bigint, first_at timestamptz, last_at timestamptz,
            p_positions int8[], p_enqueued_at timestamptz[], p_subscription_ids uuid[], p_keys text[],
            p_claim bool[], p_token uuid, p_lease float8, p_key_lock text, p_adaptive bool,
            p_initial float8)
        RETURNS TABLE (refused text, id bigint, event_position bigint, subscription_id uuid,
                       ordering_key text, status text, attempts int)
        LANGUAGE plpgsql
        -- Generic plans: custom ones were chosen for some statements and re-planned on every call
        -- (~0.28 ms of the call's ~0.88 ms); the generic ones prune the leaves when they start.
        SET plan_cache_mode TO force_generic_plan
        AS $body$
        #variable_conflict use_column
        BEGIN
            -- Each condition is its own statement, evaluated in turn: those after the lock see
            -- every routing committed before it was granted.
            IF NOT pg_try_advisory_xact_lock(hashtextextended(p_route_lock, 0)) THEN
                refused := 'locked';
            ELSIF (SELECT v.version FROM %1$I.subscriptions_version v) IS DISTINCT FROM p_version THEN
                refused := 'version';
            ELSIF EXISTS (SELECT 1 FROM %1$I.events e
                        WHERE e.routed_at IS NULL AND e.position <= last_position
                          AND e.position <> ALL (p_event_positions))
               OR (SELECT count(*) FROM %1$I.events e
                     JOIN unnest(p_event_positions, p_event_texts, p_event_enqueued_at) AS n(position, event, enqueued_at)
                       ON e.position = n.position AND e.enqueued_at = n.enqueued_at
                    WHERE e.routed_at IS NULL AND e.event::text = n.event
                      AND e.enqueued_at BETWEEN first_at AND last_at)
                  <> cardinality(p_event_positions) THEN
                refused := 'order';
            END IF;
            IF refused IS NOT NULL THEN  -- one row: the failed assumption, the other columns null
                RETURN NEXT;
                RETURN;
            END IF;
            PERFORM pg_advisory_xact_lock(locks.h)
               FROM (SELECT DISTINCT hashtextextended(p_key_lock || k.subscription_id::text || '/' || k.ordering_key, 0) AS h
                       FROM unnest(p_subscription_ids, p_keys) AS k(subscription_id, ordering_key)
                      WHERE k.ordering_key IS NOT NULL
                      ORDER BY 1) AS locks;
            RETURN QUERY
            WITH planned AS (
                SELECT u.*, row_number() OVER (PARTITION BY u.subscription_id, u.ordering_key ORDER BY u.position) AS nth
                  FROM unnest(p_positions, p_enqueued_at, p_subscription_ids, p_keys, p_claim)
                       AS u(position, enqueued_at, subscription_id, ordering_key, claim)
            ), decided AS MATERIALIZED (  -- materialized: `status` is read four times below
                SELECT r.position, r.enqueued_at, r.subscription_id, r.ordering_key,
                       CASE WHEN r.ordering_key IS NOT NULL AND (r.nth > 1 OR EXISTS (
                                SELECT 1 FROM %1$I.deliveries d
                                 WHERE d.subscription_id = r.subscription_id AND d.ordering_key = r.ordering_key
                                   AND d.status IN ('blocked', 'pending', 'delivering')))
                            THEN 'blocked'
                            WHEN r.claim AND NOT EXISTS (
                                SELECT 1 FROM %1$I.subscription_pace p
                                 WHERE p.subscription_id = r.subscription_id AND (p.pace < 1 OR p.hold_until > now()))
                             AND (NOT p_adaptive OR (  -- the shared concurrency limit, as the claim keeps to it
                                     SELECT count(*) FROM %1$I.deliveries f
                                      WHERE f.subscription_id = r.subscription_id AND f.status = 'delivering'
                                        AND f.leased_until >= now())
                                   < coalesce((SELECT floor(p.concurrency_limit) FROM %1$I.subscription_pace p
                                                WHERE p.subscription_id = r.subscription_id), p_initial))
                            THEN 'delivering'
                            ELSE 'pending' END AS status
                  FROM planned r
                  JOIN %1$I.subscriptions s ON s.id = r.subscription_id
            ), inserted AS (
                INSERT INTO %1$I.deliveries_live AS d
                       (event_position, event_enqueued_at, subscription_id, ordering_key, status, attempts,
                        claim_token, leased_until)
                SELECT c.position, c.enqueued_at, c.subscription_id, c.ordering_key, c.status,
                       CASE WHEN c.status = 'delivering' THEN 1 ELSE 0 END,
                       CASE WHEN c.status = 'delivering' THEN p_token END,
                       CASE WHEN c.status = 'delivering' THEN now() + make_interval(secs => p_lease) END
                  FROM decided c
                 ORDER BY c.position, c.subscription_id
                ON CONFLICT (event_position, subscription_id) DO NOTHING
                RETURNING d.id, d.event_position, d.subscription_id, d.ordering_key, d.status, d.attempts
            )
            SELECT NULL::text, i.id, i.event_position, i.subscription_id, i.ordering_key, i.status, i.attempts
              FROM inserted i;
            UPDATE %1$I.events e SET routed_at = now()
             WHERE e.position = ANY (p_event_positions) AND e.routed_at IS NULL
               AND e.enqueued_at BETWEEN first_at AND last_at;
        END
        $body$
    $create$, current_schema());
END
$migration$;
