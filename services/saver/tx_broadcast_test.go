package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// txBroadcastRecord builds a BROADCAST half-record of app.
func txBroadcastRecord(app string, onlineOnly bool) *internalpb.TxRecord {
	now := time.Now()
	return &internalpb.TxRecord{Id: newID(), App: app, TargetKind: internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST,
		Recipients: []*internalpb.TxRecipient{{MessageId: newID()}}, Payload: []byte("txb"), Qos: 1, OnlineOnly: onlineOnly,
		TtlMs: time.Hour.Milliseconds(), CreatedMs: now.UnixMilli(), NextCheckMs: now.Add(time.Hour).UnixMilli()}
}

func (f *fixture) broadcastRows(t *testing.T, app string) int {
	return f.countRows(t, "SELECT COUNT(*) FROM broadcasts WHERE app = ?", app)
}

// Twenty commits (and check-back answers) racing on one broadcast record
// store exactly one broadcast with one seq, and its progress rows; every
// racer is told the same broadcast.
func TestTxBroadcastConcurrentCommitsOneBroadcast(t *testing.T) {
	f, s := newTxFixture(t)
	if seq := f.storeB(t, bcast("a", 0)); seq != 1 {
		t.Fatalf("first broadcast seq %d", seq)
	}
	r := prepareTx(t, s, txBroadcastRecord("a", true))
	if !r.GetOnlineOnly() || r.GetTargetKind() != internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST {
		t.Fatalf("prepared = %v", r)
	}
	if n := f.broadcastRows(t, "a"); n != 1 {
		t.Fatalf("%d broadcasts rows after prepare, want only the plain one", n)
	}
	if got := f.catchUp(t, "a", 0, 100, 0); !equalSeqs(got, 1) {
		t.Fatalf("catch-up after prepare = %v, want [1]", got)
	}
	rooms := []string{"room-1", "room-2"}
	const racers = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := 0
	seqs := map[uint64]int{}
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := s.DecideTx(context.Background(), &internalpb.DecideTxRequest{App: "a", Id: r.GetId(),
				To: internalpb.TxState_TX_STATE_COMMITTED, By: internalpb.TxDecider_TX_DECIDER_API, Rooms: rooms})
			if err != nil {
				t.Error(err)
				return
			}
			if rep.GetTx().GetState() != internalpb.TxState_TX_STATE_COMMITTED || len(rep.GetMessages()) != 0 {
				t.Errorf("racer saw state %s, %d messages", rep.GetTx().GetState(), len(rep.GetMessages()))
			}
			b := rep.GetBroadcast()
			if b.GetId() != r.GetRecipients()[0].GetMessageId() || string(b.GetPayload()) != "txb" || !b.GetOnlineOnly() || b.GetExpiresMs() <= time.Now().UnixMilli() {
				t.Errorf("racer got broadcast %v", b)
			}
			mu.Lock()
			defer mu.Unlock()
			if rep.GetApplied() {
				applied++
			}
			seqs[b.GetSeq()]++
		}()
	}
	wg.Wait()
	if applied != 1 || len(seqs) != 1 || seqs[2] != racers {
		t.Fatalf("%d commits applied, seqs told %v; want 1 applied and seq 2 told %d times", applied, seqs, racers)
	}
	if n := f.broadcastRows(t, "a"); n != 2 {
		t.Fatalf("%d broadcasts rows, want 2", n)
	}
	bid := r.GetRecipients()[0].GetMessageId()
	if n := f.countRows(t, "SELECT COUNT(*) FROM broadcasts WHERE id = ? AND seq = 2 AND online_only = 1", bid); n != 1 {
		t.Fatalf("committed broadcast row with seq 2: %d", n)
	}
	if n := f.countRows(t, "SELECT COUNT(*) FROM broadcast_rooms WHERE broadcast_id = ? AND state = ?", bid, roomPending); n != len(rooms) {
		t.Fatalf("%d pending progress rows, want %d", n, len(rooms))
	}
	// The next plain broadcast follows without a gap.
	if seq := f.storeB(t, bcast("a", 0)); seq != 3 {
		t.Fatalf("broadcast after the commit got seq %d, want 3", seq)
	}
}

// A rolled-back broadcast record stores nothing, allocates no seq, and a
// later commit of it is refused.
func TestTxBroadcastRollbackStoresNothing(t *testing.T) {
	f, s := newTxFixture(t)
	r := prepareTx(t, s, txBroadcastRecord("a", false))
	rep := decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_ROLLED_BACK, 0)
	if !rep.GetApplied() || rep.GetBroadcast() != nil {
		t.Fatalf("rollback = applied %v, broadcast %v", rep.GetApplied(), rep.GetBroadcast())
	}
	rep = decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_COMMITTED, 0)
	if rep.GetApplied() || rep.GetTx().GetState() != internalpb.TxState_TX_STATE_ROLLED_BACK || rep.GetBroadcast() != nil {
		t.Fatalf("commit after rollback = %v", rep)
	}
	if n := f.broadcastRows(t, "a"); n != 0 {
		t.Fatalf("%d broadcasts rows after a rollback", n)
	}
	if got := f.catchUp(t, "a", 0, 100, 0); len(got) != 0 {
		t.Fatalf("catch-up after rollback = %v", got)
	}
	if seq := f.storeB(t, bcast("a", 0)); seq != 1 {
		t.Fatalf("rollback allocated a seq: next broadcast got %d", seq)
	}
}

func TestTxBroadcastValidation(t *testing.T) {
	_, s := newTxFixture(t)
	for name, mut := range map[string]func(r *internalpb.TxRecord){
		"no broadcast id": func(r *internalpb.TxRecord) { r.Recipients = nil },
		"broadcast id 0":  func(r *internalpb.TxRecord) { r.Recipients[0].MessageId = 0 },
		"a user":          func(r *internalpb.TxRecord) { r.Recipients[0].User = "u" },
		"two recipients": func(r *internalpb.TxRecord) {
			r.Recipients = append(r.Recipients, &internalpb.TxRecipient{MessageId: newID()})
		},
		"a device":          func(r *internalpb.TxRecord) { r.Device = "d" },
		"qos 0 not online":  func(r *internalpb.TxRecord) { r.Qos = 0 },
		"qos 2":             func(r *internalpb.TxRecord) { r.Qos = 2 },
		"no ttl":            func(r *internalpb.TxRecord) { r.TtlMs = 0 },
		"online_only users": nil,
	} {
		r := txBroadcastRecord("a", false)
		if mut == nil {
			r = txRecord("a", time.Hour, "u")
			r.OnlineOnly = true
		} else {
			mut(r)
		}
		if _, err := s.PrepareTx(callCtx(t), &internalpb.PrepareTxRequest{Tx: r}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	_, err := s.DecideTx(callCtx(t), &internalpb.DecideTxRequest{App: "a", Id: 1, To: internalpb.TxState_TX_STATE_COMMITTED,
		By: internalpb.TxDecider_TX_DECIDER_API, Rooms: []string{""}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty room id: %v, want InvalidArgument", err)
	}
}
