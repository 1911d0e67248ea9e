-- Issue 15 item 3: this installation's id, created once (a random value, see Db::installation_id).
-- The UserSandboxes the server creates carry it (annotation k8s-scheduler.io/installation), so two
-- installations on one cluster never hand each other's sandboxes out.
CREATE TABLE installation (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    id          TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
