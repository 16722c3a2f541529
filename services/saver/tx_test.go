package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func newTxFixture(t *testing.T) (*fixture, *txServer) {
	f := newFixture(t, 10)
	return f, newTxServer(f.srv, newTxMetrics(prometheus.NewRegistry()))
}

// txRecord builds a record for users, first check due after firstCheck.
func txRecord(app string, firstCheck time.Duration, users ...string) *internalpb.TxRecord {
	now := time.Now()
	r := &internalpb.TxRecord{Id: newID(), App: app, TargetKind: internalpb.TxTargetKind_TX_TARGET_KIND_USER,
		Payload: []byte("tx"), Qos: 1, TtlMs: time.Hour.Milliseconds(), CreatedMs: now.UnixMilli(), NextCheckMs: now.Add(firstCheck).UnixMilli()}
	if len(users) > 1 {
		r.TargetKind = internalpb.TxTargetKind_TX_TARGET_KIND_USERS
	}
	for _, u := range users {
		r.Recipients = append(r.Recipients, &internalpb.TxRecipient{User: u, MessageId: newID()})
	}
	return r
}

func prepareTx(t *testing.T, s *txServer, r *internalpb.TxRecord) *internalpb.TxRecord {
	t.Helper()
	rep, err := s.PrepareTx(callCtx(t), &internalpb.PrepareTxRequest{Tx: r})
	if err != nil {
		t.Fatal(err)
	}
	return rep.GetTx()
}

func decideTx(t *testing.T, s *txServer, app string, id uint64, to internalpb.TxState, token uint64) *internalpb.DecideTxReply {
	t.Helper()
	by := internalpb.TxDecider_TX_DECIDER_API
	if token != 0 {
		by = internalpb.TxDecider_TX_DECIDER_CHECK_BACK
	}
	rep, err := s.DecideTx(callCtx(t), &internalpb.DecideTxRequest{App: app, Id: id, To: to, By: by, ClaimToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (f *fixture) messageRows(t *testing.T, r *internalpb.TxRecord) int {
	t.Helper()
	n := 0
	for _, p := range r.GetRecipients() {
		n += f.rowCount(t, "messages", p.GetMessageId())
	}
	return n
}

func TestTxPreparedIsInvisible(t *testing.T) {
	f, s := newTxFixture(t)
	r := prepareTx(t, s, txRecord("a", time.Hour, "u1", "u2"))
	if r.GetState() != internalpb.TxState_TX_STATE_PREPARED || len(r.GetRecipients()) != 2 {
		t.Fatalf("prepared record = %v", r)
	}
	if n := f.messageRows(t, r); n != 0 {
		t.Fatalf("%d messages rows for a prepared record", n)
	}
	if got := f.pending(t, "a", "u1", "d"); len(got) != 0 {
		t.Fatalf("Pending returned %d messages of a prepared record", len(got))
	}
	claimed, err := f.cli.ClaimUndelivered(callCtx(t), &internalpb.ClaimUndeliveredRequest{MinAgeMs: 0})
	if err != nil || len(claimed.GetMessages()) != 0 {
		t.Fatalf("ClaimUndelivered = %v, %v; want nothing", claimed.GetMessages(), err)
	}
	// Commit turns it into the user's messages, visible everywhere.
	rep := decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_COMMITTED, 0)
	if !rep.GetApplied() || len(rep.GetMessages()) != 2 {
		t.Fatalf("commit = applied %v, %d messages", rep.GetApplied(), len(rep.GetMessages()))
	}
	got := f.pending(t, "a", "u1", "d")
	if len(got) != 1 || got[0].GetId() != r.GetRecipients()[0].GetMessageId() || string(got[0].GetPayload()) != "tx" {
		t.Fatalf("Pending after commit = %v", got)
	}
}

func TestTxConcurrentCommitsOneFanOut(t *testing.T) {
	f, s := newTxFixture(t)
	r := prepareTx(t, s, txRecord("a", time.Hour, "u1", "u2", "u3"))
	const racers = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied, msgs := 0, 0
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := s.DecideTx(context.Background(), &internalpb.DecideTxRequest{App: "a", Id: r.GetId(),
				To: internalpb.TxState_TX_STATE_COMMITTED, By: internalpb.TxDecider_TX_DECIDER_API})
			if err != nil {
				t.Error(err)
				return
			}
			if rep.GetTx().GetState() != internalpb.TxState_TX_STATE_COMMITTED {
				t.Errorf("racer saw state %s", rep.GetTx().GetState())
			}
			mu.Lock()
			if rep.GetApplied() {
				applied++
			}
			msgs += len(rep.GetMessages())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if applied != 1 || msgs != 3 {
		t.Fatalf("%d commits applied, %d messages handed out; want 1 and 3", applied, msgs)
	}
	if n := f.messageRows(t, r); n != 3 {
		t.Fatalf("%d messages rows, want 3", n)
	}
}

func TestTxCommitRacesRollback(t *testing.T) {
	f, s := newTxFixture(t)
	for round := 0; round < 20; round++ {
		r := prepareTx(t, s, txRecord("a", time.Hour, "u"))
		states := make(chan *internalpb.DecideTxReply, 2)
		var wg sync.WaitGroup
		for _, to := range []internalpb.TxState{internalpb.TxState_TX_STATE_COMMITTED, internalpb.TxState_TX_STATE_ROLLED_BACK} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, err := s.DecideTx(context.Background(), &internalpb.DecideTxRequest{App: "a", Id: r.GetId(), To: to, By: internalpb.TxDecider_TX_DECIDER_API})
				if err != nil {
					t.Error(err)
					return
				}
				states <- rep
			}()
		}
		wg.Wait()
		close(states)
		var won []internalpb.TxState
		var final internalpb.TxState
		for rep := range states {
			if rep.GetApplied() {
				won = append(won, rep.GetTx().GetState())
			}
			final = rep.GetTx().GetState()
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d winners", round, len(won))
		}
		want := 0
		if won[0] == internalpb.TxState_TX_STATE_COMMITTED {
			want = 1
		}
		if n := f.messageRows(t, r); n != want || final != won[0] {
			t.Fatalf("round %d: winner %s, %d message rows, loser saw %s", round, won[0], n, final)
		}
	}
}

func TestTxDecidedAnswersAsDecided(t *testing.T) {
	_, s := newTxFixture(t)
	r := prepareTx(t, s, txRecord("a", time.Hour, "u"))
	if rep := decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_ROLLED_BACK, 0); !rep.GetApplied() {
		t.Fatal("rollback not applied")
	}
	rep := decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_COMMITTED, 0)
	if rep.GetApplied() || rep.GetTx().GetState() != internalpb.TxState_TX_STATE_ROLLED_BACK || len(rep.GetMessages()) != 0 ||
		rep.GetTx().GetDecidedBy() != internalpb.TxDecider_TX_DECIDER_API {
		t.Fatalf("commit after rollback = %v", rep)
	}
	// Another app cannot see or decide it.
	if rep := decideTx(t, s, "b", r.GetId(), internalpb.TxState_TX_STATE_COMMITTED, 0); rep.GetFound() {
		t.Fatalf("app b decided app a's record: %v", rep)
	}
}

func TestTxIdempotentPrepare(t *testing.T) {
	_, s := newTxFixture(t)
	first := txRecord("a", time.Hour, "u")
	first.IdempotencyKey = "order-1"
	prepareTx(t, s, first)
	again := txRecord("a", time.Hour, "u")
	again.IdempotencyKey = "order-1"
	rep, err := s.PrepareTx(callCtx(t), &internalpb.PrepareTxRequest{Tx: again})
	if err != nil || !rep.GetReplayed() || rep.GetTx().GetId() != first.GetId() {
		t.Fatalf("second prepare = %v, %v; want replay of %d", rep, err, first.GetId())
	}
	other := txRecord("b", time.Hour, "u")
	other.IdempotencyKey = "order-1"
	if rep := prepareTx(t, s, other); rep.GetId() != other.GetId() {
		t.Fatal("the key of app a blocked app b")
	}
}

// A TAG record is a broadcast record with a valid tag: one with users,
// without a tag or with a bad one is refused, and a user record may not
// carry a tag.
func TestTxTagRecordRules(t *testing.T) {
	_, s := newTxFixture(t)
	withUser := txRecord("a", time.Hour, "u")
	withUser.TargetKind, withUser.Tag = internalpb.TxTargetKind_TX_TARGET_KIND_TAG, "vip"
	noTag := txBroadcastRecord("a", false)
	noTag.TargetKind = internalpb.TxTargetKind_TX_TARGET_KIND_TAG
	badTag := txBroadcastRecord("a", false)
	badTag.TargetKind, badTag.Tag = internalpb.TxTargetKind_TX_TARGET_KIND_TAG, "bad\x00tag"
	userTagged := txRecord("a", time.Hour, "u")
	userTagged.Tag = "vip"
	for name, r := range map[string]*internalpb.TxRecord{"users": withUser, "no tag": noTag, "bad tag": badTag, "user kind with tag": userTagged} {
		if _, err := s.PrepareTx(callCtx(t), &internalpb.PrepareTxRequest{Tx: r}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v, want InvalidArgument", name, err)
		}
	}
	ok := txBroadcastRecord("a", false)
	ok.TargetKind, ok.Tag = internalpb.TxTargetKind_TX_TARGET_KIND_TAG, "vip"
	rep := prepareTx(t, s, ok)
	got, err := s.GetTx(callCtx(t), &internalpb.GetTxRequest{App: "a", Id: rep.GetId()})
	if err != nil || got.GetTx().GetTag() != "vip" || got.GetTx().GetTargetKind() != internalpb.TxTargetKind_TX_TARGET_KIND_TAG {
		t.Fatalf("tag record read back as %v, %v", got.GetTx(), err)
	}
}

// Claimers racing never receive one record twice, and a leased record is
// not due again before its lease ends.
func TestTxClaimSkipLocked(t *testing.T) {
	_, s := newTxFixture(t)
	const records = 200
	for i := 0; i < records; i++ {
		prepareTx(t, s, txRecord("a", 0, "u"))
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				rep, err := s.ClaimTxChecks(context.Background(), &internalpb.ClaimTxChecksRequest{Limit: 7, LeaseMs: time.Minute.Milliseconds()})
				if err != nil {
					t.Error(err)
					return
				}
				if len(rep.GetClaims()) == 0 {
					return
				}
				mu.Lock()
				for _, c := range rep.GetClaims() {
					seen[c.GetTx().GetId()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != records {
		t.Fatalf("%d records claimed, want %d", len(seen), records)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("record %d claimed %d times", id, n)
		}
	}
}

func TestTxLeaseExpiresAndStaleTokenLoses(t *testing.T) {
	_, s := newTxFixture(t)
	r := prepareTx(t, s, txRecord("a", 0, "u"))
	claim := func(lease time.Duration) []*internalpb.TxClaim {
		rep, err := s.ClaimTxChecks(callCtx(t), &internalpb.ClaimTxChecksRequest{Limit: 10, LeaseMs: lease.Milliseconds()})
		if err != nil {
			t.Fatal(err)
		}
		return rep.GetClaims()
	}
	first := claim(300 * time.Millisecond)
	if len(first) != 1 {
		t.Fatalf("first claim got %d", len(first))
	}
	if again := claim(time.Minute); len(again) != 0 {
		t.Fatal("record claimed again inside its lease")
	}
	deadline := time.Now().Add(5 * time.Second)
	var second []*internalpb.TxClaim
	for len(second) == 0 && time.Now().Before(deadline) {
		second = claim(time.Minute)
	}
	if len(second) != 1 || second[0].GetClaimToken() == first[0].GetClaimToken() {
		t.Fatalf("after the lease: %v", second)
	}
	// The first claimer died with its lease; its late report is ignored.
	stale, err := s.ReportTxCheck(callCtx(t), &internalpb.ReportTxCheckRequest{Id: r.GetId(), ClaimToken: first[0].GetClaimToken(), NextInMs: 1, MaxChecks: 1})
	if err != nil || stale.GetApplied() || stale.GetTx().GetState() != internalpb.TxState_TX_STATE_PREPARED {
		t.Fatalf("stale report = %v, %v", stale, err)
	}
	// The holder's answer counts.
	rep := decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_COMMITTED, second[0].GetClaimToken())
	if !rep.GetApplied() || rep.GetTx().GetChecks() != 1 || rep.GetTx().GetDecidedBy() != internalpb.TxDecider_TX_DECIDER_CHECK_BACK {
		t.Fatalf("check-back commit = %v", rep)
	}
}

func TestTxUnknownUntilMaxExpires(t *testing.T) {
	f, s := newTxFixture(t)
	r := prepareTx(t, s, txRecord("a", 0, "u"))
	const maxChecks = 3
	for i := 1; i <= maxChecks; i++ {
		var claims []*internalpb.TxClaim
		deadline := time.Now().Add(5 * time.Second)
		for len(claims) == 0 && time.Now().Before(deadline) {
			rep, err := s.ClaimTxChecks(callCtx(t), &internalpb.ClaimTxChecksRequest{LeaseMs: time.Minute.Milliseconds()})
			if err != nil {
				t.Fatal(err)
			}
			claims = rep.GetClaims()
		}
		if len(claims) != 1 {
			t.Fatalf("check %d: not claimed", i)
		}
		rep, err := s.ReportTxCheck(callCtx(t), &internalpb.ReportTxCheckRequest{Id: r.GetId(), ClaimToken: claims[0].GetClaimToken(), NextInMs: 10, MaxChecks: maxChecks})
		if err != nil || !rep.GetApplied() || rep.GetTx().GetChecks() != uint32(i) {
			t.Fatalf("check %d report = %v, %v", i, rep, err)
		}
		want := internalpb.TxState_TX_STATE_PREPARED
		if i == maxChecks {
			want = internalpb.TxState_TX_STATE_EXPIRED
		}
		if rep.GetTx().GetState() != want {
			t.Fatalf("after check %d: state %s, want %s", i, rep.GetTx().GetState(), want)
		}
	}
	got := decideTx(t, s, "a", r.GetId(), internalpb.TxState_TX_STATE_COMMITTED, 0)
	if got.GetApplied() || got.GetTx().GetDecidedBy() != internalpb.TxDecider_TX_DECIDER_EXPIRY {
		t.Fatalf("commit after expiry = %v", got)
	}
	if n := f.messageRows(t, r); n != 0 {
		t.Fatalf("%d message rows after expiry", n)
	}
	time.Sleep(20 * time.Millisecond)
	rep, err := s.ClaimTxChecks(callCtx(t), &internalpb.ClaimTxChecksRequest{LeaseMs: time.Minute.Milliseconds()})
	if err != nil || len(rep.GetClaims()) != 0 {
		t.Fatalf("expired record claimed: %v, %v", rep, err)
	}
}

func TestTxPrune(t *testing.T) {
	_, s := newTxFixture(t)
	done := prepareTx(t, s, txRecord("a", time.Hour, "u"))
	open := prepareTx(t, s, txRecord("a", time.Hour, "u"))
	decideTx(t, s, "a", done.GetId(), internalpb.TxState_TX_STATE_ROLLED_BACK, 0)
	w := &txSweeper{db: s.db, metrics: s.metrics, log: testLog(), interval: time.Hour, retention: time.Millisecond}
	time.Sleep(5 * time.Millisecond)
	w.sweep(context.Background(), time.Now())
	for id, want := range map[uint64]bool{done.GetId(): false, open.GetId(): true} {
		rep, err := s.GetTx(callCtx(t), &internalpb.GetTxRequest{App: "a", Id: id})
		if err != nil || rep.GetFound() != want {
			t.Fatalf("tx %d found=%v (%v), want %v", id, rep.GetFound(), err, want)
		}
	}
}
