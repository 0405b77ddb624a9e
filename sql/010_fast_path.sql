-- 010_fast_path: what an idle worker needs to route, claim and start a POST in one round trip.
--
-- 1. `subscriptions_version`: bumped by every change of `subscriptions`, in the changing
--    transaction. A worker keeps the subscriptions it last read together with the version it read
--    (before them); its fast path only writes while the version is still that one, so routing by a
--    stale copy falls back to the normal path instead of misrouting.
-- 2. `insert_event` (005) now puts the event into its NOTIFY: "<position> <enqueued_at> <event JSON>"
--    (enqueued_at in whole microseconds since 1970: exact, whatever the session's DateStyle; the
--    events leaf the worker's statements name) for the
--    first event a transaction enqueues, when that fits in a NOTIFY payload (under 8000 bytes);
--    otherwise, and for the transaction's later events, the empty payload as before (one folded
--    notification: the worker then takes the normal path). So a transaction that enqueues many
--    events queues at most one payload, and a big event never makes pg_notify fail.
--    `insert_events` (batches) and `outbox serve`'s intake keep the empty payload: a batch is
--    what the normal path's one pass routes best.

CREATE TABLE subscriptions_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint  NOT NULL
);
INSERT INTO subscriptions_version (version) VALUES (0);

CREATE FUNCTION bump_subscriptions_version() RETURNS trigger
LANGUAGE plpgsql
-- The outbox schema's names, whatever the changing session's search_path is.
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE subscriptions_version SET version = version + 1;
    RETURN NULL;
END
$$;

-- Per row, not per statement: the recorder runs statements on subscriptions that often change no
-- row (`record_preflight` within its minute, `retire_subscriptions` of an already paused one), and
-- those must not send every worker's fast path back to the normal one. Subscription changes are rare.
CREATE TRIGGER subscriptions_changed
    AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION bump_subscriptions_version();
CREATE TRIGGER subscriptions_truncated
    AFTER TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_subscriptions_version();

-- The schema's names are written into the body, as in 005 (a `SET search_path` clause costs
-- ~15 µs a call). The transaction-local setting `outbox.notified` says a payload went out already:
-- set_config(…, true) is undone at the transaction's end.
DO $migration$
BEGIN
    EXECUTE format($create$
        CREATE OR REPLACE FUNCTION %1$I.insert_event(document json) RETURNS bigint
        LANGUAGE plpgsql AS $body$
        DECLARE
            inserted bigint;
            at timestamptz;
            payload text;
        BEGIN
            INSERT INTO %1$I.events (event) VALUES (document) RETURNING position, enqueued_at INTO inserted, at;
            IF EXISTS (SELECT 1 FROM %1$I.idle_workers) THEN
                payload := '';
                IF current_setting('outbox.notified', true) IS DISTINCT FROM '1' THEN
                    payload := inserted::text || ' ' || (extract(epoch FROM at) * 1000000)::bigint::text
                               || ' ' || document::text;
                    IF octet_length(payload) >= 8000 THEN
                        payload := '';
                    ELSE
                        PERFORM set_config('outbox.notified', '1', true);
                    END IF;
                END IF;
                PERFORM pg_notify(%2$L, payload);
            END IF;
            RETURN inserted;
        END
        $body$
    $create$, current_schema(), current_schema() || '.events');
END
$migration$;
