-- Redelivery sweep (ClaimUndelivered): a stored message that no room has
-- reported delivered is claimed again after a backoff, a bounded number of
-- times. redeliver_at_ms is when it may next be claimed, redeliveries how
-- often it was. The index serves the claim query: delivery_count = 0, then
-- a range on redeliver_at_ms.
ALTER TABLE messages
  ADD COLUMN IF NOT EXISTS redeliver_at_ms BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS redeliveries TINYINT UNSIGNED NOT NULL DEFAULT 0,
  ADD INDEX IF NOT EXISTS idx_messages_redeliver (delivery_count, redeliver_at_ms);
