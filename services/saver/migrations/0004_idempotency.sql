-- Idempotency keys (Message.idempotency_key): one row per (app, key),
-- written in the same transaction as the message it names, so a key never
-- points at a message that was not stored. VARBINARY compares exact bytes,
-- as in messages. Rows older than the retention are swept; the created_ms
-- index serves that.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  app        VARBINARY(64)   NOT NULL,
  ikey       VARBINARY(128)  NOT NULL,
  id         BIGINT UNSIGNED NOT NULL,
  created_ms BIGINT          NOT NULL,
  PRIMARY KEY (app, ikey),
  KEY idx_idempotency_created (created_ms)
) ENGINE=InnoDB;
