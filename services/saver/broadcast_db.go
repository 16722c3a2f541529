package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Broadcast rows (migration 0005). A broadcast is one row in broadcasts
// plus one progress row per room; its per-app seq comes from
// broadcast_seqs in the same transaction.

// Progress states of broadcast_rooms.state.
const (
	roomPending   = 0
	roomDone      = 1
	roomAbandoned = 2
)

const broadcastCols = "id, app, seq, tag, payload, qos, online_only, created_ms, expires_ms"

func scanBroadcast(sc interface{ Scan(...any) error }) (*internalpb.Broadcast, error) {
	b := &internalpb.Broadcast{}
	var online uint8
	err := sc.Scan(&b.Id, &b.App, &b.Seq, &b.Tag, &b.Payload, &b.Qos, &online, &b.CreatedMs, &b.ExpiresMs)
	b.OnlineOnly = online != 0
	return b, err
}

// storeBroadcast inserts b with the next seq of its app and a pending
// progress row per room, and returns the seq. A second call with the same
// id (a retry after a lost answer) stores nothing and returns the first
// seq and creation time.
func (d *msgDB) storeBroadcast(ctx context.Context, b *internalpb.Broadcast, rooms []string, now time.Time) (seq uint64, createdMs int64, err error) {
	err = d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		seq, createdMs, err = insertBroadcast(ctx, tx, b, rooms, now)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("saver: store broadcast %d of %s: %w", b.GetId(), b.GetApp(), err)
	}
	return seq, createdMs, nil
}

// insertBroadcast is storeBroadcast's SQL inside the caller's transaction,
// so a transactional commit (txDB.decide) creates the broadcast in the
// same MySQL transaction as its state change.
func insertBroadcast(ctx context.Context, tx *sql.Tx, b *internalpb.Broadcast, rooms []string, now time.Time) (seq uint64, createdMs int64, err error) {
	nowMs := now.UnixMilli()
	err = tx.QueryRowContext(ctx, "SELECT seq, created_ms FROM broadcasts WHERE id = ?", b.GetId()).Scan(&seq, &createdMs)
	if err == nil {
		return seq, createdMs, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, 0, err
	}
	// The upsert locks the app's counter row until commit: concurrent
	// broadcasts of one app get consecutive seqs in commit order.
	if _, err := tx.ExecContext(ctx, "INSERT INTO broadcast_seqs (app, seq) VALUES (?, 1) ON DUPLICATE KEY UPDATE seq = seq + 1", b.GetApp()); err != nil {
		return 0, 0, err
	}
	if err := tx.QueryRowContext(ctx, "SELECT seq FROM broadcast_seqs WHERE app = ?", b.GetApp()).Scan(&seq); err != nil {
		return 0, 0, err
	}
	createdMs = b.GetCreatedMs()
	online := 0
	if b.GetOnlineOnly() {
		online = 1
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO broadcasts ("+broadcastCols+") VALUES (?,?,?,?,?,?,?,?,?)",
		b.GetId(), b.GetApp(), seq, b.GetTag(), b.GetPayload(), b.GetQos(), online, createdMs, b.GetExpiresMs()); err != nil {
		return 0, 0, err
	}
	if len(rooms) == 0 {
		return seq, createdMs, nil
	}
	args := make([]any, 0, 4*len(rooms))
	for _, r := range rooms {
		args = append(args, b.GetId(), r, nowMs, nowMs)
	}
	q := "INSERT IGNORE INTO broadcast_rooms (broadcast_id, room, next_at_ms, updated_ms) VALUES " + repeatTuple("(?,?,?,?)", len(rooms))
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return 0, 0, err
	}
	return seq, createdMs, nil
}

// addProgress adds counts to (broadcast, room) rows. A room not listed at
// store time (one started later, catching clients up) gets a row of its
// own, done from the start: there is nothing to resend to it. Only
// broadcasts that exist get rows.
func (d *msgDB) addProgress(ctx context.Context, items []*internalpb.BroadcastRoomProgress, now time.Time) error {
	nowMs := now.UnixMilli()
	for _, it := range items {
		_, err := d.db.ExecContext(ctx, "INSERT INTO broadcast_rooms (broadcast_id, room, state, reached, acked, next_at_ms, updated_ms) "+
			"SELECT id, ?, ?, ?, ?, ?, ? FROM broadcasts WHERE id = ? "+
			"ON DUPLICATE KEY UPDATE reached = reached + VALUES(reached), acked = acked + VALUES(acked), "+
			"state = IF(?, ?, state), updated_ms = VALUES(updated_ms)",
			it.GetRoom(), roomDone, it.GetReached(), it.GetAcked(), nowMs, nowMs, it.GetBroadcastId(),
			it.GetDone(), roomDone)
		if err != nil {
			return fmt.Errorf("saver: broadcast %d progress of room %s: %w", it.GetBroadcastId(), it.GetRoom(), err)
		}
	}
	return nil
}

// Bounds of the broadcast sweep: a room that did not confirm a broadcast
// is claimed again after a growing backoff, at most maxBroadcastAttempts
// times or until the broadcast expires, then abandoned (its clients catch
// up when they reconnect elsewhere).
const maxBroadcastAttempts = 10

// broadcastBackoff is the wait after the n-th claim (0-based); the last
// step repeats.
var broadcastBackoff = [...]time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second}

func broadcastBackoffAfter(attempt uint32) time.Duration {
	return broadcastBackoff[min(int(attempt), len(broadcastBackoff)-1)]
}

// claimBroadcastRooms claims up to limit pending (broadcast, room) rows
// created at least minAge ago, as claimUndelivered does for messages
// (SKIP LOCKED, READ COMMITTED). Rows of expired broadcasts and rows out of
// attempts are abandoned instead of returned.
func (d *msgDB) claimBroadcastRooms(ctx context.Context, limit int, minAge time.Duration, now time.Time) ([]*internalpb.BroadcastRoomClaim, error) {
	var out []*internalpb.BroadcastRoomClaim
	nowMs := now.UnixMilli()
	err := inTxOpts(ctx, d.db, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, "SELECT r.room, r.attempts, b.id, b.app, b.seq, b.tag, b.payload, b.qos, b.online_only, b.created_ms, b.expires_ms "+
			"FROM broadcast_rooms r JOIN broadcasts b ON b.id = r.broadcast_id "+
			"WHERE r.state = ? AND r.next_at_ms <= ? AND b.created_ms <= ? ORDER BY r.next_at_ms LIMIT ? FOR UPDATE SKIP LOCKED",
			roomPending, nowMs, now.Add(-minAge).UnixMilli(), limit)
		if err != nil {
			return err
		}
		type claimed struct {
			c        *internalpb.BroadcastRoomClaim
			attempts uint32
		}
		var got []claimed
		for rows.Next() {
			var room string
			var attempts uint32
			b := &internalpb.Broadcast{}
			var online uint8
			if err := rows.Scan(&room, &attempts, &b.Id, &b.App, &b.Seq, &b.Tag, &b.Payload, &b.Qos, &online, &b.CreatedMs, &b.ExpiresMs); err != nil {
				rows.Close()
				return err
			}
			b.OnlineOnly = online != 0
			got = append(got, claimed{&internalpb.BroadcastRoomClaim{Broadcast: b, Room: room}, attempts})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, g := range got {
			b := g.c.GetBroadcast()
			if (b.GetExpiresMs() > 0 && b.GetExpiresMs() <= nowMs) || g.attempts >= maxBroadcastAttempts {
				if _, err := tx.ExecContext(ctx, "UPDATE broadcast_rooms SET state = ?, updated_ms = ? WHERE broadcast_id = ? AND room = ?",
					roomAbandoned, nowMs, b.GetId(), g.c.GetRoom()); err != nil {
					return err
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, "UPDATE broadcast_rooms SET attempts = attempts + 1, next_at_ms = ?, updated_ms = ? WHERE broadcast_id = ? AND room = ?",
				now.Add(broadcastBackoffAfter(g.attempts)).UnixMilli(), nowMs, b.GetId(), g.c.GetRoom()); err != nil {
				return err
			}
			out = append(out, g.c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saver: claim broadcast rooms: %w", err)
	}
	return out, nil
}

// broadcastStatus reads one broadcast of app and its rooms' progress.
func (d *msgDB) broadcastStatus(ctx context.Context, app string, id uint64) (*internalpb.BroadcastStatusReply, error) {
	b, err := scanBroadcast(d.db.QueryRowContext(ctx, "SELECT "+broadcastCols+" FROM broadcasts WHERE id = ? AND app = ?", id, app))
	if errors.Is(err, sql.ErrNoRows) {
		return &internalpb.BroadcastStatusReply{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("saver: broadcast %d status: %w", id, err)
	}
	rep := &internalpb.BroadcastStatusReply{Found: true, Broadcast: b}
	rows, err := d.db.QueryContext(ctx, "SELECT room, state, reached, acked, attempts FROM broadcast_rooms WHERE broadcast_id = ? ORDER BY room", id)
	if err != nil {
		return nil, fmt.Errorf("saver: broadcast %d rooms: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &internalpb.BroadcastRoomState{}
		var state int
		if err := rows.Scan(&r.Room, &state, &r.Reached, &r.Acked, &r.Attempts); err != nil {
			return nil, fmt.Errorf("saver: broadcast %d rooms: %w", id, err)
		}
		r.Done, r.Abandoned = state == roomDone, state == roomAbandoned
		rep.Rooms = append(rep.Rooms, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saver: broadcast %d rooms: %w", id, err)
	}
	return rep, nil
}

// catchUp returns the newest limit unexpired broadcasts of app after seq,
// oldest first. online_only ones count only if created at or after
// onlineSince (the client was online when they went out). Tag broadcasts
// count only for the given tags (the user's, at most MaxTagsPerUser), in
// seq order with the app-wide ones; the filter runs on the (app, seq)
// range, so the limit counts only rows the user gets.
func (d *msgDB) catchUp(ctx context.Context, app string, after uint64, limit int, onlineSince int64, tags []string, now time.Time) ([]*internalpb.Broadcast, error) {
	return d.broadcastsAfter(ctx, app, after, limit, onlineSince, tags, false, now)
}

// broadcastsAfter is catchUp; anyTag drops the tag filter (every tag's
// broadcasts count), for a read CatchUpBatch shares among many users.
func (d *msgDB) broadcastsAfter(ctx context.Context, app string, after uint64, limit int, onlineSince int64, tags []string, anyTag bool, now time.Time) ([]*internalpb.Broadcast, error) {
	tagCond := "tag = ''"
	args := []any{app, after}
	if anyTag {
		tagCond = "TRUE"
	} else if len(tags) > 0 {
		tagCond = "(tag = '' OR tag IN (?" + strings.Repeat(", ?", len(tags)-1) + "))"
		for _, t := range tags {
			args = append(args, t)
		}
	}
	args = append(args, now.UnixMilli(), onlineSince, limit)
	rows, err := d.db.QueryContext(ctx, "SELECT "+broadcastCols+" FROM broadcasts "+
		"WHERE app = ? AND seq > ? AND "+tagCond+" AND (expires_ms = 0 OR expires_ms > ?) AND (online_only = 0 OR created_ms >= ?) "+
		"ORDER BY seq DESC LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("saver: catch up %s after %d: %w", app, after, err)
	}
	defer rows.Close()
	var out []*internalpb.Broadcast
	for rows.Next() {
		b, err := scanBroadcast(rows)
		if err != nil {
			return nil, fmt.Errorf("saver: catch up %s after %d: %w", app, after, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saver: catch up %s after %d: %w", app, after, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// pruneBroadcasts deletes up to limit broadcasts that expired before
// `before`, with their progress rows. Status answers for them until then.
func (d *msgDB) pruneBroadcasts(ctx context.Context, before time.Time, limit int) (int, error) {
	var ids []uint64
	rows, err := d.db.QueryContext(ctx, "SELECT id FROM broadcasts WHERE expires_ms > 0 AND expires_ms < ? LIMIT ?", before.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("saver: prune broadcasts: %w", err)
	}
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("saver: prune broadcasts: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return 0, err
	}
	err = d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM broadcast_rooms WHERE broadcast_id IN ("+placeholders(len(ids))+")", idArgs(ids)...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM broadcasts WHERE id IN ("+placeholders(len(ids))+")", idArgs(ids)...)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("saver: prune %d broadcasts: %w", len(ids), err)
	}
	return len(ids), nil
}
