-- 011_adaptive_concurrency: each subscription's concurrency limit, adapted to how its receiver answers
-- and shared by every worker process (on the subscription's pace row, which every worker already locks
-- in subscription-id order).
--
-- The limit starts low and grows while answers come back fast (slow start: +1 per success, so it
-- doubles per round trip; past slow_start_threshold: about +1 per round trip), and is cut
-- multiplicatively on timeouts, connection failures, 429, 503, connects slowed by a dropped SYN (the
-- receiver's listen backlog overflowed) and answers far slower than the receiver's baseline, at most
-- once per round trip (only answers to requests claimed after the last cut may cut it again). It never goes below 1 nor above OUTBOX_SUBSCRIPTION_CONCURRENCY (or what the
-- subscription's rate allows). The claim takes no more for a subscription than its limit minus what
-- all workers have in flight for it (its deliveries in 'delivering').

ALTER TABLE subscription_pace
    -- Requests that may be in flight to the subscription, over all workers (NULL: not adapted yet,
    -- the workers' initial limit).
    ADD COLUMN concurrency_limit    double precision CHECK (concurrency_limit >= 1),
    -- Slow start ends here (set by the last cut; NULL: grow by slow start up to the maximum).
    ADD COLUMN slow_start_threshold double precision CHECK (slow_start_threshold >= 1),
    -- Why and when the limit last changed, for the operator.
    ADD COLUMN limit_reason         text CHECK (limit_reason IN
        ('growing', 'timeout', 'connection error', '429', '503', 'slow connect', 'latency', 'maximum')),
    ADD COLUMN limit_changed_at     timestamptz,
    -- The last cut: answers to requests claimed before it do not cut again.
    ADD COLUMN limit_cut_at         timestamptz,
    -- The receiver's baseline answer time in milliseconds (the lowest batch mean, drifting up 2% a
    -- second since latency_base_at, so it follows a receiver that became slower for good).
    ADD COLUMN latency_base_ms      double precision CHECK (latency_base_ms >= 0),
    ADD COLUMN latency_base_at      timestamptz,
    -- The recent answer time in milliseconds: batch medians averaged, each weighing by its number of
    -- answers (one answer 5%), so one straggler does not look like a queue.
    ADD COLUMN latency_recent_ms    double precision CHECK (latency_recent_ms >= 0);
