package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func multiReq(app string, n int, ikey string) *internalpb.StoreMultiRequest {
	req := &internalpb.StoreMultiRequest{Message: &internalpb.Message{App: app, Payload: []byte("score 1:0"), Qos: 1,
		ExpiresMs: time.Now().Add(time.Hour).UnixMilli(), IdempotencyKey: ikey}}
	for i := 0; i < n; i++ {
		req.Users = append(req.Users, fmt.Sprintf("u-%d", i))
		req.Ids = append(req.Ids, newID())
	}
	return req
}

func (f *fixture) count(t testing.TB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.sqldb.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A multicast whose 5,001st row violates a constraint (a trigger raising
// an error, as a CHECK or a full disk would) commits none of its rows, no
// idempotency key and no inbox entry; the same key then stores it whole,
// and once more answers the same ids without storing anything.
func TestStoreMultiAllOrNothing(t *testing.T) {
	f := newFixture(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := f.sqldb.Exec("CREATE TRIGGER reject_u5000 BEFORE INSERT ON messages FOR EACH ROW " +
		"IF NEW.`user` = 'u-5000' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rejected by test trigger'; END IF"); err != nil {
		t.Fatal(err)
	}
	req := multiReq("app", 10_000, "match-42")
	if _, err := f.cli.StoreMulti(ctx, req); err == nil {
		t.Fatal("StoreMulti succeeded through a failing row")
	} else {
		t.Logf("failed as it should: %v", err)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM messages WHERE app = 'app'"); n != 0 {
		t.Fatalf("%d rows committed by a failed multicast", n)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM idempotency_keys"); n != 0 {
		t.Fatalf("%d idempotency keys committed by a failed multicast", n)
	}
	if n := f.rdb.Exists(ctx, inboxKey("app", "u-0")).Val(); n != 0 {
		t.Fatal("inbox entry written for a failed multicast")
	}

	if _, err := f.sqldb.Exec("DROP TRIGGER reject_u5000"); err != nil {
		t.Fatal(err)
	}
	rep, err := f.cli.StoreMulti(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetReplayed() || rep.GetMulticastId() != req.GetIds()[0] {
		t.Fatalf("first store: replayed=%v multicast=%d", rep.GetReplayed(), rep.GetMulticastId())
	}
	if n := f.count(t, "SELECT COUNT(*) FROM messages WHERE multicast_id = ?", req.GetIds()[0]); n != 10_000 {
		t.Fatalf("%d rows stored, want 10000", n)
	}
	if got := f.pending(t, "app", "u-9999", ""); len(got) != 1 || got[0].GetId() != req.GetIds()[9999] {
		t.Fatalf("u-9999 pending: %v", ids(got))
	}
	f.ack(t, &internalpb.Message{App: "app", User: "u-7", Id: req.GetIds()[7]})

	retry := multiReq("app", 10_000, "match-42")
	rep, err = f.cli.StoreMulti(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.GetReplayed() || rep.GetMulticastId() != req.GetIds()[0] || len(rep.GetIds()) != 10_000 {
		t.Fatalf("retry: replayed=%v multicast=%d ids=%d", rep.GetReplayed(), rep.GetMulticastId(), len(rep.GetIds()))
	}
	want := map[string]uint64{}
	for i, u := range req.GetUsers() {
		want[u] = req.GetIds()[i]
	}
	for i, u := range rep.GetUsers() {
		if want[u] != rep.GetIds()[i] {
			t.Fatalf("retry answers %s -> %d, first store gave %d", u, rep.GetIds()[i], want[u])
		}
	}
	if n := f.count(t, "SELECT COUNT(*) FROM messages WHERE app = 'app'"); n != 9_999 {
		t.Fatalf("%d rows after the retry, want 9999 (10000 less one acked)", n)
	}
}

func TestStoreMultiValidation(t *testing.T) {
	f := newFixture(t, 10)
	for name, req := range map[string]*internalpb.StoreMultiRequest{
		"no message":   {Users: []string{"a"}, Ids: []uint64{1}},
		"ids mismatch": {Message: &internalpb.Message{App: "a", Qos: 1}, Users: []string{"a", "b"}, Ids: []uint64{1}},
		"dup user":     {Message: &internalpb.Message{App: "a", Qos: 1}, Users: []string{"a", "a"}, Ids: []uint64{1, 2}},
		"qos 0":        {Message: &internalpb.Message{App: "a", Qos: 0}, Users: []string{"a"}, Ids: []uint64{1}},
		"too big": {Message: &internalpb.Message{App: "a", Qos: 1, Payload: make([]byte, 64<<10)},
			Users: make([]string, 1025), Ids: make([]uint64, 1025)},
	} {
		if _, err := f.cli.StoreMulti(callCtx(t), req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Three pushes with one collapse key to an offline user leave only the
// last; the others report collapsed. A message older than one stored with
// its key is collapsed on arrival, and one Store holding two of a key
// keeps the newer.
func TestCollapseKey(t *testing.T) {
	f := newFixture(t, 10)
	var sent []*internalpb.Message
	for i := 0; i < 3; i++ {
		m := msg("app", "bob", "", 0)
		m.CollapseKey = "score"
		f.store(t, m)
		sent = append(sent, m)
	}
	other := msg("app", "bob", "", 0) // no key: untouched
	f.store(t, other)
	got := f.pending(t, "app", "bob", "")
	if len(got) != 2 || got[0].GetId() != sent[2].GetId() || got[1].GetId() != other.GetId() {
		t.Fatalf("pending %v, want [%d %d]", ids(got), sent[2].GetId(), other.GetId())
	}
	for _, m := range sent[:2] {
		if st := f.status(t, "app", m.GetId()).GetMessage().GetState(); st != internalpb.MessageState_MESSAGE_STATE_COLLAPSED {
			t.Fatalf("message %d: state %v, want collapsed", m.GetId(), st)
		}
		if idx, body := f.inInbox(t, m); idx || body {
			t.Fatalf("collapsed %d still in the inbox", m.GetId())
		}
	}

	late := &internalpb.Message{Id: sent[2].GetId() - 1, App: "app", User: "bob", Qos: 1, Payload: []byte("late"), CollapseKey: "score"}
	f.store(t, late)
	if st := f.status(t, "app", late.GetId()).GetMessage().GetState(); st != internalpb.MessageState_MESSAGE_STATE_COLLAPSED {
		t.Fatalf("late message: state %v, want collapsed", st)
	}
	a, b := msg("app", "carol", "", 0), msg("app", "carol", "", 0)
	a.CollapseKey, b.CollapseKey = "k", "k"
	f.store(t, b, a)
	if got := f.pending(t, "app", "carol", ""); len(got) != 1 || got[0].GetId() != b.GetId() {
		t.Fatalf("carol pending %v, want [%d]", ids(got), b.GetId())
	}
}

func TestPendingHighPriorityFirst(t *testing.T) {
	f := newFixture(t, 10)
	var all []*internalpb.Message
	for _, p := range []uint32{0, 1, 0, 1, 0} {
		m := msg("app", "dan", "", 0)
		m.Priority = p
		all = append(all, m)
	}
	f.store(t, all...)
	got := ids(f.pending(t, "app", "dan", ""))
	want := []uint64{all[1].GetId(), all[3].GetId(), all[0].GetId(), all[2].GetId(), all[4].GetId()}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pending order %v, want %v", got, want)
	}
}
