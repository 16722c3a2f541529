package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// flaky fails each message a set number of times, then delivers it.
type flaky struct {
	mu     sync.Mutex
	fails  map[uint64]int
	calls  map[uint64][]time.Time
	doneCh chan uint64
}

func (f *flaky) deliver(_ context.Context, msgs []*internalpb.Message) (int, []*internalpb.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var missed []*internalpb.Message
	n := 0
	for _, m := range msgs {
		f.calls[m.GetId()] = append(f.calls[m.GetId()], time.Now())
		if f.fails[m.GetId()] > 0 {
			f.fails[m.GetId()]--
			missed = append(missed, m)
			continue
		}
		n++
		f.doneCh <- m.GetId()
	}
	return n, missed, nil
}

func TestRetrierRetriesThenGivesUp(t *testing.T) {
	f := &flaky{fails: map[uint64]int{1: 1, 2: 100}, calls: map[uint64][]time.Time{}, doneCh: make(chan uint64, 10)}
	m := newMetrics(prometheus.NewRegistry())
	r := newRetrier(f.deliver, nil, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.stop()

	start := time.Now()
	// Both failed their live delivery once already.
	r.add([]*internalpb.Message{{Id: 1, Qos: 1}, {Id: 2, Qos: 1}}, 0)

	select {
	case id := <-f.doneCh:
		if id != 1 {
			t.Fatalf("delivered %d, want 1", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message 1 not delivered on its second retry")
	}
	// Message 2 is tried once per delay and then left to the sweep.
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(m.retryDropped.WithLabelValues("gave_up")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("message 2 never given up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := len(f.calls[1]); got != 2 {
		t.Fatalf("message 1 tried %d times, want 2", got)
	}
	if got := len(f.calls[2]); got != len(retryDelays) {
		t.Fatalf("message 2 tried %d times, want %d", got, len(retryDelays))
	}
	// Each retry waits at least its delay (the tick only adds to it).
	want := retryDelays[0]
	for i, at := range f.calls[2] {
		if at.Sub(start) < want {
			t.Fatalf("retry %d after %v, want at least %v", i+1, at.Sub(start), want)
		}
		if i+1 < len(retryDelays) {
			want += retryDelays[i+1]
		}
	}
	if got := counterValue(m.retries); got != float64(2+len(retryDelays)) {
		t.Fatalf("retries metric %v", got)
	}
}

func TestRetrierBounded(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	never := func(context.Context, []*internalpb.Message) (int, []*internalpb.Message, error) { return 0, nil, nil }
	r := newRetrier(never, nil, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.stop()
	msgs := make([]*internalpb.Message, retryQueueMax+10)
	for i := range msgs {
		msgs[i] = &internalpb.Message{Id: uint64(i + 1), Qos: 1}
	}
	r.add(msgs, 0)
	if got := counterValue(m.retryDropped.WithLabelValues("queue_full")); got != 10 {
		t.Fatalf("queue_full = %v, want 10", got)
	}
	r.mu.Lock()
	n := len(r.items)
	r.mu.Unlock()
	if n != retryQueueMax {
		t.Fatalf("queue holds %d, want %d", n, retryQueueMax)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return -1
	}
	return d.GetCounter().GetValue()
}
