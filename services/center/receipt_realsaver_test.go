package main

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/pkg/pushclient"
	"github.com/pushgw/pushgw/proto/apipb"
)

// receiptRows counts the rows of ids in the real saver's messages table
// that ask for a receipt.
func receiptRows(t *testing.T, db *sql.DB, ids ...uint64) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		var r int
		if err := db.QueryRow("SELECT receipt FROM messages WHERE id = ?", id).Scan(&r); err != nil {
			t.Fatalf("message %d: %v", id, err)
		}
		n += r
	}
	return n
}

func parseIDs(t *testing.T, m any) []uint64 {
	t.Helper()
	var out []uint64
	for u, v := range m.(map[string]any) {
		id, err := strconv.ParseUint(v.(string), 10, 64)
		if err != nil {
			t.Fatalf("id of %s: %v", u, v)
		}
		out = append(out, id)
	}
	return out
}

// Through the real saver, every per-user message of a receipt push is
// stored asking for its receipt: an HTTP multicast, a gRPC PushMulti, a
// PushStream push, and a transactional push to users once committed.
func TestReceiptRealSaverEveryKind(t *testing.T) {
	e, dsn := realSaverEnv(t)
	e.srv.txm = newTxMetrics(prometheus.NewRegistry()) // main sets it; the test env does not
	subscribeReceipts(t, e)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	r := e.postJSON("/v1/push/multi", `{"users":["m-a","m-b","m-c"],"payload":"x","receipt":true}`)
	if r.status != 200 {
		t.Fatalf("multicast: %d %v", r.status, r.body)
	}
	if n := receiptRows(t, db, parseIDs(t, r.body["ids"])...); n != 3 {
		t.Fatalf("multicast: %d of 3 rows ask for a receipt", n)
	}

	addr := freeport.Addr(t)
	api, err := startGRPCAPI(e.srv, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.stop(context.Background()) })
	cl, err := pushclient.Dial(addr, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mr, err := cl.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{"g-a", "g-b"}, Payload: []byte("x"), Receipt: true})
	if err != nil {
		t.Fatal(err)
	}
	var gids []uint64
	for _, id := range mr.GetIds() {
		gids = append(gids, id)
	}
	if n := receiptRows(t, db, gids...); n != 2 {
		t.Fatalf("PushMulti: %d of 2 rows ask for a receipt", n)
	}

	s, err := cl.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qos0 := uint32(0)
	if err := s.Send(1, &apipb.PushRequest{User: "s-a", Payload: []byte("x"), Receipt: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(2, &apipb.PushRequest{User: "s-b", Payload: []byte("x"), Qos: &qos0, Receipt: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*apipb.StreamPushReply{}
	for {
		rep, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[rep.GetRef()] = rep
	}
	if got[1].GetError() != nil || receiptRows(t, db, got[1].GetReply().GetId()) != 1 {
		t.Fatalf("stream push with receipt: %v", got[1])
	}
	if e := got[2].GetError(); e.GetCode() != CodeInvalidArgument || e.GetField() != "receipt" {
		t.Fatalf("stream qos 0 push with receipt: %v; want INVALID_ARGUMENT on receipt", got[2])
	}

	p := e.postJSON("/v1/tx", `{"target":{"kind":"users","users":["t-a","t-b"]},"payload":"x","receipt":true}`)
	if p.status != 200 || p.body["receipt"] != true {
		t.Fatalf("tx prepare: %d %v", p.status, p.body)
	}
	c := e.postJSON("/v1/tx/"+p.body["id"].(string)+"/commit", `{}`)
	if c.status != 200 {
		t.Fatalf("tx commit: %d %v", c.status, c.body)
	}
	if n := receiptRows(t, db, parseIDs(t, c.body["message_ids"])...); n != 2 {
		t.Fatalf("tx: %d of 2 committed rows ask for a receipt", n)
	}
}
