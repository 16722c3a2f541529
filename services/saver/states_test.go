package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// States answers every state a message can be in, from both tables, in
// request order, and nothing of another app's or user's message.
func TestStatesOfEveryKind(t *testing.T) {
	f := newFixture(t, 1)
	now := time.Now()
	expired := msg("app1", "exp", "", now.Add(time.Hour).UnixMilli())
	f.store(t, expired)
	// Expired first: the sweep runs two hours ahead, and its pruning of
	// outcomes older than retention would take the others' outcomes too.
	if n := f.sweep.sweep(context.Background(), now.Add(2*time.Hour)); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	stored := msg("app1", "sto", "", 0)
	delivered := msg("app1", "del", "", 0)
	dead := msg("app1", "dead", "", 0)
	acked := msg("app1", "ack", "", 0)
	old := msg("app1", "col", "", 0)
	old.CollapseKey = "score"
	f.store(t, stored, delivered, dead, acked, old)
	newer := msg("app1", "col", "", 0)
	newer.CollapseKey = "score"
	f.store(t, newer)
	f.pending(t, "app1", "del", "")
	f.pending(t, "app1", "dead", "")
	f.pending(t, "app1", "dead", "") // past maxDeliveries (1): dead
	f.ack(t, acked)

	other := refOf(stored)
	other.App = "app2"
	otherUser := refOf(stored)
	otherUser.User = "someone-else"
	refs := []*internalpb.MessageRef{refOf(stored), refOf(delivered), refOf(acked), refOf(expired), refOf(dead), refOf(old), refOf(newer),
		{App: "app1", User: "sto", Id: newID()}, other, otherUser, refOf(acked)}
	r, err := f.cli.States(callCtx(t), &internalpb.StatesRequest{Messages: refs})
	if err != nil {
		t.Fatal(err)
	}
	want := []internalpb.MessageState{
		internalpb.MessageState_MESSAGE_STATE_STORED,
		internalpb.MessageState_MESSAGE_STATE_DELIVERED,
		internalpb.MessageState_MESSAGE_STATE_ACKED,
		internalpb.MessageState_MESSAGE_STATE_EXPIRED,
		internalpb.MessageState_MESSAGE_STATE_DEAD,
		internalpb.MessageState_MESSAGE_STATE_COLLAPSED,
		internalpb.MessageState_MESSAGE_STATE_STORED,
		internalpb.MessageState_MESSAGE_STATE_UNSPECIFIED, // unknown id
		internalpb.MessageState_MESSAGE_STATE_UNSPECIFIED, // another app
		internalpb.MessageState_MESSAGE_STATE_UNSPECIFIED, // another user
		internalpb.MessageState_MESSAGE_STATE_ACKED,       // asked twice
	}
	if !slices.Equal(r.GetStates(), want) {
		t.Fatalf("states %v, want %v", r.GetStates(), want)
	}

	// An empty call is answered empty; too many refs or a bad one fail the
	// call as InvalidArgument.
	if r, err := f.cli.States(callCtx(t), &internalpb.StatesRequest{}); err != nil || len(r.GetStates()) != 0 {
		t.Fatalf("empty call: %v, %v", r, err)
	}
	many := make([]*internalpb.MessageRef, maxStatesRefs+1)
	for i := range many {
		many[i] = &internalpb.MessageRef{App: "app1", User: "u", Id: uint64(i + 1)}
	}
	if _, err := f.cli.States(callCtx(t), &internalpb.StatesRequest{Messages: many}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%d refs: %v", len(many), err)
	}
	if _, err := f.cli.States(callCtx(t), &internalpb.StatesRequest{Messages: []*internalpb.MessageRef{{App: "app1", User: "u"}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("id 0: %v", err)
	}
}

// The bound holds whole: maxStatesRefs distinct ids are one call.
func TestStatesAtTheBound(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app1", "bound", "", 0)
	f.store(t, m)
	refs := make([]*internalpb.MessageRef, maxStatesRefs)
	for i := range refs {
		refs[i] = &internalpb.MessageRef{App: "app1", User: "bound", Id: newID()}
	}
	refs[maxStatesRefs-1] = refOf(m)
	r, err := f.cli.States(callCtx(t), &internalpb.StatesRequest{Messages: refs})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetStates()) != maxStatesRefs || r.GetStates()[maxStatesRefs-1] != internalpb.MessageState_MESSAGE_STATE_STORED ||
		r.GetStates()[0] != internalpb.MessageState_MESSAGE_STATE_UNSPECIFIED {
		t.Fatalf("states at the bound: %d answers, last %v", len(r.GetStates()), r.GetStates()[maxStatesRefs-1])
	}
}
