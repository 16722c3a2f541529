package main

import (
	"context"
	"fmt"
	"strings"
)

// collapseCursor is where the sweep's walk over message_collapse_keys
// stands: its rows outlive their messages (an ack or expiry does not touch
// them, which keeps those paths free of the table), so the sweep walks the
// table in primary-key order, a bounded slice per call, and deletes the
// rows whose message is gone. The zero value starts at the beginning.
type collapseCursor struct {
	app, user, key string
	started        bool
}

// pruneCollapseKeys examines the next limit rows of message_collapse_keys
// after cur and deletes those naming a message no longer stored. It
// returns how many it deleted and whether the walk reached the end (cur
// then starts over).
func (d *msgDB) pruneCollapseKeys(ctx context.Context, cur *collapseCursor, limit int) (int64, bool, error) {
	q := "SELECT app, `user`, collapse_key, id FROM message_collapse_keys"
	var args []any
	if cur.started {
		q += " WHERE app > ? OR (app = ? AND (`user` > ? OR (`user` = ? AND collapse_key > ?)))"
		args = append(args, cur.app, cur.app, cur.user, cur.user, cur.key)
	}
	q += " ORDER BY app, `user`, collapse_key LIMIT ?"
	args = append(args, limit)
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
	}
	type keyRow struct {
		app, user, key string
		id             uint64
	}
	var seen []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.app, &r.user, &r.key, &r.id); err != nil {
			rows.Close()
			return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
		}
		seen = append(seen, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
	}
	end := len(seen) < limit
	if len(seen) == 0 {
		*cur = collapseCursor{}
		return 0, true, nil
	}
	ids := make([]uint64, len(seen))
	for i, r := range seen {
		ids[i] = r.id
	}
	live := map[uint64]bool{}
	lrows, err := d.db.QueryContext(ctx, "SELECT id FROM messages WHERE id IN ("+placeholders(len(ids))+")", idArgs(ids)...)
	if err != nil {
		return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
	}
	for lrows.Next() {
		var id uint64
		if err := lrows.Scan(&id); err != nil {
			lrows.Close()
			return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
		}
		live[id] = true
	}
	lrows.Close()
	if err := lrows.Err(); err != nil {
		return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
	}
	var b strings.Builder
	args = args[:0]
	for _, r := range seen {
		if live[r.id] {
			continue
		}
		if len(args) > 0 {
			b.WriteString(" OR ")
		}
		// The id condition leaves alone a row a Store re-pointed since
		// the read above.
		b.WriteString("(app = ? AND `user` = ? AND collapse_key = ? AND id = ?)")
		args = append(args, r.app, r.user, r.key, r.id)
	}
	var deleted int64
	if len(args) > 0 {
		res, err := d.db.ExecContext(ctx, "DELETE FROM message_collapse_keys WHERE "+b.String(), args...)
		if err != nil {
			return 0, false, fmt.Errorf("saver: prune collapse keys: %w", err)
		}
		deleted, _ = res.RowsAffected()
	}
	if end {
		*cur = collapseCursor{}
	} else {
		last := seen[len(seen)-1]
		*cur = collapseCursor{app: last.app, user: last.user, key: last.key, started: true}
	}
	return deleted, end, nil
}
