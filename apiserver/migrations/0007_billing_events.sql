-- Issue 17: the Stripe webhook inbox (src/billing/webhook.rs). A verified event is stored here
-- before the webhook answers 2xx, and a worker applies it afterwards, so Stripe gets its answer
-- quickly and a crash between the answer and the work loses nothing. The primary key on Stripe's
-- event id is what makes a replayed or retried delivery change nothing. Unix seconds.
CREATE TABLE billing_events (
    id           TEXT PRIMARY KEY,      -- Stripe's event id (evt_...)
    event_type   TEXT NOT NULL,         -- e.g. customer.subscription.updated
    created      BIGINT NOT NULL,       -- the event's `created` (Stripe's clock; order is not trusted)
    payload      TEXT NOT NULL,         -- the event JSON exactly as Stripe signed it
    status       TEXT NOT NULL,         -- pending | processed | ignored (a type the worker does not handle)
    received_at  BIGINT NOT NULL,
    processed_at BIGINT                 -- NULL while pending; rows are purged some days after this
);
-- The worker's query (pending rows, oldest first) and the purge (finished rows by age).
CREATE INDEX billing_events_status ON billing_events (status, received_at);
CREATE INDEX billing_events_processed_at ON billing_events (processed_at);
