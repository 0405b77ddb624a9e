-- 001_initial: events, subscriptions, deliveries, delivery attempts.
--
-- `outbox migrate` runs this file once, inside one transaction, with
-- `search_path` set to the outbox schema (default `outbox`), so every name
-- below lands in that schema and never collides with the host's tables.
-- `outbox sql` prints the migrations for a DBA to read before applying them.

-- One row per enqueued CloudEvent. Host transactions only ever INSERT here.
--
-- `position` is handed out at INSERT time. The router (worker) takes the
-- committed, unrouted rows in `position` order, so an event is always routed
-- after every event that was visible before it: for one ordering key that is
-- the order of commit (two host transactions that touch the same Zaak are
-- serialised by the host's own row locks, so the later commit also has the
-- later position).
CREATE TABLE events (
    position     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The event in the JSON event format, exactly as delivered in structured
    -- mode. `json` (not `jsonb`) keeps the bytes as the producer wrote them and
    -- is cheaper to insert: the worker sends it as-is. Nothing else is copied
    -- out of it at insert time (id, type, subject): the host pays for one
    -- column, as for a plain INSERT of the JSON; the router parses the event
    -- anyway to match it. Query it with event->>'type' and friends.
    event        json        NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    -- Set by the router once the event's deliveries exist.
    routed_at    timestamptz
);

-- What the router scans: only unrouted rows, so the index stays as small as
-- the backlog however many millions of routed events the table holds.
CREATE INDEX events_unrouted_idx ON events (position) WHERE routed_at IS NULL;

-- Workers that are idle, waiting for a NOTIFY. Enqueue notifies only when
-- this table has a row: PostgreSQL serialises the commits of notifying
-- transactions (a cluster-wide lock held through the commit flush), so under
-- load, while every worker is busy and polls by itself, hosts commit without
-- it. A worker adds its row before its last look for work and removes it when
-- it wakes; a row left by a crashed worker only costs a needless NOTIFY.
CREATE TABLE idle_workers (
    worker_id  text        PRIMARY KEY,
    -- The backend pid of the worker's LISTEN connection: a row whose pid is
    -- gone from pg_stat_activity belongs to a dead worker and is removed.
    listen_pid integer     NOT NULL,
    since      timestamptz NOT NULL DEFAULT now()
);

-- Subscriptions: an abonnement (callbackUrl, auth, kanalen) and/or
-- OpenConnector-style event type patterns.
CREATE TABLE subscriptions (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    callback_url   text        NOT NULL CHECK (callback_url ~ '^https?://'),
    -- Sent verbatim as the Authorization header value. A secret: the CLI
    -- never prints it, logs never contain it.
    auth           text,
    -- [{"naam": "zaken", "filters": {"#resource": "zaak", ...}}, ...]
    kanalen        jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(kanalen) = 'array'),
    -- Event type patterns; `*` matches any run of characters.
    types          text[]      NOT NULL DEFAULT '{}',
    content_mode   text        NOT NULL DEFAULT 'structured'
                               CHECK (content_mode IN ('structured', 'binary', 'batched')),
    -- active: receives deliveries; paused: routed deliveries wait (operator
    -- pause, or the receiver answered 410 Gone: see paused_reason).
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    paused_reason  text,
    -- NULL: order per event subject (the default); otherwise the name of the
    -- event attribute that is the ordering key.
    ordering_key   text,
    allow_insecure boolean     NOT NULL DEFAULT false,
    -- When the OPTIONS handshake of the webhook guideline succeeded, or NULL
    -- when the operator said it was agreed out of band.
    handshake_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (kanalen <> '[]' OR types <> '{}'),
    CHECK ((status = 'paused') = (paused_reason IS NOT NULL))
);

-- One delivery per (event, matching subscription). States:
--   blocked    -- created by the router behind an unfinished delivery of the same
--                 subscription and ordering key; the recorder makes the oldest
--                 blocked one pending when its predecessor is delivered or failed.
--                 So each (subscription, key) has at most one pending/delivering
--                 head, and the claim never has to skip over waiting rows.
--   pending    -- created by the router (head of its key, or unordered); waiting
--                 for next_attempt_at; also after a retryable failure, a 410
--                 (its subscription is paused), or `outbox retry`.
--   delivering -- claimed by a worker (claim_token, leased_until). A worker
--                 that dies leaves it here; once leased_until passes, the
--                 claim query takes it again.
--   delivered  -- a 2xx answer was recorded (delivered_at set).
--   failed     -- 415, or retries exhausted. `outbox retry` moves it back.
-- Moves between blocked and pending/delivering of one key take a per-key
-- advisory lock (router, recorder, retry), so none can miss another's row.
CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_position   bigint      NOT NULL REFERENCES events (position) ON DELETE CASCADE,
    subscription_id  uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('blocked', 'pending', 'delivering', 'delivered', 'failed')),
    -- Copied from the event at routing time (subject, or the subscription's
    -- ordering attribute); NULL means unordered.
    ordering_key     text,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,
    claim_token      uuid,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    -- Routing creates each delivery exactly once, even with several routers.
    UNIQUE (event_position, subscription_id),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    CHECK ((status = 'delivering') = (claim_token IS NOT NULL AND leased_until IS NOT NULL))
);

-- The claim: per active subscription, "pending rows whose next_attempt_at has
-- come, oldest first". Partial, so it holds only the live heads: blocked,
-- delivered and failed rows (the millions) are not in it, and the claim cost
-- does not grow with history. Per subscription, so a paused or saturated
-- subscription's backlog is never scanned for the others.
CREATE INDEX deliveries_due_idx ON deliveries (subscription_id, next_attempt_at, id) WHERE status = 'pending';

-- The same claim also rescues rows whose lease expired (a killed worker).
CREATE INDEX deliveries_leased_idx ON deliveries (leased_until) WHERE status = 'delivering';

-- Per-key order: "does this key have an unfinished delivery?" (router) and
-- "which blocked delivery of this key is next?" (recorder) are one probe each.
CREATE INDEX deliveries_ordering_idx ON deliveries (subscription_id, ordering_key, id)
    WHERE status IN ('blocked', 'pending', 'delivering') AND ordering_key IS NOT NULL;

-- Status per subscription and `outbox retry --subscription`.
CREATE INDEX deliveries_subscription_status_idx ON deliveries (subscription_id, status);

-- One row per HTTP attempt: what was sent when, and what came back.
CREATE TABLE delivery_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint      NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL,
    duration_ms   double precision NOT NULL CHECK (duration_ms >= 0),
    -- Exactly one of: the HTTP status code, or the error class (timeout,
    -- connection error, ...).
    status_code   integer,
    error         text,
    -- At most 4 KiB of the response body, for the operator.
    response_body text CHECK (octet_length(response_body) <= 4096),
    CHECK ((status_code IS NULL) <> (error IS NULL))
);

CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id);
