-- 017_operational_events: failures announce themselves; subscriptions that only fail are disabled.
--
-- Operational events are CloudEvents the outbox writes about itself, in the transaction of what they
-- tell, under the prefix nl.overheid.outbox.:
--   nl.overheid.outbox.delivery-failed         a delivery failed for good (415, attempts exhausted,
--                                              abandoned); never for a delivery of an operational event
--   nl.overheid.outbox.subscription-paused     paused by a 410 Gone or by an operator (active -> paused)
--   nl.overheid.outbox.subscription-disabled   paused by OUTBOX_DISABLE_AFTER (every delivery failing)
-- They are built-in catalogue entries (event_types.operational): their schemas are here, an operator
-- may disable one (then it is not written) but not change or remove it. They are routed like any
-- event, but only to subscriptions that opted in with a `types` pattern starting with the prefix
-- (outbox._subscription.matches), and written only while an active subscription has such a pattern.
ALTER TABLE event_types ADD COLUMN operational boolean NOT NULL DEFAULT false;

INSERT INTO event_types (slug, type, name, description, operational, schema) VALUES
('outbox.delivery-failed', 'nl.overheid.outbox.delivery-failed', 'Delivery failed',
 'A delivery failed for good: the receiver answered 415, or every attempt failed. It waits in `failed` for `outbox retry`.',
 true, $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["deliveryId", "subscriptionId", "callbackUrl", "event", "attempts", "reason", "failedAt"],
  "additionalProperties": false,
  "properties": {
    "deliveryId": {"type": "integer", "description": "the failed delivery (outbox deliveries show ID)"},
    "subscriptionId": {"type": "string", "format": "uuid"},
    "callbackUrl": {"type": "string", "description": "the receiver, without user info, query or fragment"},
    "event": {
      "type": "object",
      "required": ["id", "source", "type"],
      "additionalProperties": false,
      "properties": {
        "id": {"type": "string"}, "source": {"type": "string"}, "type": {"type": "string"},
        "subject": {"type": ["string", "null"]}
      }
    },
    "attempts": {"type": "integer", "minimum": 0},
    "lastStatusCode": {"type": ["integer", "null"], "description": "the last answer's HTTP status; null: no answer"},
    "lastError": {"type": ["string", "null"], "description": "why the last attempt failed"},
    "reason": {"enum": ["unsupported-media-type", "attempts-exhausted", "abandoned"]},
    "failedAt": {"type": "string", "format": "date-time"}
  }
}$json$::jsonb),
('outbox.subscription-paused', 'nl.overheid.outbox.subscription-paused', 'Subscription paused',
 'A subscription was paused, by a 410 Gone of its receiver or by an operator. Its deliveries wait for `outbox subscriptions resume`.',
 true, $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["subscriptionId", "callbackUrl", "pausedBy", "reason", "pausedAt"],
  "additionalProperties": false,
  "properties": {
    "subscriptionId": {"type": "string", "format": "uuid"},
    "callbackUrl": {"type": "string", "description": "the receiver, without user info, query or fragment"},
    "pausedBy": {"enum": ["receiver", "operator"], "description": "receiver: it answered 410 Gone"},
    "operator": {"type": ["string", "null"], "description": "who paused it, where known (console, Django admin)"},
    "reason": {"type": "string", "description": "the subscription's paused reason"},
    "lastStatusCode": {"type": ["integer", "null"]},
    "pausedAt": {"type": "string", "format": "date-time"}
  }
}$json$::jsonb),
('outbox.subscription-disabled', 'nl.overheid.outbox.subscription-disabled', 'Subscription disabled',
 'Every delivery to a subscription failed for longer than OUTBOX_DISABLE_AFTER: it was paused. Its deliveries wait for `outbox subscriptions resume`.',
 true, $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["subscriptionId", "callbackUrl", "reason", "failingSince", "disableAfterSeconds", "disabledAt"],
  "additionalProperties": false,
  "properties": {
    "subscriptionId": {"type": "string", "format": "uuid"},
    "callbackUrl": {"type": "string", "description": "the receiver, without user info, query or fragment"},
    "reason": {"type": "string", "description": "the subscription's paused reason"},
    "failingSince": {"type": "string", "format": "date-time", "description": "the first failed attempt after its last 2xx"},
    "disableAfterSeconds": {"type": "number"},
    "lastStatusCode": {"type": ["integer", "null"]},
    "lastError": {"type": ["string", "null"]},
    "disabledAt": {"type": "string", "format": "date-time"}
  }
}$json$::jsonb)
ON CONFLICT DO NOTHING;

-- A subscription's current failure streak: since the first failed attempt after its last 2xx (any
-- worker's). The recorder inserts the row at a failure where there is none (ON CONFLICT DO NOTHING
-- takes no row lock: workers do not queue on it) and deletes it at a 2xx it knows of; the
-- auto-disable round deletes it where a delivery succeeded after failing_since (a 2xx another worker
-- recorded before it knew of the streak), and when it disables or an operator resumes.
CREATE TABLE failure_streaks (
    subscription_id uuid        PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    failing_since   timestamptz NOT NULL
);

-- A callback URL as operational events show it: no user info, query or fragment (any may hold a token).
CREATE FUNCTION public_callback(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT regexp_replace(regexp_replace(url, '[?#].*$', ''), '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1') $$;

-- Write one operational event (through insert_event: it wakes idle workers) unless its catalogue
-- entry is disabled or gone, or no active subscription has opted in to the prefix (nobody could
-- receive it), or `source` is NULL. Returns its position, or NULL when not written. Only failure paths
-- call it.
CREATE FUNCTION announce(kind text, source text, subject text, data jsonb) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF source IS NULL THEN  -- the recorder's retry without side effects (a batch that keeps failing)
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM event_types WHERE type = kind AND is_enabled AND operational) THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM subscriptions s, unnest(s.types) AS t(pattern)
                    WHERE s.status = 'active' AND t.pattern LIKE 'nl.overheid.outbox.%') THEN
        RETURN NULL;
    END IF;
    RETURN insert_event(json_build_object(
        'specversion', '1.0',
        'id', gen_random_uuid()::text,
        'source', source,
        'type', kind,
        'subject', subject,
        'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'datacontenttype', 'application/json',
        'data', data));
END
$$;

-- The built-in entries are the outbox's contract with its operators: they may be disabled (then not
-- written), not changed or removed. Enforced here, so every way in (CLI, API, import, SQL) obeys.
CREATE FUNCTION keep_operational_event_types() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.slug, NEW.type, NEW.name, NEW.source, NEW.schema, NEW.description, NEW.operational)
                           IS DISTINCT FROM
                           (OLD.slug, OLD.type, OLD.name, OLD.source, OLD.schema, OLD.description, OLD.operational) THEN
        RAISE EXCEPTION 'event type %: is a built-in operational event type: only isEnabled may change', OLD.slug
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER event_types_operational_kept
    BEFORE UPDATE OR DELETE ON event_types
    FOR EACH ROW WHEN (OLD.operational) EXECUTE FUNCTION keep_operational_event_types();
