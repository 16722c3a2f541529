-- Hot table: only messages still waiting for an ack. Acked, expired and dead
-- rows are deleted (a small row goes to message_outcomes), which keeps this
-- table inside the buffer pool. app/user/device are VARBINARY so that
-- comparisons are exact bytes: a case-insensitive collation would let
-- "Alice" read "alice"'s messages.
CREATE TABLE IF NOT EXISTS messages (
  id             BIGINT UNSIGNED  NOT NULL,
  app            VARBINARY(64)    NOT NULL,
  `user`         VARBINARY(128)   NOT NULL,
  device         VARBINARY(128)   NOT NULL DEFAULT '',
  payload        MEDIUMBLOB       NOT NULL,
  qos            TINYINT UNSIGNED NOT NULL,
  created_ms     BIGINT           NOT NULL,
  expires_ms     BIGINT           NOT NULL DEFAULT 0,
  delivery_count INT UNSIGNED     NOT NULL DEFAULT 0,
  state          TINYINT UNSIGNED NOT NULL DEFAULT 1,
  updated_ms     BIGINT           NOT NULL,
  PRIMARY KEY (id),
  KEY idx_messages_user (app, `user`, id),
  KEY idx_messages_expires (expires_ms)
) ENGINE=InnoDB;

-- What became of a message that left the hot table, for Status. outcome
-- holds the pushgw.internal.v1.MessageState number: 3 acked, 4 expired,
-- 5 dead. Rows older than -outcome-retention are swept.
CREATE TABLE IF NOT EXISTS message_outcomes (
  id             BIGINT UNSIGNED  NOT NULL,
  app            VARBINARY(64)    NOT NULL,
  `user`         VARBINARY(128)   NOT NULL,
  outcome        TINYINT UNSIGNED NOT NULL,
  delivery_count INT UNSIGNED     NOT NULL,
  at_ms          BIGINT           NOT NULL,
  PRIMARY KEY (id),
  KEY idx_outcomes_at (at_ms)
) ENGINE=InnoDB;
