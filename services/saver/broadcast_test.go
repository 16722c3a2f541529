package main

import (
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func bcast(app string, expiresMs int64) *internalpb.Broadcast {
	return &internalpb.Broadcast{Id: newID(), App: app, Payload: []byte("b"), Qos: 1, ExpiresMs: expiresMs}
}

func (f *fixture) storeB(t *testing.T, b *internalpb.Broadcast, rooms ...string) uint64 {
	t.Helper()
	rep, err := f.cli.StoreBroadcast(callCtx(t), &internalpb.StoreBroadcastRequest{Broadcast: b, Rooms: rooms})
	if err != nil {
		t.Fatal(err)
	}
	return rep.GetSeq()
}

func (f *fixture) catchUp(t *testing.T, app string, after uint64, limit uint32, since int64) []uint64 {
	t.Helper()
	rep, err := f.cli.CatchUp(callCtx(t), &internalpb.CatchUpRequest{App: app, AfterSeq: after, Limit: limit, OnlineSinceMs: since})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, b := range rep.GetBroadcasts() {
		if b.GetApp() != app {
			t.Fatalf("catch-up of %s returned a broadcast of %s", app, b.GetApp())
		}
		seqs = append(seqs, b.GetSeq())
	}
	return seqs
}

func TestBroadcastSeqPerAppAndRetry(t *testing.T) {
	f := newFixture(t, 10)
	a1 := bcast("a", 0)
	if s := f.storeB(t, a1, "room-1"); s != 1 {
		t.Fatalf("first seq of a = %d", s)
	}
	if s := f.storeB(t, bcast("b", 0)); s != 1 {
		t.Fatalf("first seq of b = %d, want its own sequence", s)
	}
	if s := f.storeB(t, bcast("a", 0)); s != 2 {
		t.Fatalf("second seq of a = %d", s)
	}
	// A retry of a stored id answers its seq and stores nothing.
	if s := f.storeB(t, a1, "room-1"); s != 1 {
		t.Fatalf("retried store answered seq %d, want 1", s)
	}
	if n := f.countRows(t, "SELECT COUNT(*) FROM broadcasts WHERE app = 'a'"); n != 2 {
		t.Fatalf("%d broadcast rows of a, want 2", n)
	}

	// Concurrent stores of one app get distinct consecutive seqs.
	const n = 20
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := f.cli.StoreBroadcast(callCtx(t), &internalpb.StoreBroadcastRequest{Broadcast: bcast("c", 0), Rooms: []string{"r1", "r2"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[rep.GetSeq()] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	for s := uint64(1); s <= n; s++ {
		if !seen[s] {
			t.Fatalf("seq %d of c missing from %v", s, seen)
		}
	}
}

func (f *fixture) countRows(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.sqldb.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBroadcastCatchUp(t *testing.T) {
	f := newFixture(t, 10)
	now := time.Now()
	live := now.Add(time.Hour).UnixMilli()
	f.storeB(t, bcast("a", live))                              // 1
	f.storeB(t, bcast("a", now.Add(-time.Second).UnixMilli())) // 2: expired
	f.storeB(t, bcast("a", 0))                                 // 3: never expires
	online := bcast("a", live)
	online.OnlineOnly = true
	f.storeB(t, online)           // 4: online only
	f.storeB(t, bcast("a", live)) // 5
	f.storeB(t, bcast("other", live))

	if got := f.catchUp(t, "a", 0, 0, now.Add(time.Hour).UnixMilli()); !equalSeqs(got, 1, 3, 5) {
		t.Fatalf("catch-up from 0 = %v, want [1 3 5] (no expired, no online-only)", got)
	}
	if got := f.catchUp(t, "a", 3, 0, now.Add(time.Hour).UnixMilli()); !equalSeqs(got, 5) {
		t.Fatalf("catch-up after 3 = %v, want [5]", got)
	}
	// A client online since before it was sent gets the online-only one.
	if got := f.catchUp(t, "a", 3, 0, now.Add(-time.Minute).UnixMilli()); !equalSeqs(got, 4, 5) {
		t.Fatalf("catch-up after 3 online since earlier = %v, want [4 5]", got)
	}
	// The bound keeps the newest, oldest first.
	if got := f.catchUp(t, "a", 0, 2, now.Add(time.Hour).UnixMilli()); !equalSeqs(got, 3, 5) {
		t.Fatalf("catch-up limited to 2 = %v, want [3 5]", got)
	}
}

func equalSeqs(got []uint64, want ...uint64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestBroadcastProgressClaimStatus(t *testing.T) {
	f := newFixture(t, 10)
	b := bcast("a", time.Now().Add(time.Hour).UnixMilli())
	f.storeB(t, b, "r1", "r2")
	_, err := f.cli.BroadcastProgress(callCtx(t), &internalpb.BroadcastProgressRequest{Items: []*internalpb.BroadcastRoomProgress{
		{BroadcastId: b.Id, Room: "r1", Reached: 5, Done: true},
		{BroadcastId: b.Id, Room: "r1", Acked: 3},
		{BroadcastId: b.Id, Room: "r3", Reached: 1, Acked: 1}, // a room started later, catching up
		{BroadcastId: newID(), Room: "r1", Reached: 9},        // no such broadcast: ignored
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is claimed before the minimum age.
	claims, err := f.cli.ClaimBroadcastRooms(callCtx(t), &internalpb.ClaimBroadcastRoomsRequest{MinAgeMs: time.Hour.Milliseconds()})
	if err != nil || len(claims.GetClaims()) != 0 {
		t.Fatalf("claim before min age: %v %v", claims, err)
	}
	claims, err = f.cli.ClaimBroadcastRooms(callCtx(t), &internalpb.ClaimBroadcastRoomsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(claims.GetClaims()) != 1 || claims.GetClaims()[0].GetRoom() != "r2" || claims.GetClaims()[0].GetBroadcast().GetSeq() != 1 {
		t.Fatalf("claims = %v, want only r2 (r1 done, r3 never pending)", claims)
	}
	// Claimed rows wait for their backoff.
	again, _ := f.cli.ClaimBroadcastRooms(callCtx(t), &internalpb.ClaimBroadcastRoomsRequest{})
	if len(again.GetClaims()) != 0 {
		t.Fatalf("claimed again before the backoff: %v", again)
	}
	st, err := f.cli.BroadcastStatus(callCtx(t), &internalpb.BroadcastStatusRequest{App: "a", Id: b.Id})
	if err != nil || !st.GetFound() {
		t.Fatalf("status: %v %v", st, err)
	}
	byRoom := map[string]*internalpb.BroadcastRoomState{}
	for _, r := range st.GetRooms() {
		byRoom[r.GetRoom()] = r
	}
	if r := byRoom["r1"]; r == nil || !r.Done || r.Reached != 5 || r.Acked != 3 {
		t.Fatalf("r1 = %v", r)
	}
	if r := byRoom["r2"]; r == nil || r.Done || r.Attempts != 1 {
		t.Fatalf("r2 = %v", r)
	}
	if r := byRoom["r3"]; r == nil || !r.Done || r.Reached != 1 {
		t.Fatalf("r3 = %v", r)
	}
	// Another app cannot read it.
	if st, _ := f.cli.BroadcastStatus(callCtx(t), &internalpb.BroadcastStatusRequest{App: "b", Id: b.Id}); st.GetFound() {
		t.Fatal("status of another app's broadcast found")
	}

	// An expired broadcast's pending rooms are abandoned, not claimed.
	old := bcast("a", time.Now().Add(-time.Millisecond).UnixMilli())
	f.storeB(t, old, "r1")
	claims, _ = f.cli.ClaimBroadcastRooms(callCtx(t), &internalpb.ClaimBroadcastRoomsRequest{})
	if len(claims.GetClaims()) != 0 {
		t.Fatalf("expired broadcast claimed: %v", claims)
	}
	if n := f.countRows(t, "SELECT COUNT(*) FROM broadcast_rooms WHERE broadcast_id = ? AND state = ?", old.Id, roomAbandoned); n != 1 {
		t.Fatalf("expired broadcast's room not abandoned")
	}
	// Pruning removes it once past the retention.
	if n, err := f.srv.db.pruneBroadcasts(callCtx(t), time.Now(), 10); err != nil || n != 1 {
		t.Fatalf("prune = %d, %v", n, err)
	}
	if n := f.countRows(t, "SELECT COUNT(*) FROM broadcast_rooms WHERE broadcast_id = ?", old.Id); n != 0 {
		t.Fatalf("pruned broadcast left %d progress rows", n)
	}
}

func TestBroadcastValidation(t *testing.T) {
	f := newFixture(t, 10)
	for name, req := range map[string]*internalpb.StoreBroadcastRequest{
		"no broadcast": {},
		"id 0":         {Broadcast: &internalpb.Broadcast{App: "a"}},
		"no app":       {Broadcast: &internalpb.Broadcast{Id: 1}},
		"qos 2":        {Broadcast: &internalpb.Broadcast{Id: 1, App: "a", Qos: 2}},
		"big payload":  {Broadcast: &internalpb.Broadcast{Id: 1, App: "a", Payload: make([]byte, maxPayload+1)}},
		"empty room":   {Broadcast: &internalpb.Broadcast{Id: 1, App: "a"}, Rooms: []string{""}},
	} {
		if _, err := f.cli.StoreBroadcast(callCtx(t), req); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
}
