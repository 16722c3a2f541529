-- Keep a finished message's creation and expiry times with its outcome, so
-- GET /v1/messages/{id} still reports them after the row left messages.
ALTER TABLE message_outcomes
  ADD COLUMN IF NOT EXISTS created_ms BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS expires_ms BIGINT NOT NULL DEFAULT 0;
