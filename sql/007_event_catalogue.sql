-- 007_event_catalogue: the event catalogue (OpenConnector's Events): one row per CloudEvent type.
--
-- In its JSON form (CLI, later the API) the fields are OpenConnector's: name, slug, type, source,
-- schema, isEnabled, description. At enqueue, an event whose type is here and enabled has its `data`
-- validated against `schema` (JSON Schema, draft 2020-12 or draft-07) and its `source` checked against
-- `source` when set; a disabled type is not written. Hosts cache the catalogue and look at
-- `catalogue_version` at most every OUTBOX_CATALOGUE_TTL seconds, so a change reaches them within that.
CREATE TABLE event_types (
    slug        text        PRIMARY KEY CHECK (slug ~ '^[a-z0-9]+([-_.][a-z0-9]+)*$' AND length(slug) <= 100),
    type        text        NOT NULL UNIQUE CHECK (type ~ '^[!-~]+$'),
    name        text        NOT NULL CHECK (name <> ''),
    source      text        CHECK (source ~ '^[!-~]+$'),
    schema      jsonb       CHECK (jsonb_typeof(schema) IN ('object', 'boolean')),
    is_enabled  boolean     NOT NULL DEFAULT true,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row: bumped by every change of event_types, in the changing transaction.
CREATE TABLE catalogue_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint  NOT NULL
);
INSERT INTO catalogue_version (version) VALUES (0);

CREATE FUNCTION bump_catalogue_version() RETURNS trigger
LANGUAGE plpgsql
-- The outbox schema's names, whatever the changing session's search_path is.
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE catalogue_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_types_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_types
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalogue_version();
