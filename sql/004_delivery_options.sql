-- 004_delivery_options: per-subscription delivery options, secrets in one
-- (optionally encrypted) column, and the shared pace of each subscription.

ALTER TABLE subscriptions
    -- Batched mode: at most this many events per POST.
    ADD COLUMN batch_max integer NOT NULL DEFAULT 100 CHECK (batch_max BETWEEN 1 AND 1000),
    -- Content-Type sent instead of the mode's default (some receivers compare
    -- `application/cloudevents+json` exactly, without `; charset=utf-8`).
    ADD COLUMN content_type text CHECK (content_type ~ '^[!-~]+/[!-~]+( *;.*)?$'),
    -- Run the OPTIONS handshake as a pre-flight before deliveries (the
    -- guideline's MAY) instead of once at registration.
    ADD COLUMN preflight boolean NOT NULL DEFAULT false,
    -- The access token may travel in the callback URL's query string (the
    -- guideline's SHOULD NOT: only when the operator forced it).
    ADD COLUMN allow_query_token boolean NOT NULL DEFAULT false,
    -- How requests authenticate; the secret parts live in `secrets`.
    ADD COLUMN auth_kind text NOT NULL DEFAULT 'none' CHECK (auth_kind IN ('none', 'static', 'oauth2', 'zgw')),
    ADD COLUMN oauth2_token_url text CHECK (oauth2_token_url ~* '^https?://'),
    ADD COLUMN oauth2_client_id text,
    ADD COLUMN oauth2_scope text,
    ADD COLUMN zgw_client_id text,
    -- PEM: the CA bundle that replaces the default trust store, and the client
    -- certificate for mutual TLS (its key is a secret).
    ADD COLUMN ca_bundle text,
    ADD COLUMN client_cert text,
    -- Every secret of the subscription (auth value, OAuth2 client secret, ZGW
    -- secret, signing secrets, client key) as one JSON object, or that JSON
    -- encrypted with OUTBOX_SECRET_KEY (a Fernet token) when secrets_encrypted.
    ADD COLUMN secrets text,
    ADD COLUMN secrets_encrypted boolean NOT NULL DEFAULT false,
    ADD CHECK (auth_kind <> 'oauth2' OR (oauth2_token_url IS NOT NULL AND oauth2_client_id IS NOT NULL)),
    ADD CHECK (auth_kind <> 'zgw' OR zgw_client_id IS NOT NULL),
    ADD CHECK ((client_cert IS NULL) OR secrets IS NOT NULL);

-- 'preflight': the handshake runs before deliveries; handshake_at is the last
-- one that succeeded (NULL until then).
ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_agreement_check,
    DROP CONSTRAINT subscriptions_check2,
    ADD CONSTRAINT subscriptions_agreement_check CHECK (agreement IN ('handshake', 'out-of-band', 'preflight')),
    ADD CONSTRAINT subscriptions_agreement_time_check
        CHECK (agreement = 'preflight' OR (agreement = 'handshake') = (handshake_at IS NOT NULL)),
    ADD CONSTRAINT subscriptions_preflight_check CHECK (preflight = (agreement = 'preflight')),
    -- URL schemes are case-insensitive (RFC 3986), as the CLI's check is.
    DROP CONSTRAINT subscriptions_callback_url_check,
    ADD CONSTRAINT subscriptions_callback_url_check CHECK (callback_url ~* '^https?://');

UPDATE subscriptions
   SET secrets = json_build_object('auth', auth)::text, auth_kind = 'static'
 WHERE auth IS NOT NULL;

ALTER TABLE subscriptions DROP COLUMN auth;

-- The pace of a subscription, shared by every worker process: a token bucket
-- for its request rate (the smaller of the operator's rate and the target's
-- WebHook-Allowed-Rate), and the slow-down after a 429. A claim locks the
-- row, so two workers never spend the same tokens.
CREATE TABLE subscription_pace (
    subscription_id uuid PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    -- Requests that may start now (refilled at rate * pace per second).
    tokens          double precision NOT NULL DEFAULT 1,
    refilled_at     timestamptz NOT NULL DEFAULT now(),
    -- 1 = full speed; a 429 halves it, deliveries raise it again. Scales the
    -- rate and the requests in flight.
    pace            double precision NOT NULL DEFAULT 1 CHECK (pace > 0 AND pace <= 1),
    -- After a 429: no request to this subscription before this moment.
    hold_until      timestamptz
);
