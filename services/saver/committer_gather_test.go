package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// gatherResult is what one gather call returned.
type gatherResult struct {
	batch []*storeReq
	rows  int
}

// gatherCommitter is a committer without writers, so the test drives
// gather itself; its wait is an hour, so a gather that waits for company
// when it should not never returns within the test's patience.
func gatherCommitter(t *testing.T) *committer {
	t.Helper()
	c := newCommitter(nil, nil, newMetrics(prometheus.NewRegistry()), testLog(), 0, 256)
	c.wait = time.Hour
	return c
}

func rowsReq(n int) *storeReq {
	r := &storeReq{done: make(chan error, 1)}
	for range n {
		r.msgs = append(r.msgs, &internalpb.Message{})
	}
	return r
}

func runGather(c *committer, first *storeReq) <-chan gatherResult {
	out := make(chan gatherResult, 1)
	go func() {
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		b, rows := c.gather(first, timer)
		out <- gatherResult{b, rows}
	}()
	return out
}

// With no commit in flight a writer takes what is queued and leaves: a
// lone Store does not wait groupCommitWait for company.
func TestGatherLeavesAtOnceWhenIdle(t *testing.T) {
	c := gatherCommitter(t)
	c.queue <- rowsReq(2)
	c.queue <- rowsReq(3)
	select {
	case got := <-runGather(c, rowsReq(1)):
		if len(got.batch) != 3 || got.rows != 6 {
			t.Fatalf("batch of %d requests, %d rows; want the 3 queued, 6 rows", len(got.batch), got.rows)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gather waited for company with no commit in flight")
	}
}

// While another writer commits, a writer gathers what arrives until the
// row bound (or groupCommitWait, an hour here).
func TestGatherWaitsWhileAnotherCommits(t *testing.T) {
	c := gatherCommitter(t)
	c.committing.Add(1)
	out := runGather(c, rowsReq(10))
	// Requests that arrive after gather started still join the batch.
	for range 9 {
		c.queue <- rowsReq(10)
	}
	got := <-out
	if len(got.batch) != 10 || got.rows != groupCommitRows {
		t.Fatalf("batch of %d requests, %d rows; want 10 requests, %d rows", len(got.batch), got.rows, groupCommitRows)
	}
}

// The row bound holds on the no-wait path too: what is queued beyond it
// is left for the next batch.
func TestGatherStopsAtRowBound(t *testing.T) {
	c := gatherCommitter(t)
	for range 15 {
		c.queue <- rowsReq(10)
	}
	got := <-runGather(c, rowsReq(10))
	if got.rows != groupCommitRows || len(c.queue) != 6 {
		t.Fatalf("batch of %d rows, %d requests left queued; want %d rows and 6 left", got.rows, len(c.queue), groupCommitRows)
	}
}
