package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/pkg/pushclient"
	"github.com/pushgw/pushgw/proto/apipb"
)

// Transports of the unicast scenario: how pushes enter center.
const (
	// transportHTTP is POST /v1/push, one push per request, keep-alive.
	transportHTTP = "http"
	// transportGRPC is the PushAPI's PushStream (pkg/pushclient), each
	// push answered on its stream once durable.
	transportGRPC = "grpc"
	// maxGRPCStreams bounds -grpc-streams.
	maxGRPCStreams = 256
	// streamCloseGrace bounds how long a stream may take to answer its
	// last pushes after the send window.
	streamCloseGrace = 30 * time.Second
)

func unicastTransports() []string { return []string{transportHTTP, transportGRPC} }

// unicastSender is one transport's sender for one step: it paces pushes
// for the step and counts what center accepted and when it answered.
type unicastSender interface {
	run()
	// sent counts pushes issued, accepted those center answered OK.
	sent() int64
	acceptedN() int64
	// answers are request start -> answer, the "stored" hop.
	answers() LatencyMS
	// outcomes counts answers by HTTP status or API code.
	outcomes() map[string]int
}

func (s *sender) sent() int64              { return s.requests.Load() }
func (s *sender) acceptedN() int64         { return s.accepted.Load() }
func (s *sender) answers() LatencyMS       { return s.lat.h.Summary() }
func (s *sender) outcomes() map[string]int { return s.status.Snapshot() }

// streamSender pushes over streams PushStreams of one pushclient.Client:
// the pacer hands push numbers to one sending goroutine per stream (a
// stream's Send is not safe for concurrent use), one goroutine per stream
// reads the replies. Center keeps at most 256 pushes of a stream in
// flight; beyond that Send blocks, the pacer with it, and the achieved
// rate shows it.
type streamSender struct {
	f       *pushFlags
	cli     *pushclient.Client
	streams int
	tr      *tracker
	stop    <-chan struct{}

	requests atomic.Int64
	accepted atomic.Int64
	lat      latencies
	status   counts
}

func (s *streamSender) sent() int64              { return s.requests.Load() }
func (s *streamSender) acceptedN() int64         { return s.accepted.Load() }
func (s *streamSender) answers() LatencyMS       { return s.lat.h.Summary() }
func (s *streamSender) outcomes() map[string]int { return s.status.Snapshot() }

func (s *streamSender) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (s *streamSender) run() {
	ctx, cancel := context.WithTimeout(context.Background(), s.f.duration+streamCloseGrace)
	defer cancel()
	jobs := make(chan int64, s.streams)
	var wg sync.WaitGroup
	for i := 0; i < s.streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stream(ctx, jobs)
		}()
	}
	pace(s.f.rate, s.f.duration, s.stopped, jobs)
	close(jobs)
	wg.Wait()
}

// stream runs one PushStream until jobs closes and every reply arrived
// (or ctx ends). After a failure it keeps taking jobs, counting each as
// not sent, so the pacer never waits on a dead stream.
func (s *streamSender) stream(ctx context.Context, jobs <-chan int64) {
	st, err := s.cli.Stream(ctx)
	if err != nil {
		s.status.Add("stream_open_error", 1)
		for range jobs {
			s.requests.Add(1)
			s.status.Add("stream_open_error", 1)
		}
		return
	}
	var mu sync.Mutex
	started := map[uint64]time.Time{}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			rep, err := st.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.status.Add("stream_recv_error", 1)
				}
				return
			}
			now := time.Now()
			mu.Lock()
			t0, ok := started[rep.GetRef()]
			delete(started, rep.GetRef())
			mu.Unlock()
			if ok {
				s.lat.Add(now.Sub(t0))
			}
			if e := rep.GetError(); e != nil {
				s.status.Add(e.GetCode(), 1)
				continue
			}
			s.status.Add("OK", 1)
			s.accepted.Add(1)
		}
	}()
	qos, ttl := uint32(s.f.qos), int64(s.f.ttl)
	broken := false
	for k := range jobs {
		s.requests.Add(1)
		if broken {
			s.status.Add("stream_send_error", 1)
			continue
		}
		t0 := time.Now()
		ref := uint64(k)
		mu.Lock()
		started[ref] = t0
		mu.Unlock()
		req := &apipb.PushRequest{App: s.f.app, User: s.userOf(k), Payload: []byte(timedPayload(s.tr.runID, t0, s.f.size)),
			Qos: &qos, Ttl: &ttl}
		if err := st.Send(ref, req); err != nil {
			s.status.Add("stream_send_error", 1)
			broken = true
		}
	}
	_ = st.CloseSend()
	select {
	case <-recvDone:
	case <-ctx.Done():
		s.status.Add("stream_unanswered", 1)
	}
}

func (s *streamSender) userOf(k int64) string {
	return fmt.Sprintf("%s%d", s.f.userPrefix, k%int64(s.f.users))
}
