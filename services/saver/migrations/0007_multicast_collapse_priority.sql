-- Multicast, collapse keys and priority (issue 8).
-- multicast_id: the multicast a message belongs to (the id of its first
-- message; 0 for a unicast), kept in message_outcomes too, so a retried
-- multicast with the same idempotency_key answers every original id, acked
-- ones included.
-- collapse_key: a newer message with the same (app, user, collapse_key)
-- finishes an older unacked one as outcome 6 (collapsed); the index serves
-- that lookup. priority: 1 high, 0 normal; Pending serves high ones first.
ALTER TABLE messages
  ADD COLUMN IF NOT EXISTS multicast_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS collapse_key VARBINARY(64) NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS priority TINYINT UNSIGNED NOT NULL DEFAULT 0,
  ADD INDEX IF NOT EXISTS idx_messages_multicast (multicast_id),
  ADD INDEX IF NOT EXISTS idx_messages_collapse (app, `user`, collapse_key);
ALTER TABLE message_outcomes
  ADD COLUMN IF NOT EXISTS multicast_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD INDEX IF NOT EXISTS idx_outcomes_multicast (multicast_id);
