package main

import (
	"context"
	"fmt"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// States answers what became of a batch of messages, for center's
// retrier: before it pushes again a message whose live delivery failed, it
// asks whether the message still waits for an ack, so a message collapsed,
// acked, expired or dead meanwhile is never pushed live.
const (
	// maxStatesRefs bounds one States call: one IN list per table, far
	// below max_allowed_packet, and above center's retry round
	// (deliveryBatchMax, 500).
	maxStatesRefs = 1000
)

func (s *server) States(ctx context.Context, req *internalpb.StatesRequest) (*internalpb.StatesReply, error) {
	refs := req.GetMessages()
	if len(refs) > maxStatesRefs {
		return nil, invalid("%d messages exceed %d", len(refs), maxStatesRefs)
	}
	for i, r := range refs {
		if err := checkUser(r.GetApp(), r.GetUser()); err != nil {
			return nil, invalid("message %d: %v", i, err)
		}
		if r.GetId() == 0 {
			return nil, invalid("message %d: id 0", i)
		}
	}
	states, err := s.db.states(ctx, refs)
	if err != nil {
		return nil, s.fail(ctx, "states", err)
	}
	return &internalpb.StatesReply{States: states}, nil
}

// states reads refs from messages and message_outcomes in one statement,
// by primary key. It reads the primary, never the replica: a replica a
// moment behind still shows a message collapsed or acked a moment ago as
// waiting, which is the very push this call exists to prevent. A ref whose
// id belongs to another app or user is answered UNSPECIFIED, as an
// unknown one is: one app never learns of another's messages.
func (d *msgDB) states(ctx context.Context, refs []*internalpb.MessageRef) ([]internalpb.MessageState, error) {
	out := make([]internalpb.MessageState, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	ids := make([]uint64, 0, len(refs))
	seen := make(map[uint64]bool, len(refs))
	for _, r := range refs {
		if !seen[r.GetId()] {
			seen[r.GetId()] = true
			ids = append(ids, r.GetId())
		}
	}
	in := placeholders(len(ids))
	// finished orders the two tables' rows: an id is in at most one of
	// them (moveToOutcomes deletes the row in the transaction that records
	// the outcome), but should both ever hold it, the outcome wins.
	rows, err := d.db.QueryContext(ctx, "SELECT id, app, `user`, state, 0 AS finished FROM messages WHERE id IN ("+in+
		") UNION ALL SELECT id, app, `user`, outcome, 1 FROM message_outcomes WHERE id IN ("+in+")",
		append(idArgs(ids), idArgs(ids)...)...)
	if err != nil {
		return nil, fmt.Errorf("saver: states of %d messages: %w", len(ids), err)
	}
	defer rows.Close()
	type found struct {
		app, user string
		state     internalpb.MessageState
		finished  bool
	}
	byID := make(map[uint64]found, len(ids))
	for rows.Next() {
		var id uint64
		var f found
		var state uint8
		if err := rows.Scan(&id, &f.app, &f.user, &state, &f.finished); err != nil {
			return nil, fmt.Errorf("saver: states: %w", err)
		}
		f.state = internalpb.MessageState(state)
		if cur, ok := byID[id]; !ok || !cur.finished {
			byID[id] = f
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saver: states: %w", err)
	}
	for i, r := range refs {
		if f, ok := byID[r.GetId()]; ok && f.app == r.GetApp() && f.user == r.GetUser() {
			out[i] = f.state
		}
	}
	return out, nil
}
