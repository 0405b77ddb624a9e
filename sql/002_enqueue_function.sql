-- 002_enqueue_function: enqueue(jsonb) for hosts that are not written in Python.
--
--   SELECT outbox.enqueue('{"type": "nl.overheid.zaken.zaak-gekoppeld",
--                           "source": "urn:nld:oin:01823288444:openklant",
--                           "subject": "...", "data": {...}}');
--
-- Same rules as the Python `outbox.CloudEvent`: null attributes are unset,
-- `specversion` is "1.0", `id` defaults to a new UUID and `time` to now (UTC,
-- RFC 3339 with Z, a real date), `id`/`source`/`type` are non-empty strings,
-- attribute strings hold no control characters, `source`/`dataschema`/`dataref`
-- no whitespace, `datacontenttype` is a media type, extension names are
-- lowercase a-z0-9 of at most 20 characters with string, 32-bit integer or
-- boolean values, `data` and `data_base64` never both, and the serialized event
-- is at most `max_bytes`.
-- A broken event raises invalid_parameter_value (22023) naming the attribute
-- and the rule, before anything is written. Like the Python enqueue it writes
-- in the caller's transaction and wakes idle workers at commit.

CREATE FUNCTION enqueue(event jsonb, max_bytes integer DEFAULT 1048576) RETURNS bigint
LANGUAGE plpgsql
-- Resolve table names in the schema this migration ran in, whatever the
-- caller's search_path is.
SET search_path FROM CURRENT
AS $$
DECLARE
    ev       jsonb;
    attr     text;
    val      jsonb;
    body     text;
    new_pos  bigint;
    core     constant text[] := ARRAY['specversion', 'id', 'source', 'type', 'subject', 'time',
                                      'datacontenttype', 'dataschema', 'dataref', 'sequence',
                                      'sequencetype'];
BEGIN
    IF event IS NULL OR jsonb_typeof(event) <> 'object' THEN
        RAISE EXCEPTION 'event: must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A JSON null attribute means unset (top level only: nulls inside data stay).
    SELECT coalesce(jsonb_object_agg(key, value), '{}') INTO ev
      FROM jsonb_each(event) WHERE jsonb_typeof(value) <> 'null';

    IF ev ? 'specversion' AND ev->'specversion' <> '"1.0"' THEN
        RAISE EXCEPTION 'specversion: must be "1.0"' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ev := ev || jsonb_build_object('specversion', '1.0');
    IF NOT ev ? 'id' THEN
        ev := ev || jsonb_build_object('id', gen_random_uuid()::text);
    END IF;
    IF NOT ev ? 'time' THEN
        ev := ev || jsonb_build_object('time', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                                       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    END IF;

    FOREACH attr IN ARRAY ARRAY['id', 'source', 'type'] LOOP
        IF NOT ev ? attr THEN
            RAISE EXCEPTION '%: is required', attr USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    FOR attr, val IN SELECT key, value FROM jsonb_each(ev) LOOP
        IF attr = 'data' THEN
            CONTINUE;
        ELSIF attr = 'data_base64' THEN
            IF ev ? 'data' THEN
                RAISE EXCEPTION 'data_base64: must not be present together with data'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(val) <> 'string'
               OR (val #>> '{}') !~ '^[A-Za-z0-9+/]*={0,2}$' OR length(val #>> '{}') % 4 <> 0 THEN
                RAISE EXCEPTION 'data_base64: must be a base64 string' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF attr = ANY (core) THEN
            IF jsonb_typeof(val) <> 'string' OR val = '""' THEN
                RAISE EXCEPTION '%: must be a non-empty string', attr USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF (val #>> '{}') ~ '[[:cntrl:]]' THEN
                RAISE EXCEPTION '%: must not contain control characters (CR, LF, NUL, ...)', attr
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF attr IN ('source', 'dataschema', 'dataref') AND (val #>> '{}') ~ '\s' THEN
                RAISE EXCEPTION '%: must be a URI-reference (no whitespace)', attr
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF attr = 'datacontenttype' AND (val #>> '{}') !~
                 '^[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=("[^"]*"|[\w.+-]+))*$' THEN
                RAISE EXCEPTION 'datacontenttype: must be a media type, e.g. application/json'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF attr = 'time' THEN
                IF (val #>> '{}') !~ '^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$' THEN
                    RAISE EXCEPTION 'time: must be an RFC 3339 timestamp, e.g. 2025-10-10T00:00:00Z'
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                BEGIN
                    PERFORM (val #>> '{}')::timestamptz;
                EXCEPTION WHEN others THEN
                    RAISE EXCEPTION 'time: must be an RFC 3339 timestamp with a real date and time'
                        USING ERRCODE = 'invalid_parameter_value';
                END;
            END IF;
        ELSE
            IF attr !~ '^[a-z0-9]{1,20}$' THEN
                RAISE EXCEPTION '%: extension attribute names must be lowercase a-z0-9, at most 20 characters',
                    attr USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(val) NOT IN ('string', 'number', 'boolean')
               OR (jsonb_typeof(val) = 'number' AND (val::numeric <> trunc(val::numeric))) THEN
                RAISE EXCEPTION '%: extension attribute values must be a string, integer or boolean', attr
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(val) = 'number' AND val::numeric NOT BETWEEN -2147483648 AND 2147483647 THEN
                RAISE EXCEPTION '%: an integer extension value must fit in 32 bits (signed)', attr
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF jsonb_typeof(val) = 'string' AND (val #>> '{}') ~ '[[:cntrl:]]' THEN
                RAISE EXCEPTION '%: must not contain control characters (CR, LF, NUL, ...)', attr
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;
    END LOOP;

    body := ev::text;
    IF octet_length(body) > max_bytes THEN
        RAISE EXCEPTION 'event: serialized size % bytes exceeds the limit of % bytes', octet_length(body), max_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO events (event) VALUES (body::json) RETURNING position INTO new_pos;

    -- Wake idle workers at commit (see idle_workers in 001_initial.sql).
    IF EXISTS (SELECT 1 FROM idle_workers) THEN
        PERFORM pg_notify(current_schema() || '.events', '');
    END IF;
    RETURN new_pos;
END
$$;
