-- 018_console: operator accounts, sessions, sign-in lockout and the audit trail of `/console/`.
--
-- Passwords are argon2id hashes (argon2-cffi's encoded form). A session's cookie holds a random token;
-- the database holds only its SHA-256, so a copy of this table signs nobody in. The CSRF token of a
-- session is derived from its cookie token (HMAC) and is not stored at all.
CREATE TABLE operators (
    name          text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    -- viewer: reads every page; operator: also pauses, resumes, verifies and retries.
    role          text        NOT NULL CHECK (role IN ('viewer', 'operator')),
    password_hash text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operator_sessions (
    token_hash   bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    operator     text        NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- The absolute end (OUTBOX_CONSOLE_SESSION_MAX after sign-in); the idle end is last_seen_at +
    -- OUTBOX_CONSOLE_SESSION_IDLE, a setting, so it is not stored.
    expires_at   timestamptz NOT NULL
);

CREATE INDEX operator_sessions_operator_idx ON operator_sessions (operator);

-- Failed sign-ins per account name (also names no account has: the answer must not tell them
-- apart) and per client address. `failures` counts since `first_at`; a key with at least the
-- setting's number of failures is locked until `last_at` + the lockout time.
CREATE TABLE signin_failures (
    kind     text        NOT NULL CHECK (kind IN ('account', 'address')),
    key      text        NOT NULL,
    failures integer     NOT NULL CHECK (failures > 0),
    first_at timestamptz NOT NULL DEFAULT now(),
    last_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- What operators did: who, what, to which object, when. The name is kept as text (no foreign key):
-- the trail outlives a removed account.
CREATE TABLE console_audit (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    operator    text        NOT NULL,
    action      text        NOT NULL,
    object_kind text        NOT NULL CHECK (object_kind IN ('subscription', 'delivery', 'deliveries', 'operator')),
    object_id   text        NOT NULL,
    detail      text
);

-- A page shows the entries of its object, newest first.
CREATE INDEX console_audit_object_idx ON console_audit (object_kind, object_id, at DESC);
