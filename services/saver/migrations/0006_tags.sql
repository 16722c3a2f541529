-- Tags (services/saver/tags*.go): the durable copy of every (app, tag,
-- user) membership; Redis holds sets per tag and per user, refilled from
-- here when lost. VARBINARY compares exact bytes, as in messages: "VIP"
-- and "vip" are two tags, "Alice" and "alice" two users.
--
-- The primary key serves membership checks and pages a tag's members in
-- byte order (keyset paging: user > cursor); idx_tag_members_user lists a
-- user's tags.
CREATE TABLE IF NOT EXISTS tag_members (
  app        VARBINARY(64)   NOT NULL,
  tag        VARBINARY(128)  NOT NULL,
  `user`     VARBINARY(128)  NOT NULL,
  added_ms   BIGINT          NOT NULL,
  PRIMARY KEY (app, tag, `user`),
  KEY idx_tag_members_user (app, `user`, tag)
) ENGINE=InnoDB;

-- Member count per tag. Its row is also the lock that serializes writes to
-- one tag, so the limit on members holds under concurrent adds without
-- counting up to a million rows. A tag with no members has no row.
CREATE TABLE IF NOT EXISTS tag_sizes (
  app        VARBINARY(64)   NOT NULL,
  tag        VARBINARY(128)  NOT NULL,
  members    INT UNSIGNED    NOT NULL,
  PRIMARY KEY (app, tag)
) ENGINE=InnoDB;

-- Tag count per user, locked like tag_sizes so the limit on a user's tags
-- holds when several tags add the same user at once. A user with no tags
-- has no row.
CREATE TABLE IF NOT EXISTS user_tag_counts (
  app        VARBINARY(64)   NOT NULL,
  `user`     VARBINARY(128)  NOT NULL,
  tags       INT UNSIGNED    NOT NULL,
  PRIMARY KEY (app, `user`)
) ENGINE=InnoDB;
