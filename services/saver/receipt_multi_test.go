package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// A multicast whose template asks for a receipt, and a committed
// transactional push that asked for one at prepare, get one receipt per
// recipient's message, written with that message's outcome; a multicast
// without it gets none.
func TestReceiptsOnMulticastAndTx(t *testing.T) {
	f, ts := newTxFixture(t)
	es := newEventsServer(f.srv, prometheus.NewRegistry())
	ctx := callCtx(t)

	rm := multiReq("app1", 3, "")
	rm.Message.Receipt = true
	rm.Message.ExpiresMs = time.Now().Add(time.Second).UnixMilli()
	if _, err := f.cli.StoreMulti(ctx, rm); err != nil {
		t.Fatal(err)
	}
	plain := multiReq("app1", 1, "")
	plain.Users[0] = "plain"
	if _, err := f.cli.StoreMulti(ctx, plain); err != nil {
		t.Fatal(err)
	}

	rec := txRecord("app1", time.Hour, "tx-a", "tx-b")
	rec.Receipt = true
	prepareTx(t, ts, rec)
	got, err := ts.GetTx(ctx, &internalpb.GetTxRequest{App: "app1", Id: rec.GetId()})
	if err != nil || !got.GetTx().GetReceipt() {
		t.Fatalf("stored record lost receipt: %v %v", got, err)
	}
	dec := decideTx(t, ts, "app1", rec.GetId(), internalpb.TxState_TX_STATE_COMMITTED, 0)
	if len(dec.GetMessages()) != 2 {
		t.Fatalf("commit made %d messages, want 2", len(dec.GetMessages()))
	}
	for _, m := range dec.GetMessages() {
		if !m.GetReceipt() {
			t.Fatalf("committed message %d without receipt", m.GetId())
		}
	}

	// u-0 and tx-a ack; u-1, u-2 and plain expire; tx-b stays waiting.
	f.ack(t, &internalpb.Message{App: "app1", User: "u-0", Id: rm.GetIds()[0]},
		&internalpb.Message{App: "app1", User: "tx-a", Id: rec.GetRecipients()[0].GetMessageId()})
	f.sweep.sweep(context.Background(), time.Now().Add(2*time.Second))

	r := leaseAll(t, es, 100)
	outcomes := map[uint64]string{}
	for _, e := range r.GetEvents() {
		if _, dup := outcomes[e.GetMessageId()]; dup {
			t.Fatalf("two receipts for %d", e.GetMessageId())
		}
		outcomes[e.GetMessageId()] = e.GetUser() + ":" + e.GetOutcome()
	}
	want := map[uint64]string{
		rm.GetIds()[0]: "u-0:acked", rm.GetIds()[1]: "u-1:expired", rm.GetIds()[2]: "u-2:expired",
		rec.GetRecipients()[0].GetMessageId(): "tx-a:acked",
	}
	if len(outcomes) != len(want) {
		t.Fatalf("receipts %v, want %v", outcomes, want)
	}
	for id, w := range want {
		if outcomes[id] != w {
			t.Errorf("receipt of %d: %q, want %q", id, outcomes[id], w)
		}
	}
}
