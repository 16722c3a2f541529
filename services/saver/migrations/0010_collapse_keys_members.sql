-- The hot table keeps only the indexes its hot path reads (issue 11), in two
-- steps: this one (expand) adds the side tables that take over two of its
-- indexes' lookups, 0011 (contract) drops the indexes.
-- Every secondary index of messages is paid by each store, ack and purge:
-- measured on the 2-core box, each of the four costs MariaDB 2-5 us of CPU
-- per message stored and acked, and the two dropped here served lookups
-- that only a few messages need. They move to side tables that only those
-- messages write:
--
-- message_collapse_keys: for each (app, user, collapse_key), the message
-- last stored with it (collapse.go). The Store that stores a keyed message
-- writes its row in the same transaction; a row whose message has finished
-- is harmless (the lookup joins messages) and the sweep prunes it.
--
-- multicast_members: the (id, user) pairs of a multicast stored with an
-- idempotency key, which a retry with that key answers (multi.go); they
-- are pruned together with the key.
--
-- Savers of the previous release keep using the indexes and do not write
-- these tables; until 0011 runs, savers of this release fall back to the
-- index for a multicast without members (multi.go), and 0011 backfills
-- again what the old savers stored meanwhile.
CREATE TABLE IF NOT EXISTS message_collapse_keys (
  app          VARBINARY(64)   NOT NULL,
  `user`       VARBINARY(128)  NOT NULL,
  collapse_key VARBINARY(64)   NOT NULL,
  id           BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (app, `user`, collapse_key)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS multicast_members (
  multicast_id BIGINT UNSIGNED NOT NULL,
  id           BIGINT UNSIGNED NOT NULL,
  `user`       VARBINARY(128)  NOT NULL,
  PRIMARY KEY (multicast_id, id)
) ENGINE=InnoDB;

-- Backfill from the rows on record; a key points at the newest message
-- stored with it (re-runnable).
INSERT INTO message_collapse_keys (app, `user`, collapse_key, id)
  SELECT app, `user`, collapse_key, MAX(id) FROM messages WHERE collapse_key <> '' GROUP BY app, `user`, collapse_key
  ON DUPLICATE KEY UPDATE id = VALUES(id);

INSERT IGNORE INTO multicast_members (multicast_id, id, `user`)
  SELECT m.multicast_id, m.id, m.`user` FROM idempotency_keys k JOIN messages m ON m.multicast_id = k.id AND m.app = k.app;

INSERT IGNORE INTO multicast_members (multicast_id, id, `user`)
  SELECT o.multicast_id, o.id, o.`user` FROM idempotency_keys k JOIN message_outcomes o ON o.multicast_id = k.id AND o.app = k.app;
