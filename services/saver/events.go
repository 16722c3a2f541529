package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// The events outbox (migration 0009, docs/OPERATIONS.md "Callbacks and
// receipts"): receipts are written here in the transaction that finishes
// their message; online/offline events come from rooms (RecordEvents);
// coordinators lease them in order per (app, user) and settle them.

// Bounds of the outbox calls.
const (
	// maxEventLease bounds one LeaseEvents; eventScanFactor × limit rows
	// are looked at to find that many deliverable ones.
	maxEventLease   = 1000
	eventScanFactor = 4
	minEventLease   = time.Second
	maxEventLeaseMs = int64(10 * time.Minute / time.Millisecond)
	// Column sizes of migration 0009.
	maxPlatformLen = 32
	maxReasonLen   = 32
)

// receiptOutcome names the outcomes that produce a receipt; collapsed
// messages do not (the newer message carries the business's intent).
func receiptOutcome(o internalpb.MessageState) (string, bool) {
	switch o {
	case internalpb.MessageState_MESSAGE_STATE_ACKED:
		return "acked", true
	case internalpb.MessageState_MESSAGE_STATE_EXPIRED:
		return "expired", true
	case internalpb.MessageState_MESSAGE_STATE_DEAD:
		return "dead", true
	}
	return "", false
}

// recordReceipts inserts a receipt for each row that asked for one, inside
// the caller's transaction (the one moving the rows to message_outcomes):
// the receipt commits exactly when the outcome does, once.
func recordReceipts(ctx context.Context, tx *sql.Tx, rows []finishedRow, outcome internalpb.MessageState, now time.Time) error {
	name, ok := receiptOutcome(outcome)
	if !ok {
		return nil
	}
	var evs []*internalpb.Event
	for _, r := range rows {
		if r.receipt {
			evs = append(evs, &internalpb.Event{Kind: internalpb.EventKind_EVENT_KIND_RECEIPT, App: r.app, User: r.user,
				MessageId: r.id, Outcome: name, DeliveryCount: r.deliveryCount, AtMs: now.UnixMilli()})
		}
	}
	return insertEvents(ctx, tx, evs)
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// insertEvents inserts evs in statements of at most insertMaxRows rows.
func insertEvents(ctx context.Context, ex execer, evs []*internalpb.Event) error {
	for start := 0; start < len(evs); start += insertMaxRows {
		part := evs[start:min(start+insertMaxRows, len(evs))]
		var b strings.Builder
		b.WriteString("INSERT INTO events (kind, app, `user`, device, platform, room_id, session_id, reason, message_id, outcome, delivery_count, at_ms) VALUES ")
		args := make([]any, 0, 12*len(part))
		for i, e := range part {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
			args = append(args, uint8(e.GetKind()), e.GetApp(), e.GetUser(), e.GetDevice(), e.GetPlatform(), e.GetRoomId(),
				e.GetSessionId(), e.GetReason(), e.GetMessageId(), e.GetOutcome(), e.GetDeliveryCount(), e.GetAtMs())
		}
		if _, err := ex.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert %d events: %w", len(part), err)
		}
	}
	return nil
}

// eventsDB is the outbox's MySQL side.
type eventsDB struct {
	db    *sql.DB
	retry retryPolicy
}

func (d *eventsDB) record(ctx context.Context, evs []*internalpb.Event) error {
	if len(evs) == 0 {
		return nil
	}
	return d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error { return insertEvents(ctx, tx, evs) })
}

const eventColumns = "seq, kind, app, `user`, device, platform, room_id, session_id, reason, message_id, outcome, delivery_count, at_ms, attempts"

type userKey struct{ app, user string }

// lease hands out up to limit due events under a new token, keeping order
// per (app, user): a candidate is taken only if every older event of its
// user is taken in this lease too. Any other event of that user (leased
// elsewhere, waiting for its back-off, or locked by a concurrent lease)
// holds the user's later events back. Runs at READ COMMITTED so the
// candidate scan locks only the rows it returns.
func (d *eventsDB) lease(ctx context.Context, limit int, lease time.Duration, now time.Time) (uint64, int64, []*internalpb.Event, error) {
	token, err := newClaimToken()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("saver: lease events: token: %w", err)
	}
	until := now.Add(lease).UnixMilli()
	var out []*internalpb.Event
	err = d.retry.inTx(ctx, d.db, readCommitted(), func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, "SELECT seq, app, `user` FROM events WHERE next_at_ms <= ? AND lease_until_ms <= ? ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED",
			now.UnixMilli(), now.UnixMilli(), limit*eventScanFactor)
		if err != nil {
			return err
		}
		cand := map[userKey][]uint64{}
		var users []userKey
		var maxSeq uint64
		for rows.Next() {
			var seq uint64
			var k userKey
			if err := rows.Scan(&seq, &k.app, &k.user); err != nil {
				rows.Close()
				return err
			}
			if _, ok := cand[k]; !ok {
				users = append(users, k)
			}
			cand[k] = append(cand[k], seq)
			maxSeq = max(maxSeq, seq)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(users) == 0 {
			return nil
		}
		take, err := headChains(ctx, tx, users, cand, maxSeq, limit)
		if err != nil {
			return err
		}
		if len(take) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE events SET lease_until_ms = ?, claim_token = ? WHERE seq IN ("+placeholders(len(take))+")",
			append([]any{until, token}, idArgs(take)...)...); err != nil {
			return err
		}
		out, err = readEvents(ctx, tx, take)
		return err
	})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("saver: lease events: %w", err)
	}
	return token, until, out, nil
}

// headChains keeps, for each user, the longest run of candidates that
// starts at the user's oldest event and skips none of the user's events,
// up to limit events in all.
func headChains(ctx context.Context, tx *sql.Tx, users []userKey, cand map[userKey][]uint64, maxSeq uint64, limit int) ([]uint64, error) {
	var b strings.Builder
	b.WriteString("SELECT app, `user`, seq FROM events WHERE (app, `user`) IN (")
	args := make([]any, 0, 2*len(users)+1)
	for i, k := range users {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?)")
		args = append(args, k.app, k.user)
	}
	b.WriteString(") AND seq <= ? ORDER BY app, `user`, seq")
	args = append(args, maxSeq)
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	all := map[userKey][]uint64{}
	for rows.Next() {
		var k userKey
		var seq uint64
		if err := rows.Scan(&k.app, &k.user, &seq); err != nil {
			return nil, err
		}
		all[k] = append(all[k], seq)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var take []uint64
	for _, k := range users {
		c, a := cand[k], all[k]
		for i := 0; i < len(c) && i < len(a) && c[i] == a[i] && len(take) < limit; i++ {
			take = append(take, c[i])
		}
	}
	return sortedIDs(take), nil
}

func readEvents(ctx context.Context, q querier, seqs []uint64) ([]*internalpb.Event, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+eventColumns+" FROM events WHERE seq IN ("+placeholders(len(seqs))+") ORDER BY seq", idArgs(seqs)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*internalpb.Event
	for rows.Next() {
		e := &internalpb.Event{}
		var kind uint8
		if err := rows.Scan(&e.Seq, &kind, &e.App, &e.User, &e.Device, &e.Platform, &e.RoomId, &e.SessionId, &e.Reason,
			&e.MessageId, &e.Outcome, &e.DeliveryCount, &e.AtMs, &e.Attempts); err != nil {
			return nil, err
		}
		e.Kind = internalpb.EventKind(kind)
		out = append(out, e)
	}
	return out, rows.Err()
}

// finish settles events of token: delivered ones are deleted, failed ones
// get their next time and one more attempt, released ones only lose the
// lease. Events the token no longer holds (the lease ran out and another
// coordinator took them) are left alone.
func (d *eventsDB) finish(ctx context.Context, token uint64, delivered []uint64, failed []*internalpb.EventRetry, released []uint64) (int, error) {
	settled := 0
	err := d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		settled = 0
		if len(delivered) > 0 {
			res, err := tx.ExecContext(ctx, "DELETE FROM events WHERE claim_token = ? AND seq IN ("+placeholders(len(delivered))+")",
				append([]any{token}, idArgs(sortedIDs(delivered))...)...)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			settled += int(n)
		}
		for _, f := range failed {
			res, err := tx.ExecContext(ctx, "UPDATE events SET attempts = attempts + IF(?, 0, 1), next_at_ms = ?, lease_until_ms = 0, claim_token = 0 WHERE seq = ? AND claim_token = ?",
				f.GetDeferred(), f.GetNextAtMs(), f.GetSeq(), token)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			settled += int(n)
		}
		if len(released) > 0 {
			res, err := tx.ExecContext(ctx, "UPDATE events SET lease_until_ms = 0, claim_token = 0 WHERE claim_token = ? AND seq IN ("+placeholders(len(released))+")",
				append([]any{token}, idArgs(sortedIDs(released))...)...)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			settled += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("saver: finish events: %w", err)
	}
	return settled, nil
}

// backlog counts the events waiting in the outbox (for the gauge).
func (d *eventsDB) backlog(ctx context.Context) (int64, error) {
	var n int64
	err := d.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM events").Scan(&n)
	return n, err
}
