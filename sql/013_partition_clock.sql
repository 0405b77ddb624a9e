-- 013_partition_clock: the time of day is an input of ensure_partitions.
--
-- Which leaves exist ahead depends on the instant the function runs at; taking it as a parameter
-- lets that logic be checked at any instant (midnight, a month's or a year's last second, both
-- daylight-saving changes) instead of at whatever time the suite happens to run. The default is
-- the database's clock (now()), which is what the workers use: the leaves' keys (enqueued_at,
-- finished_at, attempted_at) are written by that clock too. Bounds are UTC instants: date_bin from
-- a UTC origin, leaves named by their UTC start, whatever the session's TimeZone.

DROP FUNCTION ensure_partitions(interval, interval);

CREATE FUNCTION ensure_partitions(ahead interval, step interval, at timestamptz DEFAULT now())
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
    at := coalesce(at, now());
    PERFORM pg_advisory_xact_lock(hashtextextended('nlgov-outbox partitions ' || current_schema(), 0));
    FOR parent, key IN VALUES ('events', 'enqueued_at'), ('deliveries_delivered', 'finished_at'),
                              ('deliveries_failed', 'finished_at'), ('delivery_attempts', 'attempted_at') LOOP
        SELECT max(upper_bound) INTO last FROM partition_leaves(parent);
        start := date_bin(step, at, coalesce(last, timestamptz '2000-01-01 00:00:00+00'));
        IF last IS NOT NULL AND last > start THEN
            start := last;
        END IF;
        WHILE start < at + ahead LOOP
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
