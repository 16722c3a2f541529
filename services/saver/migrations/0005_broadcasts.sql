-- Broadcasts (POST /v1/broadcast): one row per broadcast, never one per
-- recipient. seq is the app's broadcast sequence number, allocated from
-- broadcast_seqs in the same transaction as the row (the row lock on the
-- app's counter serializes allocation across savers). Catch-up reads
-- (app, seq) ranges; the sweep deletes rows past expiry plus retention.
-- tag is reserved for tag-targeted broadcast: empty means the whole app.
CREATE TABLE IF NOT EXISTS broadcast_seqs (
  app VARBINARY(64)   NOT NULL,
  seq BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (app)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS broadcasts (
  id          BIGINT UNSIGNED  NOT NULL,
  app         VARBINARY(64)    NOT NULL,
  seq         BIGINT UNSIGNED  NOT NULL,
  tag         VARBINARY(128)   NOT NULL DEFAULT '',
  payload     MEDIUMBLOB       NOT NULL,
  qos         TINYINT UNSIGNED NOT NULL,
  online_only TINYINT UNSIGNED NOT NULL DEFAULT 0,
  created_ms  BIGINT           NOT NULL,
  expires_ms  BIGINT           NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY uq_broadcasts_seq (app, seq),
  KEY idx_broadcasts_expires (expires_ms)
) ENGINE=InnoDB;

-- Progress of one broadcast on one room: counters, not rows per
-- recipient. state 0 pending (live fan-out not confirmed), 1 done,
-- 2 abandoned by the sweep. next_at_ms and attempts drive the sweep that
-- resends to rooms that missed the live request; the index serves its
-- claim query.
CREATE TABLE IF NOT EXISTS broadcast_rooms (
  broadcast_id BIGINT UNSIGNED  NOT NULL,
  room         VARBINARY(128)   NOT NULL,
  state        TINYINT UNSIGNED NOT NULL DEFAULT 0,
  reached      BIGINT UNSIGNED  NOT NULL DEFAULT 0,
  acked        BIGINT UNSIGNED  NOT NULL DEFAULT 0,
  attempts     INT UNSIGNED     NOT NULL DEFAULT 0,
  next_at_ms   BIGINT           NOT NULL,
  updated_ms   BIGINT           NOT NULL,
  PRIMARY KEY (broadcast_id, room),
  KEY idx_broadcast_rooms_claim (state, next_at_ms)
) ENGINE=InnoDB;
