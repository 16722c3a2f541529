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
	for _, m := range msgs {
		if !losers[m.GetId()] {
			keep = append(keep, m)
		}
	}
	return keep, stored, nil
}

type keyedRow struct {
	finishedRow
	key string
}

// collapsedRows locks and returns the stored messages with any of keys.
func collapsedRows(ctx context.Context, tx *sql.Tx, keys []collapseKey) ([]keyedRow, error) {
	var b strings.Builder
	b.WriteString("SELECT id, app, `user`, collapse_key, delivery_count, created_ms, expires_ms, multicast_id FROM messages WHERE ")
	args := make([]any, 0, 3*len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(app = ? AND `user` = ? AND collapse_key = ?)")
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
