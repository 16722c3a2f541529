package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// tagDB is the MySQL side of tags (migrations/0006_tags.sql), the durable
// copy. Writes lock the tag's tag_sizes row first and then the users'
// user_tag_counts rows in byte order, so concurrent writes take locks in
// one order and the member and tag-count bounds hold exactly.
type tagDB struct {
	db         *sql.DB
	retry      retryPolicy // -mysql-tx-attempts, as every saver transaction
	maxMembers uint64      // members of one tag
	maxPerUser uint32      // tags of one user
}

// errTagLimit rolls back an add that would pass a bound.
var errTagLimit = errors.New("saver: tag bound")

// tagWrite is the outcome of one add or remove.
type tagWrite struct {
	changed []string // users actually added or removed, in byte order
	members uint64   // tag size after the call
	limit   internalpb.TagLimit
	full    []string // with TAG_LIMIT_USER_FULL: users already at the bound
}

// sortedUnique returns users sorted by bytes without repeats.
func sortedUnique(users []string) []string {
	out := append([]string(nil), users...)
	sort.Strings(out)
	n := 0
	for i, u := range out {
		if i == 0 || u != out[n-1] {
			out[n] = u
			n++
		}
	}
	return out[:n]
}

func strArgs(head []any, ss []string) []any {
	args := append(make([]any, 0, len(head)+len(ss)), head...)
	for _, s := range ss {
		args = append(args, s)
	}
	return args
}

// lockTag creates the tag's size row if needed and locks it.
func lockTag(ctx context.Context, tx *sql.Tx, app, tag string, create bool) (members uint64, found bool, err error) {
	if create {
		if _, err := tx.ExecContext(ctx, "INSERT INTO tag_sizes (app, tag, members) VALUES (?, ?, 0) ON DUPLICATE KEY UPDATE members = members", app, tag); err != nil {
			return 0, false, fmt.Errorf("create size row: %w", err)
		}
	}
	err = tx.QueryRowContext(ctx, "SELECT members FROM tag_sizes WHERE app = ? AND tag = ? FOR UPDATE", app, tag).Scan(&members)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("lock size row: %w", err)
	}
	return members, true, nil
}

// existing returns which of users (sorted) are members of the tag.
func existing(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, app, tag string, users []string) (map[string]bool, error) {
	out := make(map[string]bool, len(users))
	if len(users) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, "SELECT `user` FROM tag_members WHERE app = ? AND tag = ? AND `user` IN ("+placeholders(len(users))+")",
		strArgs([]any{app, tag}, users)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

// add makes users members of the tag, all or none: when the tag would pass
// maxMembers or a user maxPerUser, nothing is written and the result says
// which bound.
func (d *tagDB) add(ctx context.Context, app, tag string, users []string, now time.Time) (tagWrite, error) {
	users = sortedUnique(users)
	var res tagWrite
	err := d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		res = tagWrite{}
		members, _, err := lockTag(ctx, tx, app, tag, true)
		if err != nil {
			return err
		}
		res.members = members
		have, err := existing(ctx, tx, app, tag, users)
		if err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		var fresh []string
		for _, u := range users {
			if !have[u] {
				fresh = append(fresh, u)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		if members+uint64(len(fresh)) > d.maxMembers {
			res.limit = internalpb.TagLimit_TAG_LIMIT_TAG_FULL
			return errTagLimit
		}
		// Count rows, created at 0 and locked in byte order.
		vals := make([]any, 0, 2*len(fresh))
		for _, u := range fresh {
			vals = append(vals, app, u)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO user_tag_counts (app, `user`, tags) VALUES "+repeatTuple("(?, ?, 0)", len(fresh))+
			" ON DUPLICATE KEY UPDATE tags = tags", vals...); err != nil {
			return fmt.Errorf("create count rows: %w", err)
		}
		rows, err := tx.QueryContext(ctx, "SELECT `user`, tags FROM user_tag_counts WHERE app = ? AND `user` IN ("+placeholders(len(fresh))+") FOR UPDATE",
			strArgs([]any{app}, fresh)...)
		if err != nil {
			return fmt.Errorf("lock count rows: %w", err)
		}
		for rows.Next() {
			var u string
			var n uint32
			if err := rows.Scan(&u, &n); err != nil {
				rows.Close()
				return fmt.Errorf("lock count rows: %w", err)
			}
			if n >= d.maxPerUser {
				res.full = append(res.full, u)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("lock count rows: %w", err)
		}
		if len(res.full) > 0 {
			res.limit = internalpb.TagLimit_TAG_LIMIT_USER_FULL
			return errTagLimit
		}
		vals = vals[:0]
		for _, u := range fresh {
			vals = append(vals, app, tag, u, now.UnixMilli())
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO tag_members (app, tag, `user`, added_ms) VALUES "+repeatTuple("(?, ?, ?, ?)", len(fresh)), vals...); err != nil {
			return fmt.Errorf("insert members: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE user_tag_counts SET tags = tags + 1 WHERE app = ? AND `user` IN ("+placeholders(len(fresh))+")",
			strArgs([]any{app}, fresh)...); err != nil {
			return fmt.Errorf("count tags: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE tag_sizes SET members = members + ? WHERE app = ? AND tag = ?", len(fresh), app, tag); err != nil {
			return fmt.Errorf("count members: %w", err)
		}
		res.changed, res.members = fresh, members+uint64(len(fresh))
		return nil
	})
	if errors.Is(err, errTagLimit) {
		// Rolled back, with the size and count rows created above; the
		// reply reports the size before the call.
		res.changed = nil
		return res, nil
	}
	if err != nil {
		return tagWrite{}, fmt.Errorf("saver: tag add %s/%s (%d users): %w", app, tag, len(users), err)
	}
	return res, nil
}

// remove drops users from the tag; rows of tags and users left empty go.
func (d *tagDB) remove(ctx context.Context, app, tag string, users []string) (tagWrite, error) {
	users = sortedUnique(users)
	var res tagWrite
	err := d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		res = tagWrite{}
		members, found, err := lockTag(ctx, tx, app, tag, false)
		if err != nil || !found {
			return err
		}
		res.members = members
		have, err := existing(ctx, tx, app, tag, users)
		if err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		var gone []string
		for _, u := range users {
			if have[u] {
				gone = append(gone, u)
			}
		}
		if len(gone) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM tag_members WHERE app = ? AND tag = ? AND `user` IN ("+placeholders(len(gone))+")",
			strArgs([]any{app, tag}, gone)...); err != nil {
			return fmt.Errorf("delete members: %w", err)
		}
		inUsers := "app = ? AND `user` IN (" + placeholders(len(gone)) + ")"
		if _, err := tx.ExecContext(ctx, "UPDATE user_tag_counts SET tags = tags - 1 WHERE tags > 0 AND "+inUsers, strArgs([]any{app}, gone)...); err != nil {
			return fmt.Errorf("count tags: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM user_tag_counts WHERE tags = 0 AND "+inUsers, strArgs([]any{app}, gone)...); err != nil {
			return fmt.Errorf("drop count rows: %w", err)
		}
		left := members - min(members, uint64(len(gone)))
		if left == 0 {
			_, err = tx.ExecContext(ctx, "DELETE FROM tag_sizes WHERE app = ? AND tag = ?", app, tag)
		} else {
			_, err = tx.ExecContext(ctx, "UPDATE tag_sizes SET members = ? WHERE app = ? AND tag = ?", left, app, tag)
		}
		if err != nil {
			return fmt.Errorf("count members: %w", err)
		}
		res.changed, res.members = gone, left
		return nil
	})
	if err != nil {
		return tagWrite{}, fmt.Errorf("saver: tag remove %s/%s (%d users): %w", app, tag, len(users), err)
	}
	return res, nil
}

// userTags lists a user's tags in byte order.
func (d *tagDB) userTags(ctx context.Context, app, user string) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT tag FROM tag_members WHERE app = ? AND `user` = ? ORDER BY tag", app, user)
	if err != nil {
		return nil, fmt.Errorf("saver: tags of %s/%s: %w", app, user, err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("saver: tags of %s/%s: %w", app, user, err)
	}
	return out, nil
}

// members returns up to limit members after the cursor, in byte order.
func (d *tagDB) members(ctx context.Context, app, tag, after string, limit int) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT `user` FROM tag_members WHERE app = ? AND tag = ? AND `user` > ? ORDER BY `user` LIMIT ?",
		app, tag, after, limit)
	if err != nil {
		return nil, fmt.Errorf("saver: members of %s/%s: %w", app, tag, err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("saver: members of %s/%s: %w", app, tag, err)
	}
	return out, nil
}

// membersOf returns which of users are members of the tag.
func (d *tagDB) membersOf(ctx context.Context, app, tag string, users []string) (map[string]bool, error) {
	have, err := existing(ctx, d.db, app, tag, sortedUnique(users))
	if err != nil {
		return nil, fmt.Errorf("saver: membership in %s/%s: %w", app, tag, err)
	}
	return have, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// repeatTuple returns "t, t, …" n times for a multi-row VALUES list.
func repeatTuple(t string, n int) string {
	b := make([]byte, 0, n*(len(t)+2))
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, t...)
	}
	return string(b)
}
