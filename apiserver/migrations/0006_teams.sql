-- Issue 16: organizations, teams, memberships, invitations and the audit of membership changes.
-- The server keeps these; the controller enforces a team's members in the cluster through its
-- UserSandbox's spec.members (written by the server from team_members). Unix seconds.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL DEFAULT 'free',   -- free | business | enterprise: limits per organization
    created_at  BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,                  -- owner | admin | member
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_id ON org_members (user_id);

-- A team's id is also its sandbox's owner id (a DNS label without a dash, like a user id, never
-- equal to one: `tm` and random base32), so its apps are at <team id>-<app>.<DEPLOYMENT_DOMAIN>.
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,                  -- admin | developer | viewer
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_id ON team_members (user_id);

-- An invitation's token is shown once (in the email); only its SHA-256 is kept.
CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,                 -- lower-cased
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    invited_by   TEXT NOT NULL,                 -- the inviter's email, as shown
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_sent_at BIGINT NOT NULL,
    revoked_at   BIGINT,
    accepted_at  BIGINT,
    accepted_by  TEXT
);
CREATE INDEX invitations_team_id ON invitations (team_id);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    team_name   TEXT,
    actor       TEXT NOT NULL,                  -- email
    action      TEXT NOT NULL,
    subject     TEXT,                           -- email of the member or invitee
    detail      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX audit_log_org_at ON audit_log (org_id, at);

-- An API token may act in a team's sandbox (with its owner's role there, checked per request).
ALTER TABLE api_tokens ADD COLUMN team_id TEXT;
