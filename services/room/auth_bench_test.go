package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// The room's CPU per login, without sockets: a connection opens, its AUTH
// frame is decoded and handled with the real token verifier, register's
// and saver's batchers run with in-process peers that answer at once, and
// a login counts when its AUTH_REPLY is queued. What is left out is the
// engine's syscalls and the peers' gRPC encoding (counted as calls/op).

// benchAuthSecret is the bench app's HS256 secret.
const benchAuthSecret = "bench-secret-0123456789abcdef0123"

// benchPeers answer register and saver at once and count the calls a
// login makes.
type benchPeers struct {
	internalpb.RegisterClient
	internalpb.SaverClient
	calls atomic.Int64
}

func (p *benchPeers) Put(context.Context, *internalpb.PutSessionsRequest, ...grpc.CallOption) (*internalpb.PutSessionsReply, error) {
	p.calls.Add(1)
	return &internalpb.PutSessionsReply{}, nil
}

func (p *benchPeers) Delete(context.Context, *internalpb.DeleteSessionsRequest, ...grpc.CallOption) (*internalpb.DeleteSessionsReply, error) {
	return &internalpb.DeleteSessionsReply{}, nil
}

func (p *benchPeers) Refresh(context.Context, *internalpb.RefreshSessionsRequest, ...grpc.CallOption) (*internalpb.RefreshSessionsReply, error) {
	return &internalpb.RefreshSessionsReply{}, nil
}

func (p *benchPeers) Epoch(context.Context, *internalpb.EpochRequest, ...grpc.CallOption) (*internalpb.EpochReply, error) {
	return &internalpb.EpochReply{}, nil
}

func (p *benchPeers) PendingBatch(_ context.Context, req *internalpb.PendingBatchRequest, _ ...grpc.CallOption) (*internalpb.PendingBatchReply, error) {
	p.calls.Add(1)
	return &internalpb.PendingBatchReply{Replies: make([]*internalpb.PendingBatchEntry, len(req.GetRequests()))}, nil
}

func (p *benchPeers) CatchUpBatch(_ context.Context, req *internalpb.CatchUpBatchRequest, _ ...grpc.CallOption) (*internalpb.CatchUpBatchReply, error) {
	p.calls.Add(1)
	rep := &internalpb.CatchUpBatchReply{Entries: make([]*internalpb.CatchUpBatchEntry, len(req.GetRequests()))}
	for i := range rep.Entries {
		rep.Entries[i] = &internalpb.CatchUpBatchEntry{}
	}
	return rep, nil
}

func (p *benchPeers) CatchUp(context.Context, *internalpb.CatchUpRequest, ...grpc.CallOption) (*internalpb.CatchUpReply, error) {
	p.calls.Add(1)
	return &internalpb.CatchUpReply{}, nil
}

// benchConn is a connection whose frames are counted, not written.
type benchConn struct {
	replies *atomic.Int64
	mu      sync.Mutex
	closed  bool
}

func (c *benchConn) Send(frame []byte) error {
	if protocol.Op(frame[3]) == protocol.OpAuthReply {
		c.replies.Add(1)
	}
	return nil
}

func (c *benchConn) CloseWith([]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.closed
	c.closed = true
	return !was
}

func (c *benchConn) Abort()                     {}
func (c *benchConn) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:40000") }

// benchRoom is a room with the production flag defaults and benchPeers.
func benchRoom(b *testing.B, peers *benchPeers) *room {
	b.Helper()
	var cfg config
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	cfg.bind(fs)
	if err := fs.Parse([]string{"-instance", "room-bench-1", "-max-conns", "10000000", "-max-preauth", "10000000", "-tcp", "127.0.0.1:0", "-grpc", "127.0.0.1:0"}); err != nil {
		b.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		b.Fatal(err)
	}
	r, err := newRoom(cfg, roomDeps{
		log: slog.New(slog.NewJSONHandler(io.Discard, nil)), metrics: newMetrics(prometheus.NewRegistry()),
		secretOf: func(app string) ([]byte, bool) {
			if app == benchApp {
				return []byte(benchAuthSecret), true
			}
			return nil, false
		},
		register: peers, saver: peers,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.sessions.Close(ctx)
		_ = r.reports.Close(ctx)
		r.close()
	})
	return r
}

// benchApp is the app every bench login names.
const benchApp = "bench"

// benchAuthFrames mints n AUTH frames of distinct users, as a client
// sends them.
func benchAuthFrames(b *testing.B, n int) [][]byte {
	b.Helper()
	frames := make([][]byte, n)
	exp := time.Now().Add(time.Hour)
	for i := range frames {
		tok, err := token.Mint([]byte(benchAuthSecret), token.Claims{App: benchApp, User: "user-" + strconv.Itoa(i), Expiry: exp})
		if err != nil {
			b.Fatal(err)
		}
		frames[i], err = protocol.AppendMessage(nil, protocol.OpAuth, 1, &clientpb.Auth{
			Token: tok, Device: "load", Platform: "pushload", SdkVersion: "pushload/1"})
		if err != nil {
			b.Fatal(err)
		}
	}
	return frames
}

// BenchmarkLogin is one connection's accept and AUTH up to its AUTH_REPLY
// on the room's side: OnOpen, the frame's decode, OnFrame (token, session,
// hub, register put, pending pull, broadcast catch-up) and the reply. The
// clock stops when every AUTH_REPLY is queued, so the batchers' flushes
// and the peers' answers count. ns/op is wall time and includes the
// batchers' flush windows; cpu-ns/op is the process's CPU (every
// goroutine, GC included) per login, the figure a room's core pays.
func BenchmarkLogin(b *testing.B) {
	peers := &benchPeers{}
	r := benchRoom(b, peers)
	// Every login a distinct user, all held open, as in the connect bench.
	frames := benchAuthFrames(b, b.N)
	var replies atomic.Int64
	hs := make([]handle, 0, b.N)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := r.OnOpen(&benchConn{replies: &replies})
		f, _, err := protocol.Decode(frames[i], maxAuthBody)
		if err != nil {
			b.Fatal(err)
		}
		r.OnFrame(h, f)
		hs = append(hs, h)
	}
	waitReplies(b, &replies, int64(b.N))
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(peers.calls.Load())/float64(b.N), "peercalls/op")
	for _, h := range hs {
		r.OnClose(h)
	}
}

// processCPU is the CPU time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitReplies waits until want AUTH_REPLYs were queued.
func waitReplies(b *testing.B, replies *atomic.Int64, want int64) {
	deadline := time.Now().Add(30 * time.Second)
	for replies.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d AUTH_REPLYs after 30s, want %d", replies.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
