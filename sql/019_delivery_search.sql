-- 019_delivery_search: what `outbox deliveries list`, `outbox events show` and the console's pages
-- search by stays an index lookup over millions of rows.
--
-- A subscription's deliveries newest first, per state (the listing asks each state's leaves for its
-- page and merges them): (subscription_id, status) gains id. It still serves everything the old one
-- did (status per subscription, `outbox retry --subscription`, the ON DELETE CASCADE).
-- Building it reads every deliveries leaf once: expect this migration to take a while on a large
-- history (measured: about 2 s per million deliveries).
DROP INDEX deliveries_subscription_status_idx;
CREATE INDEX deliveries_subscription_status_idx ON deliveries (subscription_id, status, id);

-- Events by their CloudEvents id (`outbox events show ID`) and by subject (the console's search).
-- Deliveries of a found event are then reached by its (position, enqueued_at): the live leaf's unique
-- key and the final leaves' BRIN on event_enqueued_at.
CREATE INDEX events_event_id_idx ON events ((event ->> 'id'));
CREATE INDEX events_subject_idx ON events ((event ->> 'subject'));
