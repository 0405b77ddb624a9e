-- 016_callback_verification: 'probe', callback verification for receivers without the handshake.
--
-- Receivers that do not implement the OPTIONS abuse-protection handshake (404/405/501, or a 2xx
-- without WebHook-Allowed-Origin) are verified at registration with one probe event
-- (nl.overheid.outbox.verification), as Open Notificaties verifies callbacks; handshake_at is
-- when that probe was accepted. Shown as the verification methods handshake (handshake,
-- preflight) | probe | operator (out-of-band).
ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_agreement_check,
    DROP CONSTRAINT subscriptions_agreement_time_check,
    ADD CONSTRAINT subscriptions_agreement_check
        CHECK (agreement IN ('handshake', 'out-of-band', 'preflight', 'probe')),
    ADD CONSTRAINT subscriptions_agreement_time_check
        CHECK (agreement = 'preflight' OR (agreement IN ('handshake', 'probe')) = (handshake_at IS NOT NULL));
