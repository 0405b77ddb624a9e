-- 008_service: what `outbox serve` (the Notificaties API over HTTP) keeps.
--
-- api_clients: who may call the API. A client signs its requests' JWT (HS256) with its secret
-- (as Open Notificaties' clients do); its scopes say what it may do. The secret is stored the
-- way subscription secrets are: a Fernet token under OUTBOX_SECRET_KEY (secret_encrypted), or
-- plain text when the operator runs without a key (the CLI warns).
CREATE TABLE api_clients (
    client_id        text        PRIMARY KEY CHECK (client_id ~ '^[!-~]+$' AND length(client_id) <= 200),
    scopes           text[]      NOT NULL CHECK (
                         cardinality(scopes) > 0
                         AND scopes <@ ARRAY['notificaties.publiceren', 'notificaties.consumeren', 'outbox.beheer']),
    secret           text        NOT NULL,
    secret_encrypted boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    rotated_at       timestamptz
);

ALTER TABLE subscriptions
    -- The API client that created the subscription (it alone sees and changes it, with
    -- outbox.beheer's clients); NULL when an operator made it at the command line.
    -- A removed client's subscriptions become the operator's, so a client added later under the same
    -- id does not inherit them.
    ADD COLUMN owner text REFERENCES api_clients (client_id) ON DELETE SET NULL,
    -- The CloudEvents Subscriptions API's `source`: only events with exactly this source.
    ADD COLUMN source text CHECK (source <> ''),
    -- The Subscriptions API's `protocolsettings.headers`: sent with every request to the sink.
    ADD COLUMN headers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
    -- Open Notificaties' abonnement fields: `sendCloudevents`, and `cloudeventFilters`
    -- ([{"typeSubstring": …, "filters": {data key: value}}], any group may match).
    ADD COLUMN send_cloudevents boolean NOT NULL DEFAULT true,
    ADD COLUMN cloudevent_filters jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(cloudevent_filters) = 'array');

-- A subscription wants something: a kanaal, a type pattern, or (now) a cloudeventFilters group.
ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_check,
    ADD CONSTRAINT subscriptions_wants_check
        CHECK (kanalen <> '[]' OR types <> '{}' OR cloudevent_filters <> '[]');

CREATE INDEX subscriptions_owner_idx ON subscriptions (owner);

-- intake_ids: the (source, id) of every event taken in over HTTP, so that a producer's retried
-- POST stores nothing new (CloudEvents: source + id identify an event). `position` is the event
-- it stored; `outbox purge` deletes a key once its event is gone and the key is past the cutoff,
-- so a replay is recognised for as long as its event is kept.
CREATE TABLE intake_ids (
    source      text        NOT NULL,
    id          text        NOT NULL,
    position    bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);

CREATE INDEX intake_ids_received_idx ON intake_ids (received_at);
