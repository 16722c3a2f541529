package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// deliveryCount reads a messages row's count straight from MySQL (Pending
// would count one more delivery).
func (f *fixture) deliveryCount(t testing.TB, id uint64) uint32 {
	t.Helper()
	var n uint32
	if err := f.sqldb.QueryRow("SELECT delivery_count FROM messages WHERE id = ?", id).Scan(&n); err != nil {
		t.Fatalf("delivery count of %d: %v", id, err)
	}
	return n
}

// A ref whose app or user is not exactly the stored one (another app,
// another case, a trailing space) neither finishes nor counts a delivery
// of the message, and writes no receipt for it, while its batch-mates
// land; the receipt of the owner's ack carries the delivery of its report.
func TestReportOwnerMismatchLeftStored(t *testing.T) {
	f := newFixture(t, 10)
	es := f.events(t)
	mine, foreign, early := msg("app1", "kim", "", 0), msg("app1", "kim", "", 0), msg("app1", "kim", "", 0)
	mine.Receipt, foreign.Receipt = true, true
	f.store(t, mine, foreign, early)
	wrong := []*internalpb.MessageRef{
		{App: "app2", User: "kim", Id: foreign.GetId()},
		{App: "app1", User: "KIM", Id: foreign.GetId()},
		{App: "app1", User: "kim ", Id: foreign.GetId()},
		{App: "app1", User: "ki", Id: foreign.GetId()},
	}
	for _, w := range wrong {
		req := &internalpb.ReportRequest{
			Acked:     []*internalpb.MessageRef{refOf(mine), w},
			Delivered: []*internalpb.MessageRef{refOf(mine), w, {App: w.GetApp(), User: w.GetUser(), Id: early.GetId()}},
		}
		if _, err := f.cli.Report(callCtx(t), req); err != nil {
			t.Fatal(err)
		}
		if f.rowCount(t, "messages", foreign.GetId()) != 1 || f.rowCount(t, "message_outcomes", foreign.GetId()) != 0 {
			t.Fatalf("ref %v finished another owner's message", w)
		}
		if n := f.deliveryCount(t, foreign.GetId()); n != 0 {
			t.Fatalf("ref %v counted %d deliveries of another owner's message", w, n)
		}
		if n := f.deliveryCount(t, early.GetId()); n != 0 {
			t.Fatalf("delivered ref %v counted %d deliveries of another owner's message", w, n)
		}
		if idx, body := f.inInbox(t, foreign); !idx || !body {
			t.Fatalf("ref %v touched the owner's inbox", w)
		}
	}
	st := f.status(t, "app1", mine.GetId()).GetMessage()
	if st.GetState() != internalpb.MessageState_MESSAGE_STATE_ACKED || st.GetDeliveryCount() != 1 {
		t.Fatalf("owner's ack: %v, want acked after 1 delivery", st)
	}
	// The owner's own delivered-only ref counts.
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{Delivered: []*internalpb.MessageRef{refOf(early)}}); err != nil {
		t.Fatal(err)
	}
	if n := f.deliveryCount(t, early.GetId()); n != 1 {
		t.Fatalf("owner's delivery counted %d times, want 1", n)
	}
	r := leaseAll(t, es, 100)
	if len(r.GetEvents()) != 1 {
		t.Fatalf("%d receipts, want the owner's one: %v", len(r.GetEvents()), r.GetEvents())
	}
	if e := r.GetEvents()[0]; e.GetMessageId() != mine.GetId() || e.GetOutcome() != "acked" || e.GetDeliveryCount() != 1 {
		t.Fatalf("receipt %v, want %d acked after 1 delivery", e, mine.GetId())
	}
}

// Several acks of the same messages (two savers, a room retrying) race
// the expiry sweeper: every message is finished exactly once, by one of
// them, with exactly one outcome row and one receipt that agree.
func TestFinishRacesExactlyOnce(t *testing.T) {
	f := newFixture(t, 10)
	const n, ackers = 120, 4
	exp := time.Now().Add(time.Second).UnixMilli()
	msgs := make([]*internalpb.Message, n)
	refs := make([]msgRef, n)
	for i := range msgs {
		msgs[i] = msg("app1", fmt.Sprint("u", i%7), "", exp)
		msgs[i].Receipt = true
		refs[i] = msgRef{msgs[i].GetApp(), msgs[i].GetUser(), msgs[i].GetId()}
	}
	f.store(t, msgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	later := time.Now().Add(2 * time.Second)

	var mu sync.Mutex
	by := map[uint64][]string{}
	record := func(who string, done []msgRef) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range done {
			by[r.id] = append(by[r.id], who)
		}
	}
	var wg sync.WaitGroup
	for a := 0; a < ackers; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each acker in its own order of batches, overlapping the others.
			for i := 0; i < n; i += 30 {
				start := (i + a*30) % n
				done, err := f.srv.db.finishOwned(ctx, internalpb.MessageState_MESSAGE_STATE_ACKED, refs[start:start+30], later, nil)
				if err != nil {
					t.Error(err)
					return
				}
				record("acked", done)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		ids := make([]uint64, n)
		for i, r := range refs {
			ids[i] = r.id
		}
		done, err := f.srv.db.finish(ctx, internalpb.MessageState_MESSAGE_STATE_EXPIRED, ids, later, func(r *finishedRow) bool {
			return r.expiresMs > 0 && r.expiresMs <= later.UnixMilli()
		})
		if err != nil {
			t.Error(err)
		}
		record("expired", done)
	}()
	wg.Wait()
	if t.Failed() {
		return
	}

	receipts := map[uint64][]string{}
	rows, err := f.sqldb.Query("SELECT message_id, outcome FROM events WHERE kind = ?", uint8(internalpb.EventKind_EVENT_KIND_RECEIPT))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uint64
		var o string
		if err := rows.Scan(&id, &o); err != nil {
			t.Fatal(err)
		}
		receipts[id] = append(receipts[id], o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	outcomeOf := map[string]internalpb.MessageState{
		"acked": internalpb.MessageState_MESSAGE_STATE_ACKED, "expired": internalpb.MessageState_MESSAGE_STATE_EXPIRED,
	}
	for _, m := range msgs {
		id := m.GetId()
		if len(by[id]) != 1 {
			t.Fatalf("message %d finished by %v, want exactly once", id, by[id])
		}
		if f.rowCount(t, "messages", id) != 0 || f.rowCount(t, "message_outcomes", id) != 1 {
			t.Fatalf("message %d not moved to outcomes", id)
		}
		if len(receipts[id]) != 1 || receipts[id][0] != by[id][0] {
			t.Fatalf("message %d finished as %v has receipts %v", id, by[id], receipts[id])
		}
		if st := f.status(t, "app1", id).GetMessage().GetState(); st != outcomeOf[by[id][0]] {
			t.Fatalf("message %d finished as %v, outcome %s", id, by[id], st)
		}
	}
}

// The Report statements read and lock rows by primary key only: the
// tuple filter must not turn the plan onto the (app, user, id) index.
func TestReportStatementsUsePrimaryKey(t *testing.T) {
	f := newFixture(t, 10)
	var msgs []*internalpb.Message
	for i := 0; i < 400; i++ {
		msgs = append(msgs, msg("app1", fmt.Sprint("u", i%3), "", 0))
	}
	f.store(t, msgs...)
	if _, err := f.sqldb.Exec("ANALYZE TABLE messages"); err != nil {
		t.Fatal(err)
	}
	var refs []msgRef
	for _, m := range msgs[100:120] {
		refs = append(refs, msgRef{m.GetApp(), m.GetUser(), m.GetId()})
	}
	cond, args := ownedRows(refs)
	for _, q := range []string{"DELETE FROM messages WHERE " + cond, "UPDATE messages SET delivery_count = delivery_count + 1 WHERE " + cond} {
		if key := explainKey(t, f.sqldb, q, args); key != "PRIMARY" {
			t.Fatalf("%s... uses key %q, want PRIMARY", q[:40], key)
		}
	}
}

// explainKey returns the key column of q's plan (one table).
func explainKey(t *testing.T, db *sql.DB, q string, args []any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("no plan for %s", q)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		if c == "key" {
			return vals[i].String
		}
	}
	t.Fatalf("no key column in %v", cols)
	return ""
}
