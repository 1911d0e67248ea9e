-- Secret values of SECRETS_BACKEND=database, encrypted with AES-256-GCM (see src/secrets/database.rs).
CREATE TABLE secrets (
    owner       TEXT NOT NULL,             -- user id
    scope       TEXT NOT NULL,             -- secrets | templates/{t} | deployments/{d} | deployments/{d}/services/{s}
    name        TEXT NOT NULL,             -- environment variable name
    description TEXT NOT NULL DEFAULT '',
    ciphertext  TEXT NOT NULL,             -- v1.<key id>.<base64(nonce || ciphertext+tag)>
    key_id      TEXT NOT NULL,             -- which key encrypted it (rotation)
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (owner, scope, name)
);
CREATE INDEX secrets_key_id ON secrets (key_id);
