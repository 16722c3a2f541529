-- Callbacks and delivery receipts (issue 12): a durable outbox the
-- coordinators drain to each app's webhook. MySQL, not Redis: our Redis
-- keeps nothing on disk, and a receipt is written in the same transaction
-- that moves its message to message_outcomes, so none is lost or doubled.
--
-- seq orders events; the webhook's event id is derived from it. kind:
-- 1 receipt, 2 online, 3 offline (EventKind). A coordinator leases events
-- (lease_until_ms, claim_token) strictly in order per (app, user): the
-- claim hands out an event only together with every older event of its
-- user (idx_events_user). A failed delivery sets next_at_ms (back-off)
-- and counts attempts; a delivered event is deleted.
CREATE TABLE IF NOT EXISTS events (
  seq            BIGINT UNSIGNED  NOT NULL AUTO_INCREMENT,
  kind           TINYINT UNSIGNED NOT NULL,
  app            VARBINARY(64)    NOT NULL,
  `user`         VARBINARY(128)   NOT NULL,
  device         VARBINARY(128)   NOT NULL DEFAULT '',
  platform       VARBINARY(32)    NOT NULL DEFAULT '',
  room_id        VARBINARY(128)   NOT NULL DEFAULT '',
  session_id     BIGINT UNSIGNED  NOT NULL DEFAULT 0,
  reason         VARBINARY(32)    NOT NULL DEFAULT '',
  message_id     BIGINT UNSIGNED  NOT NULL DEFAULT 0,
  outcome        VARBINARY(16)    NOT NULL DEFAULT '',
  delivery_count INT UNSIGNED     NOT NULL DEFAULT 0,
  at_ms          BIGINT           NOT NULL,
  attempts       INT UNSIGNED     NOT NULL DEFAULT 0,
  next_at_ms     BIGINT           NOT NULL DEFAULT 0,
  lease_until_ms BIGINT           NOT NULL DEFAULT 0,
  claim_token    BIGINT UNSIGNED  NOT NULL DEFAULT 0,
  PRIMARY KEY (seq),
  KEY idx_events_user (app, `user`, seq)
) ENGINE=InnoDB;
-- receipt: the push asked for a delivery receipt (Message.receipt).
ALTER TABLE messages
  ADD COLUMN IF NOT EXISTS receipt TINYINT UNSIGNED NOT NULL DEFAULT 0;
