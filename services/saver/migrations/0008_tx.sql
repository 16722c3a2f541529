-- Transactional push (issue 9): half-records. A prepared record lives only
-- here, never in messages, so no delivery path (live, Pending, the
-- redelivery sweep, catch-up) can see it. Commit inserts its messages rows
-- in the same transaction that moves state from 1 (prepared) to 2
-- (committed); 3 is rolled back, 4 expired (rolled back after the last
-- check-back). Every state change is one UPDATE … WHERE state = 1.
--
-- target_kind is a word, not a number, so the tag and broadcast targets
-- other work adds need no schema change: "user" and "users" exist today.
-- recipients is JSON [{"user":…,"message_id":…}], ids fixed at prepare.
-- decided_by: 1 api, 2 check-back, 3 expiry (TxDecider numbers).
--
-- Check-back: next_check_ms is when the record is due; a claimer sets
-- lease_until_ms and a random claim_token, and only the holder of the
-- token can count its check. idx_tx_due serves the claim query (state,
-- then a range on next_check_ms); idx_tx_decided the retention sweep.
-- ikey is NULL without an idempotency key; a UNIQUE index allows many NULLs.
CREATE TABLE IF NOT EXISTS tx_messages (
  id             BIGINT UNSIGNED  NOT NULL,
  app            VARBINARY(64)    NOT NULL,
  target_kind    VARBINARY(16)    NOT NULL,
  recipients     MEDIUMBLOB       NOT NULL,
  device         VARBINARY(128)   NOT NULL DEFAULT '',
  payload        MEDIUMBLOB       NOT NULL,
  qos            TINYINT UNSIGNED NOT NULL,
  ttl_ms         BIGINT           NOT NULL,
  ikey           VARBINARY(128)   NULL,
  state          TINYINT UNSIGNED NOT NULL DEFAULT 1,
  decided_by     TINYINT UNSIGNED NOT NULL DEFAULT 0,
  created_ms     BIGINT           NOT NULL,
  decided_ms     BIGINT           NOT NULL DEFAULT 0,
  checks         INT UNSIGNED     NOT NULL DEFAULT 0,
  next_check_ms  BIGINT           NOT NULL,
  lease_until_ms BIGINT           NOT NULL DEFAULT 0,
  claim_token    BIGINT UNSIGNED  NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY uk_tx_ikey (app, ikey),
  KEY idx_tx_due (state, next_check_ms),
  KEY idx_tx_decided (state, decided_ms)
) ENGINE=InnoDB;
