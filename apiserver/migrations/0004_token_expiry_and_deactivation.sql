-- Issue 15 item 13: API tokens may expire, and an administrator can deactivate a user
-- (`apiserver --deactivate-user`): their sessions and tokens stop working and their sandbox is not
-- recreated. Unix seconds; NULL: never expires / active.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;
