-- Issue 17: who pays, what Stripe last said, and the usage that is billed. Unix seconds.
--
-- A billing account is a plan's owner: an organization (its teams' sandboxes share the plan) or a
-- person without one (their own sandbox). `scope` names it: `org:<organization id>` or
-- `user:<user id>`. The plan written here is the one billing last applied to the cluster; the
-- subscription's fields are what Stripe answered when the account was last synchronised (never
-- what an event said: events arrive in any order).
CREATE TABLE billing_accounts (
    scope                 TEXT PRIMARY KEY,
    customer_id           TEXT UNIQUE,          -- cus_...; set when the first Checkout is started
    subscription_id       TEXT,                 -- sub_...; the subscription that sets the plan
    status                TEXT,                 -- Stripe's subscription status as last read
    plan                  TEXT NOT NULL DEFAULT 'free',
    current_period_start  BIGINT,
    current_period_end    BIGINT,
    cancel_at_period_end  BIGINT NOT NULL DEFAULT 0,
    past_due_since        BIGINT,               -- first seen past_due/unpaid: the grace period starts
    updated_at            BIGINT NOT NULL
);
CREATE INDEX billing_accounts_subscription ON billing_accounts (subscription_id);

-- The webhook inbox gains retries: an event whose application failed (Stripe or Kubernetes
-- unreachable) is tried again later with a growing delay, without blocking the events after it.
ALTER TABLE billing_events ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_events ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_events ADD COLUMN last_error TEXT;

-- Running app-time per account, hour, sandbox, app and service: CPU requested × seconds (millicores ×
-- seconds) and memory requested × seconds (MiB × seconds) while the service's pods were ready, as
-- the controller reports them in the UserDeployment's status. Samples add to the hour's row.
CREATE TABLE usage_hours (
    scope               TEXT NOT NULL,
    hour                BIGINT NOT NULL,        -- start of the hour
    namespace           TEXT NOT NULL,          -- the sandbox (an organization has one per team)
    deployment          TEXT NOT NULL,
    service             TEXT NOT NULL,
    cpu_milli_seconds   BIGINT NOT NULL DEFAULT 0,
    memory_mib_seconds  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, hour, namespace, deployment, service)
);

-- Sample slots (Unix seconds / USAGE_SAMPLE_SECONDS) already recorded: every server replica samples
-- the same cluster, and only the one whose claim of a slot lands records it, so usage is counted
-- once however many replicas run.
CREATE TABLE usage_slots (
    slot        BIGINT PRIMARY KEY,
    claimed_at  BIGINT NOT NULL
);

-- Meter events for closed hours: the value is fixed when the row is written, before it is sent,
-- and the identifier is derived from account, hour and meter, so sending again after a crash
-- repeats the same event and Stripe counts it once.
CREATE TABLE usage_reports (
    identifier   TEXT PRIMARY KEY,              -- <scope>:<hour>:<meter>
    scope        TEXT NOT NULL,
    hour         BIGINT NOT NULL,
    meter        TEXT NOT NULL,                 -- the meter's event name
    value        BIGINT NOT NULL,
    sent_at      BIGINT                         -- NULL until Stripe accepted it
);
CREATE INDEX usage_reports_unsent ON usage_reports (sent_at);
