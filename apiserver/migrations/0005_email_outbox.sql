-- Issue 16: the email outbox (src/email/outbox.rs). A message is stored here before anything is
-- sent, so a mail server that is down delays an invitation but never loses it, and a worker on any
-- replica sends it once the server answers again.
-- Times in this table are Unix MILLISECONDS (the other tables use seconds): retry delays and
-- claim leases are sub-second in tests and short in production.
CREATE TABLE email_outbox (
    id              TEXT PRIMARY KEY,        -- random
    dedupe_key      TEXT NOT NULL UNIQUE,    -- the caller's key (e.g. invitation id + kind): a retried request queues nothing twice
    recipient       TEXT NOT NULL,           -- one mailbox: "bob@example.com" or "Bob <bob@example.com>"
    subject         TEXT NOT NULL,
    body_text       TEXT NOT NULL,           -- emptied once the row is sent or failed
    body_html       TEXT NOT NULL,           -- emptied once the row is sent or failed
    status          TEXT NOT NULL,           -- pending | sent | failed
    attempts        BIGINT NOT NULL DEFAULT 0,  -- sends started (counted when claimed)
    next_attempt_at BIGINT NOT NULL,         -- not sent before this
    claimed_until   BIGINT,                  -- lease of the worker sending it; NULL: not claimed
    claim_token     TEXT,                    -- which claim holds the lease
    last_error      TEXT,                    -- why the last attempt failed (bounded, no secrets)
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT                   -- when it became sent or failed (rows are deleted some days later)
);
-- The worker's query: due pending rows, oldest first.
CREATE INDEX email_outbox_due ON email_outbox (status, next_attempt_at);
