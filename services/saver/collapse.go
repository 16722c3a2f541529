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

// Collapse keys (FCM's collapse_key, Web Push's Topic): a message stored
// with a collapse key replaces every older message of the same app, user
// and key that still waits for an ack, so a user who was away gets the
// latest score, not fifty stale ones. The replaced message leaves the hot
// table with outcome MESSAGE_STATE_COLLAPSED, in the transaction that
// stores the new one, so MySQL never holds both. A copy already delivered
// but not acked is replaced too: it would be sent again on the next
// connect, and there it would be stale. "Older" is the smaller id (ids
// are time-ordered): an incoming message older than one already stored
// with its key is itself recorded as collapsed and never stored.
const (
	// maxCollapseKeyLen matches messages.collapse_key (migration 0007).
	maxCollapseKeyLen = 64
	// collapseLookupChunk bounds the (app, user, key) triples per SELECT.
	collapseLookupChunk = 500
)

type collapseKey struct{ app, user, key string }

func keyOf(m *internalpb.Message) collapseKey {
	return collapseKey{m.GetApp(), m.GetUser(), m.GetCollapseKey()}
}

func rowOf(m *internalpb.Message) finishedRow {
	return finishedRow{msgRef: msgRef{m.GetApp(), m.GetUser(), m.GetId()}, createdMs: m.GetCreatedMs(),
		expiresMs: m.GetExpiresMs(), multicastID: m.GetMulticastId()}
}

// collapse applies the collapse keys of msgs inside tx before they are
// inserted. It returns the messages still to insert and the stored ones it
// finished, whose inbox entries must go.
func collapse(ctx context.Context, tx *sql.Tx, msgs []*internalpb.Message, now time.Time) ([]*internalpb.Message, []msgRef, error) {
	newest := map[collapseKey]*internalpb.Message{}
	for _, m := range msgs {
		if m.GetCollapseKey() == "" {
			continue
		}
		if cur, ok := newest[keyOf(m)]; !ok || m.GetId() > cur.GetId() {
			newest[keyOf(m)] = m
		}
	}
	if len(newest) == 0 {
		return msgs, nil, nil
	}
	var gone []finishedRow
	var stored []msgRef
	losers := map[uint64]bool{}
	for _, m := range msgs {
		if m.GetCollapseKey() != "" && newest[keyOf(m)] != m {
			losers[m.GetId()] = true
			gone = append(gone, rowOf(m))
		}
	}
	keys := make([]collapseKey, 0, len(newest))
	for k := range newest {
		keys = append(keys, k)
	}
	// One lock order for every writer keeps concurrent Stores from
	// deadlocking more than they must (inTx retries the rest).
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.app != b.app {
			return a.app < b.app
		}
		if a.user != b.user {
			return a.user < b.user
		}
		return a.key < b.key
	})
	for start := 0; start < len(keys); start += collapseLookupChunk {
		rows, err := collapsedRows(ctx, tx, keys[start:min(start+collapseLookupChunk, len(keys))])
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rows {
			w := newest[collapseKey{r.app, r.user, r.key}]
			switch {
			case w == nil || r.id == w.GetId():
				// The same message stored before (a retried Store).
			case r.id < w.GetId():
				gone = append(gone, r.finishedRow)
				stored = append(stored, r.msgRef)
			case !losers[w.GetId()]:
				losers[w.GetId()] = true
				gone = append(gone, rowOf(w))
			}
		}
	}
	if err := moveToOutcomes(ctx, tx, gone, internalpb.MessageState_MESSAGE_STATE_COLLAPSED, now); err != nil {
		return nil, nil, fmt.Errorf("collapse: %w", err)
	}
	keep := make([]*internalpb.Message, 0, len(msgs))
	var keyed []*internalpb.Message
	for _, m := range msgs {
		if !losers[m.GetId()] {
			keep = append(keep, m)
			if m.GetCollapseKey() != "" {
				keyed = append(keyed, m)
			}
		}
	}
	if err := recordCollapseKeys(ctx, tx, keyed); err != nil {
		return nil, nil, err
	}
	return keep, stored, nil
}

// recordCollapseKeys points each key of msgs (the newest message of its
// key, about to be inserted in the same transaction) at its message. The
// previous message of the key, if any, was just finished as collapsed.
func recordCollapseKeys(ctx context.Context, tx *sql.Tx, msgs []*internalpb.Message) error {
	for start := 0; start < len(msgs); start += collapseLookupChunk {
		chunk := msgs[start:min(start+collapseLookupChunk, len(msgs))]
		args := make([]any, 0, 4*len(chunk))
		for _, m := range chunk {
			args = append(args, m.GetApp(), m.GetUser(), m.GetCollapseKey(), m.GetId())
		}
		q := "INSERT INTO message_collapse_keys (app, `user`, collapse_key, id) VALUES " + rowPlaceholders(len(chunk), 4) +
			" ON DUPLICATE KEY UPDATE id = VALUES(id)"
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("collapse: record %d keys: %w", len(chunk), err)
		}
	}
	return nil
}

type keyedRow struct {
	finishedRow
	key string
}

// collapsedRows locks and returns the stored messages with any of keys:
// the one message_collapse_keys names, if it is still in messages.
func collapsedRows(ctx context.Context, tx *sql.Tx, keys []collapseKey) ([]keyedRow, error) {
	var b strings.Builder
	// message_collapse_keys first: the lookup is one primary-key probe
	// per key, and its locks (a gap lock where the key is new) serialize
	// Stores of one key as the index on messages used to.
	b.WriteString("SELECT m.id, m.app, m.`user`, k.collapse_key, m.delivery_count, m.created_ms, m.expires_ms, m.multicast_id " +
		"FROM message_collapse_keys k STRAIGHT_JOIN messages m ON m.id = k.id WHERE ")
	args := make([]any, 0, 3*len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(k.app = ? AND k.`user` = ? AND k.collapse_key = ?)")
		args = append(args, k.app, k.user, k.key)
	}
	b.WriteString(" FOR UPDATE")
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("collapse: lookup %d keys: %w", len(keys), err)
	}
	defer rows.Close()
	var out []keyedRow
	for rows.Next() {
		var r keyedRow
		if err := rows.Scan(&r.id, &r.app, &r.user, &r.key, &r.deliveryCount, &r.createdMs, &r.expiresMs, &r.multicastID); err != nil {
			return nil, fmt.Errorf("collapse: lookup: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("collapse: lookup: %w", err)
	}
	return out, nil
}
