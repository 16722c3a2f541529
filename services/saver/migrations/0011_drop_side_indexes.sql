-- pushgw:contract
-- Drops the two indexes of messages (and one of message_outcomes) whose
-- lookups 0010 moved to side tables. A contract migration: savers apply it
-- at start only to a fresh database; on one in use, `saver migrate
-- -contract` applies it once every saver runs this release (savers of the
-- previous release still read these indexes). It first backfills again
-- what those savers stored after 0010, while the indexes still serve it.
INSERT INTO message_collapse_keys (app, `user`, collapse_key, id)
  SELECT app, `user`, collapse_key, MAX(id) FROM messages WHERE collapse_key <> '' GROUP BY app, `user`, collapse_key
  ON DUPLICATE KEY UPDATE id = VALUES(id);

INSERT IGNORE INTO multicast_members (multicast_id, id, `user`)
  SELECT m.multicast_id, m.id, m.`user` FROM idempotency_keys k JOIN messages m ON m.multicast_id = k.id AND m.app = k.app;

INSERT IGNORE INTO multicast_members (multicast_id, id, `user`)
  SELECT o.multicast_id, o.id, o.`user` FROM idempotency_keys k JOIN message_outcomes o ON o.multicast_id = k.id AND o.app = k.app;

ALTER TABLE messages DROP INDEX IF EXISTS idx_messages_multicast, DROP INDEX IF EXISTS idx_messages_collapse;

ALTER TABLE message_outcomes DROP INDEX IF EXISTS idx_outcomes_multicast;
