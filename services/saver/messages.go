package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// msgRef names one message of one user.
type msgRef struct {
	app, user string
	id        uint64
}

// Statement size bounds: a multi-row INSERT is split so it stays far below
// MariaDB's max_allowed_packet (16 MiB by default) whatever the payloads.
const (
	insertMaxRows  = 200
	insertMaxBytes = 4 << 20
	// userLoadMax bounds one MySQL fallback read of a user's messages; an
	// inbox filled from a truncated read is not marked complete.
	userLoadMax = 2000
)

const (
	stateStored    = uint8(internalpb.MessageState_MESSAGE_STATE_STORED)
	stateDelivered = uint8(internalpb.MessageState_MESSAGE_STATE_DELIVERED)
)

// db is saver's MySQL side.
type msgDB struct {
	db *sql.DB
	// replica serves the reads that tolerate lag; nil without -mysql-replica.
	replica *replica
	// retry is the policy of every transaction (-mysql-tx-attempts).
	retry retryPolicy
}

func sortedIDs(ids []uint64) []uint64 {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// insert stores msgs in one transaction (or one autocommitted INSERT, see
// oneStatement) and returns those it stored or found already stored. A
// message of check whose id already has an outcome (acked, expired or
// dead) is dropped, so a Store retried after the ack does not deliver it
// again; ids left out of check were never sent before (StoreRequest.fresh)
// and cost no read.
//
// collapsed lists the messages this Store finished as collapsed (older
// unacked ones with a collapse key of a stored message), to leave the
// Redis inboxes after the commit.
func (d *msgDB) insert(ctx context.Context, msgs []*internalpb.Message, check []uint64, now time.Time) (kept []*internalpb.Message, replaced map[uint64]uint64, collapsed []msgRef, err error) {
	if oneStatement(msgs) {
		kept, err = d.insertPlain(ctx, msgs, check, now)
		return kept, nil, nil, err
	}
	err = d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		done, err := outcomesOf(ctx, tx, check)
		if err != nil {
			return err
		}
		if replaced, err = claimKeys(ctx, tx, msgs, now); err != nil {
			return err
		}
		kept = kept[:0]
		for _, m := range msgs {
			if _, dup := replaced[m.GetId()]; !done[m.GetId()] && !dup {
				kept = append(kept, m)
			}
		}
		if kept, collapsed, err = collapse(ctx, tx, kept, now); err != nil {
			return err
		}
		return insertAll(ctx, tx, kept, now, insertMaxRows)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return kept, replaced, collapsed, nil
}

// oneStatement says whether msgs can be stored without a transaction:
// no idempotency key and no collapse key (each needs a locking read in the
// transaction of the insert) and few enough rows and bytes for one INSERT,
// which InnoDB commits atomically on its own. That is the whole of a
// unicast batch from center, and it saves the START TRANSACTION and COMMIT
// round trips; autocommit returns only after the commit is durable, as
// COMMIT does.
func oneStatement(msgs []*internalpb.Message) bool {
	if len(msgs) > insertMaxRows {
		return false
	}
	size := 0
	for _, m := range msgs {
		if m.GetIdempotencyKey() != "" || m.GetCollapseKey() != "" {
			return false
		}
		size += len(m.GetPayload())
	}
	return len(msgs) == 1 || size <= insertMaxBytes
}

// insertPlain is insert for msgs that pass oneStatement: the outcome check
// and one autocommitted INSERT. The check is no weaker than in a
// transaction: there it reads a snapshot, which an ack committed before
// the INSERT does not change either.
func (d *msgDB) insertPlain(ctx context.Context, msgs []*internalpb.Message, check []uint64, now time.Time) ([]*internalpb.Message, error) {
	done, err := outcomesOf(ctx, d.db, check)
	if err != nil {
		return nil, err
	}
	kept := msgs
	if len(done) > 0 {
		kept = make([]*internalpb.Message, 0, len(msgs))
		for _, m := range msgs {
			if !done[m.GetId()] {
				kept = append(kept, m)
			}
		}
	}
	if len(kept) == 0 {
		return kept, nil
	}
	if err := d.retry.run(ctx, func() error { return insertRows(ctx, d.db, kept, now) }); err != nil {
		return nil, err
	}
	return kept, nil
}

// insertAll inserts msgs in multi-row statements of at most maxRows rows
// and insertMaxBytes of payload.
func insertAll(ctx context.Context, tx *sql.Tx, msgs []*internalpb.Message, now time.Time, maxRows int) error {
	for start := 0; start < len(msgs); {
		end, size := start, 0
		for end < len(msgs) && end-start < maxRows && (end == start || size+len(msgs[end].GetPayload()) <= insertMaxBytes) {
			size += len(msgs[end].GetPayload())
			end++
		}
		if err := insertRows(ctx, tx, msgs[start:end], now); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// claimKeys records the idempotency keys of msgs in tx and returns the
// messages whose key already names another message (an earlier Store, or
// an earlier message of this batch): message id -> that message's id.
// The locking read sees keys committed after this transaction began, and
// waits for one still being inserted, so two Stores racing with one key
// agree on a single message.
func claimKeys(ctx context.Context, tx *sql.Tx, msgs []*internalpb.Message, now time.Time) (map[uint64]uint64, error) {
	var keyed []*internalpb.Message
	for _, m := range msgs {
		if m.GetIdempotencyKey() != "" {
			keyed = append(keyed, m)
		}
	}
	if len(keyed) == 0 {
		return nil, nil
	}
	var b strings.Builder
	b.WriteString("INSERT IGNORE INTO idempotency_keys (app, ikey, id, created_ms) VALUES ")
	args := make([]any, 0, 4*len(keyed))
	for i, m := range keyed {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?)")
		args = append(args, m.GetApp(), m.GetIdempotencyKey(), m.GetId(), now.UnixMilli())
	}
	if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	b.Reset()
	b.WriteString("SELECT app, ikey, id FROM idempotency_keys WHERE (app, ikey) IN (")
	args = args[:0]
	for i, m := range keyed {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?)")
		args = append(args, m.GetApp(), m.GetIdempotencyKey())
	}
	b.WriteString(") LOCK IN SHARE MODE")
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	defer rows.Close()
	owner := make(map[[2]string]uint64, len(keyed))
	for rows.Next() {
		var app, key string
		var id uint64
		if err := rows.Scan(&app, &key, &id); err != nil {
			return nil, fmt.Errorf("idempotency keys: %w", err)
		}
		owner[[2]string{app, key}] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	replaced := map[uint64]uint64{}
	for _, m := range keyed {
		if id, ok := owner[[2]string{m.GetApp(), m.GetIdempotencyKey()}]; ok && id != m.GetId() {
			replaced[m.GetId()] = id
		}
	}
	return replaced, nil
}

// insertRows runs in a transaction or on the pool (one autocommitted
// statement, oneStatement).
func insertRows(ctx context.Context, tx execer, msgs []*internalpb.Message, now time.Time) error {
	var b strings.Builder
	b.WriteString("INSERT IGNORE INTO messages (id, app, `user`, device, payload, qos, created_ms, expires_ms, delivery_count, state, updated_ms, " +
		"multicast_id, collapse_key, priority, redeliver_at_ms, receipt) VALUES ")
	args := make([]any, 0, len(msgs)*14)
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,0,?,?,?,?,?,?,?)")
		payload := m.GetPayload()
		if payload == nil {
			payload = []byte{}
		}
		args = append(args, m.GetId(), m.GetApp(), m.GetUser(), m.GetDevice(), payload, m.GetQos(),
			m.GetCreatedMs(), m.GetExpiresMs(), stateStored, now.UnixMilli(), m.GetMulticastId(), m.GetCollapseKey(), m.GetPriority(), m.GetRedeliverAtMs(), m.GetReceipt())
	}
	if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("insert %d messages: %w", len(msgs), err)
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// outcomesOf returns which of ids already have an outcome; none asked,
// no read.
func outcomesOf(ctx context.Context, q querier, ids []uint64) (map[uint64]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	done, err := queryIDs(ctx, q, "SELECT id FROM message_outcomes WHERE id IN ("+placeholders(len(ids))+")", idArgs(ids)...)
	if err != nil {
		return nil, fmt.Errorf("check outcomes of %d ids: %w", len(ids), err)
	}
	return done, nil
}

func queryIDs(ctx context.Context, q querier, query string, args ...any) (map[uint64]bool, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uint64]bool{}
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// loadUser reads a user's unexpired messages, oldest first, with their
// delivery counts; complete is false when more than userLoadMax exist.
func (d *msgDB) loadUser(ctx context.Context, u userRef, now time.Time) (msgs []*internalpb.Message, complete bool, err error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id, device, payload, qos, created_ms, expires_ms, delivery_count, collapse_key, priority, multicast_id FROM messages "+
		"WHERE app = ? AND `user` = ? AND (expires_ms = 0 OR expires_ms > ?) ORDER BY id LIMIT ?",
		u.app, u.user, now.UnixMilli(), userLoadMax+1)
	if err != nil {
		return nil, false, fmt.Errorf("saver: load %s/%s: %w", u.app, u.user, err)
	}
	defer rows.Close()
	for rows.Next() {
		m := &internalpb.Message{App: u.app, User: u.user}
		if err := rows.Scan(&m.Id, &m.Device, &m.Payload, &m.Qos, &m.CreatedMs, &m.ExpiresMs, &m.DeliveryCount, &m.CollapseKey, &m.Priority, &m.MulticastId); err != nil {
			return nil, false, fmt.Errorf("saver: load %s/%s: %w", u.app, u.user, err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("saver: load %s/%s: %w", u.app, u.user, err)
	}
	if len(msgs) > userLoadMax {
		return msgs[:userLoadMax], false, nil
	}
	return msgs, true, nil
}

// counts returns the delivery count of those ids that still exist and
// belong to u; an id missing from the result is gone from MySQL.
func (d *msgDB) counts(ctx context.Context, u userRef, ids []uint64) (map[uint64]uint32, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id, delivery_count FROM messages WHERE id IN ("+placeholders(len(ids))+") AND app = ? AND `user` = ?",
		idArgs(ids, u.app, u.user)...)
	if err != nil {
		return nil, fmt.Errorf("saver: counts of %s/%s: %w", u.app, u.user, err)
	}
	defer rows.Close()
	out := make(map[uint64]uint32, len(ids))
	for rows.Next() {
		var id uint64
		var n uint32
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("saver: counts of %s/%s: %w", u.app, u.user, err)
		}
		out[id] = n
	}
	return out, rows.Err()
}

// markDelivered counts one more delivery of each id.
func (d *msgDB) markDelivered(ctx context.Context, ids []uint64, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	ids = sortedIDs(ids)
	_, err := d.countDelivery(ctx, "id IN ("+placeholders(len(ids))+")", idArgs(ids), len(ids), now)
	return err
}

// countDelivery counts one more delivery of the rows matching cond (ids
// sorted, so concurrent updates lock rows in the same order): one
// autocommitted UPDATE, atomic on its own, retried on deadlock. It
// returns the rows counted; n is the refs asked for, for the error.
func (d *msgDB) countDelivery(ctx context.Context, cond string, args []any, n int, now time.Time) (int64, error) {
	var counted int64
	err := d.retry.run(ctx, func() error {
		res, err := d.db.ExecContext(ctx, "UPDATE messages SET delivery_count = delivery_count + 1, state = ?, updated_ms = ? WHERE "+cond,
			append([]any{stateDelivered, now.UnixMilli()}, args...)...)
		if err != nil {
			return err
		}
		counted, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("saver: mark %d delivered: %w", n, err)
	}
	return counted, nil
}

// finishedRow is a messages row about to leave the hot table.
type finishedRow struct {
	msgRef
	deliveryCount uint32
	createdMs     int64
	expiresMs     int64
	multicastID   uint64
	// receipt: the push asked for a delivery receipt (events.go).
	receipt bool
}

// finish moves the rows among ids that keep accepts from messages to
// message_outcomes with outcome, in one transaction, and returns them. The
// rows are locked first, so concurrent finishers (another saver's sweeper,
// an ack racing an expiry) serialize and each row is finished exactly once:
// the loser no longer finds it.
func (d *msgDB) finish(ctx context.Context, outcome internalpb.MessageState, ids []uint64, now time.Time, keep func(*finishedRow) bool) ([]msgRef, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ids = sortedIDs(ids)
	var done []msgRef
	err := d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		done = done[:0]
		rows, err := tx.QueryContext(ctx, "SELECT id, app, `user`, delivery_count, created_ms, expires_ms, multicast_id, receipt FROM messages WHERE id IN ("+
			placeholders(len(ids))+") FOR UPDATE", idArgs(ids)...)
		if err != nil {
			return err
		}
		var take []finishedRow
		for rows.Next() {
			var r finishedRow
			if err := rows.Scan(&r.id, &r.app, &r.user, &r.deliveryCount, &r.createdMs, &r.expiresMs, &r.multicastID, &r.receipt); err != nil {
				rows.Close()
				return err
			}
			if keep(&r) {
				take = append(take, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range take {
			done = append(done, r.msgRef)
		}
		return moveToOutcomes(ctx, tx, take, outcome, now)
	})
	if err != nil {
		return nil, fmt.Errorf("saver: finish %d messages as %s: %w", len(ids), outcome, err)
	}
	return done, nil
}

// moveToOutcomes records outcome for rows in message_outcomes and deletes
// them from messages, inside tx; the rows are locked by the caller. A row
// whose id is not in messages (a message collapsed before it was
// inserted) only gets its outcome.
func moveToOutcomes(ctx context.Context, tx *sql.Tx, rows []finishedRow, outcome internalpb.MessageState, now time.Time) error {
	if len(rows) == 0 {
		return nil
	}
	if err := recordOutcomes(ctx, tx, rows, outcome, now); err != nil {
		return err
	}
	del := make([]uint64, len(rows))
	for i, r := range rows {
		del[i] = r.id
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM messages WHERE id IN ("+placeholders(len(del))+")", idArgs(del)...); err != nil {
		return fmt.Errorf("delete %d finished messages: %w", len(del), err)
	}
	return nil
}

// recordOutcomes writes outcome for rows to message_outcomes, and their
// receipts to the outbox, inside tx (which also takes the rows out of
// messages): a receipt exists exactly when its outcome does.
func recordOutcomes(ctx context.Context, tx *sql.Tx, rows []finishedRow, outcome internalpb.MessageState, now time.Time) error {
	if len(rows) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO message_outcomes (id, app, `user`, outcome, delivery_count, at_ms, created_ms, expires_ms, multicast_id) VALUES ")
	args := make([]any, 0, len(rows)*9)
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?)")
		args = append(args, r.id, r.app, r.user, uint8(outcome), r.deliveryCount, now.UnixMilli(), r.createdMs, r.expiresMs, r.multicastID)
	}
	// A leftover outcome row can only be an older fate of the same id;
	// the newest one wins.
	b.WriteString(" ON DUPLICATE KEY UPDATE outcome = VALUES(outcome), delivery_count = VALUES(delivery_count), at_ms = VALUES(at_ms)")
	if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("record %d outcomes: %w", len(rows), err)
	}
	return recordReceipts(ctx, tx, rows, outcome, now)
}

// expiredIDs lists up to limit messages past their expiry.
func (d *msgDB) expiredIDs(ctx context.Context, now time.Time, limit int) ([]uint64, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id FROM messages WHERE expires_ms > 0 AND expires_ms <= ? ORDER BY expires_ms LIMIT ?", now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("saver: list expired: %w", err)
	}
	defer rows.Close()
	var ids []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("saver: list expired: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// pruneOutcomes deletes up to limit outcomes recorded before before.
func (d *msgDB) pruneOutcomes(ctx context.Context, before time.Time, limit int) (int64, error) {
	res, err := d.db.ExecContext(ctx, "DELETE FROM message_outcomes WHERE at_ms < ? LIMIT ?", before.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("saver: prune outcomes: %w", err)
	}
	return res.RowsAffected()
}

// pruneKeys deletes idempotency keys recorded before before: a retry
// later than the outcome retention is a new message. A multicast's
// members (multicast_members) go in the same transaction as its key, so a
// retry that finds the key always finds them. READ COMMITTED keeps the
// locking read to the rows it returns: no gap lock on the created_ms index
// to stall Stores claiming new keys.
func (d *msgDB) pruneKeys(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := d.retry.inTx(ctx, d.db, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(ctx, "SELECT app, ikey, id FROM idempotency_keys WHERE created_ms < ? ORDER BY created_ms LIMIT ? FOR UPDATE",
			before.UnixMilli(), limit)
		if err != nil {
			return err
		}
		var keys []any
		var ids []uint64
		for rows.Next() {
			var app, key string
			var id uint64
			if err := rows.Scan(&app, &key, &id); err != nil {
				rows.Close()
				return err
			}
			keys, ids = append(keys, app, key), append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM multicast_members WHERE multicast_id IN ("+placeholders(len(ids))+")", idArgs(ids)...); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE (app, ikey) IN ("+rowPlaceholders(len(ids), 2)+")", keys...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("saver: prune idempotency keys: %w", err)
	}
	return n, nil
}

// status reads one message of app from either table, on the replica when
// there is a usable one; a replica that fails or has not seen the message
// yet is backed up by the primary.
func (d *msgDB) status(ctx context.Context, app string, id uint64) (*internalpb.StatusReply, error) {
	if d.replica.usable() {
		r, err := statusFrom(ctx, d.replica.db, app, id)
		switch {
		case err != nil:
			d.replica.failed("status", err)
		case r.GetFound():
			return r, nil
		default:
			d.replica.fallbacks.WithLabelValues("not_found").Inc()
		}
	}
	return statusFrom(ctx, d.db, app, id)
}

func statusFrom(ctx context.Context, db *sql.DB, app string, id uint64) (*internalpb.StatusReply, error) {
	m := &internalpb.Message{}
	var updated int64
	err := db.QueryRowContext(ctx, "SELECT id, app, `user`, device, payload, qos, created_ms, expires_ms, delivery_count, updated_ms FROM messages WHERE id = ? AND app = ?", id, app).
		Scan(&m.Id, &m.App, &m.User, &m.Device, &m.Payload, &m.Qos, &m.CreatedMs, &m.ExpiresMs, &m.DeliveryCount, &updated)
	switch {
	case err == nil:
		m.State = internalpb.MessageState_MESSAGE_STATE_STORED
		if m.DeliveryCount > 0 {
			m.State = internalpb.MessageState_MESSAGE_STATE_DELIVERED
		}
		return &internalpb.StatusReply{Found: true, Message: m, UpdatedMs: updated}, nil
	case err != sql.ErrNoRows:
		return nil, fmt.Errorf("saver: status %d: %w", id, err)
	}
	var outcome uint8
	err = db.QueryRowContext(ctx, "SELECT id, app, `user`, outcome, delivery_count, at_ms, created_ms, expires_ms FROM message_outcomes WHERE id = ? AND app = ?", id, app).
		Scan(&m.Id, &m.App, &m.User, &outcome, &m.DeliveryCount, &updated, &m.CreatedMs, &m.ExpiresMs)
	switch {
	case err == sql.ErrNoRows:
		return &internalpb.StatusReply{Found: false}, nil
	case err != nil:
		return nil, fmt.Errorf("saver: status %d: %w", id, err)
	}
	m.State = internalpb.MessageState(outcome)
	return &internalpb.StatusReply{Found: true, Message: m, UpdatedMs: updated}, nil
}
