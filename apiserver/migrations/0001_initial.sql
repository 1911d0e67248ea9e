-- k8s-scheduler server tables. Portable SQL: the same migration runs on PostgreSQL and SQLite.
-- Times are Unix seconds. Templates and deployments are NOT here: they are Kubernetes resources
-- (the offline_deployments table is used only when KUBERNETES_ENABLED=false).

CREATE TABLE users (
    id          TEXT PRIMARY KEY,          -- DNS-safe user id used in namespaces and hosts
    subject     TEXT NOT NULL UNIQUE,      -- "<issuer>|<sub>" of the identity provider
    email       TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,     -- SHA-256 of the token; the token itself is shown once
    scopes       TEXT NOT NULL,            -- space-separated
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,          -- SHA-256 of the session id in the cookie
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE offline_deployments (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    manifest    TEXT NOT NULL,             -- the UserDeployment as JSON
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);
