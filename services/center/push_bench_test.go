package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkPushHTTP runs QoS 1 unicast pushes through center's HTTP handler
// (ServeHTTP called directly: no client, no socket, no net/http request
// parsing), 64 at a time, against the real saver; register and room are
// the in-process fakes of delivery_test.go, every user online in one room.
// Besides ns/op (wall time per push at that concurrency) it reports
// cpu-µs/push: this process's user+system CPU per push, which holds center
// and the two fakes but not saver. "unlimited" is an app without a push
// limit (the default); "limited" has one, so every push also takes a
// GCRA check in a private redis-server, concurrent checks sharing calls
// (ratelimit_batch.go; checks/limit-call is how many per call):
//
//	go test -run '^$' -bench PushHTTP -benchtime 20000x -benchmem ./services/center
func BenchmarkPushHTTP(b *testing.B) {
	e, _ := realSaverEnv(b)
	b.Cleanup(func() { _ = e.srv.batch.close(context.Background()) })
	p := &peers{}
	rm := &benchRoom{}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	addr := e.serveGRPC(discovery.ServiceRoom, "room-1", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, rm) })
	const users = 100
	bodies := make([]string, users)
	for i := range users {
		u := fmt.Sprintf("u%d", i)
		p.sessions = append(p.sessions, &internalpb.Session{App: "app1", User: u, Device: "d", RoomAddr: addr, ConnId: uint64(1000 + i)})
		bodies[i] = `{"user":"` + u + `","payload":"aGVsbG8gd29ybGQsIGEgc21hbGwgcHVzaCBwYXlsb2Fk","qos":1}`
	}
	h := e.srv.Handler()
	push := func(b testing.TB, i int) {
		// Not httptest.NewRequest: it parses a request from text, 4 KiB
		// of bufio per push that center never pays.
		req, err := http.NewRequest(http.MethodPost, "http://center/v1/push", strings.NewReader(bodies[i%users]))
		if err != nil {
			b.Error(err)
			return
		}
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Errorf("push: %d %s", w.Code, w.Body)
		}
	}
	// Warm up connections to register and room and the batchers.
	for i := range users {
		push(b, i)
	}
	b.Run("unlimited", func(b *testing.B) { benchPushes(b, e, push) })
	e.srv.useRedis(testRedis(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := appconfig.Update(ctx, e.cli, e.cluster, "app1", func(a *appconfig.App) error {
		a.PushRate = appconfig.MaxLimit
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "the push limit to reach center", func() bool {
		a, _ := e.srv.apps.Get("app1")
		return a.PushRate == appconfig.MaxLimit
	})
	b.Run("limited", func(b *testing.B) { benchPushes(b, e, push) })
}

// benchPushes runs b.N pushes from 64 goroutines and reports the metrics
// BenchmarkPushHTTP describes.
func benchPushes(b *testing.B, e *testEnv, push func(testing.TB, int)) {
	const callers = 64
	b.SetParallelism(max(1, callers/2))
	b.ReportAllocs()
	stores0, deliveries0 := histCount(b, e.srv.m.storeBatch.batch), histCount(b, e.srv.m.deliveryBatch)
	limitCalls0, limitChecks0 := histStats(b, e.srv.m.rateLimitBatch)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			push(b, i)
			i++
		}
	})
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/push")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
	// Messages per Saver.Store call and per delivery batch: what the
	// batchers' fixed costs are shared over.
	b.ReportMetric(float64(b.N)/float64(max(1, histCount(b, e.srv.m.storeBatch.batch)-stores0)), "msgs/store")
	b.ReportMetric(float64(b.N)/float64(max(1, histCount(b, e.srv.m.deliveryBatch)-deliveries0)), "msgs/delivery")
	// Rate limit checks per Redis call (ratelimit_batch.go), when limited.
	if limitCalls, limitChecks := histStats(b, e.srv.m.rateLimitBatch); limitCalls > limitCalls0 {
		b.ReportMetric((limitChecks-limitChecks0)/float64(limitCalls-limitCalls0), "checks/limit-call")
	}
}

// histCount is how many observations h holds.
func histCount(b *testing.B, h prometheus.Histogram) uint64 {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRoom takes every push and keeps nothing, so a long run does not
// grow the heap the way room's record of pushes would.
type benchRoom struct {
	internalpb.UnimplementedRoomServer
}

func (benchRoom) Push(_ context.Context, req *internalpb.RoomPushRequest) (*internalpb.RoomPushReply, error) {
	return benchRoomReply(req), nil
}

func (benchRoom) PushBatch(_ context.Context, req *internalpb.RoomPushBatchRequest) (*internalpb.RoomPushBatchReply, error) {
	out := &internalpb.RoomPushBatchReply{Replies: make([]*internalpb.RoomPushReply, len(req.GetPushes()))}
	for i, p := range req.GetPushes() {
		out.Replies[i] = benchRoomReply(p)
	}
	return out, nil
}

func benchRoomReply(req *internalpb.RoomPushRequest) *internalpb.RoomPushReply {
	out := &internalpb.RoomPushReply{Results: make([]*internalpb.TargetResult, len(req.GetTargets()))}
	for i, t := range req.GetTargets() {
		out.Results[i] = &internalpb.TargetResult{ConnId: t.GetConnId(), Code: internalpb.ResultCode_RESULT_CODE_OK}
	}
	return out
}
