package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// batchCatchUpSaver is a recSaver that records catch-up calls and answers
// them with none; noBatch makes it a saver older than CatchUpBatch.
type batchCatchUpSaver struct {
	*recSaver
	noBatch bool
	cmu     sync.Mutex
	batches []int // requests per CatchUpBatch call
	singles int   // CatchUp calls
}

func (s *batchCatchUpSaver) CatchUpBatch(_ context.Context, req *internalpb.CatchUpBatchRequest) (*internalpb.CatchUpBatchReply, error) {
	if s.noBatch {
		return nil, status.Error(codes.Unimplemented, "method CatchUpBatch not implemented")
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.batches = append(s.batches, len(req.GetRequests()))
	rep := &internalpb.CatchUpBatchReply{Entries: make([]*internalpb.CatchUpBatchEntry, len(req.GetRequests()))}
	for i := range rep.Entries {
		rep.Entries[i] = &internalpb.CatchUpBatchEntry{}
	}
	return rep, nil
}

func (s *batchCatchUpSaver) CatchUp(context.Context, *internalpb.CatchUpRequest) (*internalpb.CatchUpReply, error) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.singles++
	return &internalpb.CatchUpReply{}, nil
}

func (s *batchCatchUpSaver) calls() (batches []int, singles int) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return append([]int(nil), s.batches...), s.singles
}

func startBatchCatchUpSaver(t *testing.T, e *testEnv, noBatch bool) *batchCatchUpSaver {
	t.Helper()
	s := &batchCatchUpSaver{recSaver: &recSaver{users: map[string]int{}, backlog: map[string][]*internalpb.Message{}}, noBatch: noBatch}
	serveSaver(t, e, s)
	return s
}

// catchUpAll queues n first reads on cb and waits until every catch-up
// finished (its last read too).
func catchUpAll(t *testing.T, e *testEnv, cb *catchUpBatcher, n int) {
	t.Helper()
	r := e.srv.r
	ok0 := metricValue(t, r.m.catchUps.WithLabelValues("ok"))
	for i := 0; i < n; i++ {
		s := &session{r: r, key: sessionKey{app: "appA", user: fmt.Sprintf("c-%d", i), device: "d"}}
		cb.add(catchUpReq{s: s, loginMs: time.Now().UnixMilli()})
	}
	waitFor(t, "every catch-up done", func() bool {
		return metricValue(t, r.m.catchUps.WithLabelValues("ok"))-ok0 == float64(n)
	})
}

// The catch-up reads of n logins queued in one window leave in one
// CatchUpBatch call; their last reads in one more.
func TestCatchUpsOfOneWindowMakeOneBatch(t *testing.T) {
	e := startEnv(t, engineStd, nil)
	rs := startBatchCatchUpSaver(t, e, false)
	r := e.srv.r
	const n = 64
	calls0 := metricValue(t, r.m.catchUpBatches)
	// A window that only the size ends makes the count exact.
	cb := newCatchUpBatcher(r.bc, n, time.Hour)
	t.Cleanup(cb.close)
	catchUpAll(t, e, cb, n)
	batches, singles := rs.calls()
	if len(batches) != 2 || batches[0] != n || batches[1] != n || singles != 0 {
		t.Fatalf("saver saw CatchUpBatch calls of %v and %d CatchUp calls, want two calls of %d (first and last reads) and none", batches, singles, n)
	}
	if got := metricValue(t, r.m.catchUpBatches) - calls0; got != 2 {
		t.Fatalf("catch-up batches metric grew by %v, want 2", got)
	}
}

// A saver without CatchUpBatch (an older one, mid-upgrade) still serves
// every catch-up, one CatchUp call per read.
func TestCatchUpsFallBackToSingleCalls(t *testing.T) {
	e := startEnv(t, engineStd, nil)
	rs := startBatchCatchUpSaver(t, e, true)
	const n = 16
	cb := newCatchUpBatcher(e.srv.r.bc, n, time.Hour)
	t.Cleanup(cb.close)
	catchUpAll(t, e, cb, n)
	if !cb.single.Load() {
		t.Fatal("batcher did not switch to single calls")
	}
	if _, singles := rs.calls(); singles != 2*n {
		t.Fatalf("%d CatchUp calls, want %d (a first and a last read per login)", singles, 2*n)
	}
}

// Real logins: their catch-ups share calls.
func TestLoginsCatchUpInBatches(t *testing.T) {
	e := startEnv(t, engineStd, nil)
	rs := startBatchCatchUpSaver(t, e, false)
	r := e.srv.r
	ok0 := metricValue(t, r.m.catchUps.WithLabelValues("ok"))
	const n = 40
	clients := make([]*tclient, n)
	for i := range clients {
		clients[i] = e.dial()
	}
	for i, c := range clients {
		c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: e.token("appA", testSecretA, fmt.Sprintf("cu-%d", i), "d", time.Hour)})
	}
	for i, c := range clients {
		if f, m := c.read(); f.Op != protocol.OpAuthReply {
			t.Fatalf("client %d: got %s %v, want AUTH_REPLY", i, f.Op, m)
		}
	}
	waitFor(t, "every login caught up", func() bool {
		return metricValue(t, r.m.catchUps.WithLabelValues("ok"))-ok0 == n
	})
	batches, singles := rs.calls()
	// Two reads per login; a loaded box may split them over a few
	// windows, never one call each.
	if len(batches) > n/4 || singles != 0 {
		t.Fatalf("%d logins made %d CatchUpBatch calls %v and %d CatchUp calls", n, len(batches), batches, singles)
	}
}
