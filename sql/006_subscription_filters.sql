-- 006_subscription_filters: the CloudEvents Subscriptions API's `filters` on a subscription.
--
-- A JSON array of filter expressions, each one dialect object as the spec writes it
-- ({"exact": {...}}, {"prefix": {...}}, {"suffix": {...}}, {"all": [...]}, {"any": [...]},
-- {"not": {...}}, {"sql": "..."}) or OpenConnector's {"jsonlogic": {...}}. All must hold, and they
-- are ANDed with `types` and `kanalen`. Checked whole by the library before it is stored; the worker
-- compiles them once per subscription version.
ALTER TABLE subscriptions
    ADD COLUMN filters jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(filters) = 'array');
