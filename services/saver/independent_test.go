package main

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// An independent Store answers the message saver rejects and stores its
// batch-mates; a plain Store with the same messages fails whole.
func TestStoreIndependentRejectsOnlyTheBadMessage(t *testing.T) {
	f := newFixture(t, 10)
	good1, good2 := msg("app", "alice", "", 0), msg("app", "bob", "", 0)
	bad := msg("app", "carol", "", 0)
	bad.Qos = 0 // saver stores only QoS 1
	keyed := msg("app", "dave", "", 0)
	keyed.IdempotencyKey = "k1"
	first := msg("app", "dave", "", 0)
	first.IdempotencyKey = "k1"
	f.store(t, first)

	if _, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{good1, bad}}); codeOf(err) != codes.InvalidArgument {
		t.Fatalf("plain store with a bad message: %v, want InvalidArgument", err)
	}
	rep, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Independent: true,
		Messages: []*internalpb.Message{good1, bad, good2, keyed}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.GetFailed(); len(got) != 1 || codes.Code(got[bad.GetId()].GetCode()) != codes.InvalidArgument || got[bad.GetId()].GetMessage() == "" {
		t.Fatalf("failed = %v, want only %d as INVALID_ARGUMENT with a reason", got, bad.GetId())
	}
	if got := rep.GetReplaced(); len(got) != 1 || got[keyed.GetId()] != first.GetId() {
		t.Fatalf("replaced = %v, want %d -> %d", got, keyed.GetId(), first.GetId())
	}
	for _, m := range []*internalpb.Message{good1, good2} {
		if n := f.rowCount(t, "messages", m.GetId()); n != 1 {
			t.Errorf("message %d: %d rows, want 1", m.GetId(), n)
		}
	}
	for _, m := range []*internalpb.Message{bad, keyed} {
		if n := f.rowCount(t, "messages", m.GetId()); n != 0 {
			t.Errorf("message %d: %d rows, want 0", m.GetId(), n)
		}
	}
}

// Concurrent independent Stores share group commits; each call gets its
// own messages' outcomes.
func TestStoreIndependentConcurrent(t *testing.T) {
	f := newFixture(t, 10)
	const calls, per = 40, 5
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for c := 0; c < calls; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]*internalpb.Message, per)
			for i := range msgs {
				msgs[i] = msg("app", fmt.Sprintf("u%d", c), "", 0)
			}
			msgs[c%per].User = "" // rejected by validation
			rep, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Independent: true, Messages: msgs})
			if err != nil {
				errs <- err
				return
			}
			for i, m := range msgs {
				_, failed := rep.GetFailed()[m.GetId()]
				if failed != (i == c%per) {
					errs <- fmt.Errorf("call %d message %d: failed=%v", c, i, failed)
				}
				if want := map[bool]int{true: 0, false: 1}[failed]; f.rowCount(t, "messages", m.GetId()) != want {
					errs <- fmt.Errorf("call %d message %d: want %d rows", c, i, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

// A message whose INSERT fails (a trigger raising an error, as a full disk
// or a CHECK would) fails alone in an independent Store, whose batch is
// one autocommitted INSERT (oneStatement): its batch-mates are committed
// and indexed in Redis. A plain Store of one good and one failing message
// is one statement too, and stores neither.
func TestStoreIndependentCommitFailureIsolated(t *testing.T) {
	f := newFixture(t, 10)
	if _, err := f.sqldb.Exec("CREATE TRIGGER reject_carol BEFORE INSERT ON messages FOR EACH ROW " +
		"IF NEW.`user` = 'carol' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rejected by test trigger'; END IF"); err != nil {
		t.Fatal(err)
	}
	good1, bad, good2 := msg("app", "alice", "", 0), msg("app", "carol", "", 0), msg("app", "bob", "", 0)
	if !oneStatement([]*internalpb.Message{good1, bad, good2}) {
		t.Fatal("a key-less batch of three does not take the one-statement path")
	}
	rep, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Independent: true, Messages: []*internalpb.Message{good1, bad, good2}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.GetFailed(); len(got) != 1 || codes.Code(got[bad.GetId()].GetCode()) != codes.Unavailable {
		t.Fatalf("failed = %v, want only %d as UNAVAILABLE", got, bad.GetId())
	}
	for _, m := range []*internalpb.Message{good1, good2} {
		if n := f.rowCount(t, "messages", m.GetId()); n != 1 {
			t.Errorf("batch-mate %d: %d rows, want 1", m.GetId(), n)
		}
		if indexed, body := f.inInbox(t, m); !indexed || !body {
			t.Errorf("batch-mate %d: inbox indexed=%v body=%v", m.GetId(), indexed, body)
		}
	}
	good3, bad2 := msg("app", "dave", "", 0), msg("app", "carol", "", 0)
	if _, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{good3, bad2}}); codeOf(err) != codes.Unavailable {
		t.Fatalf("plain store with a failing row: %v, want UNAVAILABLE", err)
	}
	for _, m := range []*internalpb.Message{bad, bad2, good3} {
		if n := f.rowCount(t, "messages", m.GetId()); n != 0 {
			t.Errorf("message %d: %d rows, want 0", m.GetId(), n)
		}
	}
}

// A Store retried after its message was acked does not store it again: the
// outcome check drops it. A fresh Store (center's batcher: ids minted for
// that call) skips the check, so only callers that never resend may set it.
func TestStoreFreshSkipsOutcomeCheck(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app", "erin", "", 0)
	f.store(t, m)
	f.ack(t, m)
	if n := f.rowCount(t, "messages", m.GetId()); n != 0 {
		t.Fatalf("acked message %d still has %d rows", m.GetId(), n)
	}
	rep, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Independent: true, Messages: []*internalpb.Message{m}})
	if err != nil || len(rep.GetFailed()) != 0 {
		t.Fatalf("retried store: %v %v", rep, err)
	}
	if n := f.rowCount(t, "messages", m.GetId()); n != 0 {
		t.Fatalf("a retried Store of acked message %d stored it again (%d rows)", m.GetId(), n)
	}
	fresh := msg("app", "erin", "", 0)
	rep, err = f.cli.Store(callCtx(t), &internalpb.StoreRequest{Independent: true, Fresh: true, Messages: []*internalpb.Message{fresh}})
	if err != nil || len(rep.GetFailed()) != 0 {
		t.Fatalf("fresh store: %v %v", rep, err)
	}
	if n := f.rowCount(t, "messages", fresh.GetId()); n != 1 {
		t.Fatalf("fresh message %d: %d rows, want 1", fresh.GetId(), n)
	}
	// What fresh means: the caller vouches no outcome exists, so saver
	// does not look (here it is wrong on purpose).
	rep, err = f.cli.Store(callCtx(t), &internalpb.StoreRequest{Independent: true, Fresh: true, Messages: []*internalpb.Message{m}})
	if err != nil || len(rep.GetFailed()) != 0 {
		t.Fatalf("fresh store of an acked id: %v %v", rep, err)
	}
	if n := f.rowCount(t, "messages", m.GetId()); n != 1 {
		t.Fatalf("fresh store of %d: %d rows, want 1 (no outcome check)", m.GetId(), n)
	}
}
