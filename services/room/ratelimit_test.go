package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// take calls allow n times at now and returns how many were admitted.
func take(r frameRate, l *frameLimiter, now int64, n int) int {
	ok := 0
	for i := 0; i < n; i++ {
		if r.allow(l, now) {
			ok++
		}
	}
	return ok
}

func TestFrameRateBurstThenRefill(t *testing.T) {
	r := newFrameRate(10, 5) // a token every 100 ms, bucket of 5
	var l frameLimiter
	now := monoNanos(time.Now())
	if got := take(r, &l, now, 50); got != 5 {
		t.Fatalf("a full bucket admitted %d of 50 back-to-back frames, want the burst of 5", got)
	}
	// Refused frames take nothing: one interval later exactly one more fits,
	// however many were refused meanwhile.
	if got := take(r, &l, now+int64(50*time.Millisecond), 20); got != 0 {
		t.Fatalf("half an interval later %d frames admitted, want 0", got)
	}
	if got := take(r, &l, now+int64(100*time.Millisecond), 20); got != 1 {
		t.Fatalf("one interval later %d frames admitted, want 1", got)
	}
	// A long idle period refills to the burst, never beyond it.
	later := now + int64(time.Hour)
	if got := take(r, &l, later, 50); got != 5 {
		t.Fatalf("after an idle hour %d frames admitted, want the burst of 5", got)
	}
}

func TestFrameRateSustained(t *testing.T) {
	r := newFrameRate(100, 3)
	var l frameLimiter
	start := monoNanos(time.Now())
	// Exactly at the rate, for a simulated minute: never refused.
	for i := 0; i < 6000; i++ {
		if !r.allow(&l, start+int64(i)*int64(10*time.Millisecond)) {
			t.Fatalf("frame %d at exactly 100/s refused", i)
		}
	}
	// Twice the rate for a simulated 10 s: about half get through (the
	// average bound holds), and the bucket was already empty.
	var l2 frameLimiter
	ok := 0
	for i := 0; i < 2000; i++ {
		if r.allow(&l2, start+int64(i)*int64(5*time.Millisecond)) {
			ok++
		}
	}
	if ok < 1000 || ok > 1000+3 {
		t.Fatalf("at 200/s for 10 s, %d of 2000 frames admitted; want 1000..1003 (rate x time + burst)", ok)
	}
}

func TestFrameRateDisabled(t *testing.T) {
	for _, r := range []frameRate{newFrameRate(0, 100), newFrameRate(-1, 100), newFrameRate(100, 0)} {
		var l frameLimiter
		if got := take(r, &l, 0, 100000); got != 100000 {
			t.Fatalf("disabled limit admitted %d of 100000", got)
		}
	}
}

func TestFrameRateFlags(t *testing.T) {
	parse := func(args ...string) (config, error) {
		var c config
		fs := flag.NewFlagSet("room", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.bind(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c, c.validate()
	}
	c, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if c.maxFrameRate != defaultMaxFrameRate || c.frameBurst != defaultFrameBurst {
		t.Fatalf("defaults %d/s burst %d", c.maxFrameRate, c.frameBurst)
	}
	// A non-reading flooder must hit the rate limit before its replies can
	// fill the send queue (RATE_LIMITED, not SLOW_CONSUMER).
	if defaultFrameBurst >= defaultSendQueue {
		t.Fatalf("default burst %d not below the default send queue %d", defaultFrameBurst, defaultSendQueue)
	}
	if c.frameRate().interval != int64(10*time.Millisecond) {
		t.Fatalf("default interval %v", time.Duration(c.frameRate().interval))
	}
	if c, err := parse("-max-frame-rate", "0", "-frame-burst", "0"); err != nil || c.frameRate().interval != 0 {
		t.Fatalf("-max-frame-rate 0 should disable the limit: %v %+v", err, c.frameRate())
	}
	for _, args := range [][]string{{"-max-frame-rate", "-1"}, {"-frame-burst", "0"}, {"-max-frame-rate", "2000000"}} {
		if _, err := parse(args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Fatalf("%v: error %v, want one naming %s", args, err, args[0])
		}
	}
}

// A client that floods PINGs without reading is closed with RATE_LIMITED
// after its burst; every PING within the burst was answered; a neighbour
// on the same room is unaffected.
func TestFrameFloodIsRateLimited(t *testing.T) { forEachEngine(t, testFrameFloodIsRateLimited) }

func testFrameFloodIsRateLimited(t *testing.T, engine string) {
	const burst = 20
	e := startEnv(t, engine, func(c *config) { c.maxFrameRate, c.frameBurst, c.sendQueue = 50, burst, 64 })
	good := e.dial()
	good.auth(e.token("appA", testSecretA, "polite", "", time.Hour), "")

	flood := e.dial()
	flood.auth(e.token("appA", testSecretA, "flooder", "", time.Hour), "")
	var pings []byte
	for i := 0; i < 5000; i++ {
		pings = protocol.AppendFrame(pings, protocol.OpPing, 0, uint32(i+1), nil)
	}
	go func() { _, _ = flood.nc.Write(pings) }() // fails once the room closes; that is expected
	pongs := 0
	for {
		f, m := flood.read()
		if f.Op == protocol.OpPong {
			pongs++
			continue
		}
		if f.Op != protocol.OpError || protocol.Code(m.(*clientpb.Error).GetCode()) != protocol.CodeRateLimited {
			t.Fatalf("got %s %v after %d PONGs, want ERROR RATE_LIMITED", f.Op, m, pongs)
		}
		break
	}
	flood.expectClosed()
	// AUTH took one token; the rest of the burst was answered, and the
	// refill during the flood (50/s) adds at most a few.
	if pongs < burst-1 || pongs > burst+5 {
		t.Fatalf("%d PONGs before RATE_LIMITED, want about %d", pongs, burst-1)
	}
	good.ping(1)
	// A steady client at the limit's rate is never cut off.
	for i := uint32(2); i < 30; i++ {
		good.ping(i)
		time.Sleep(25 * time.Millisecond)
	}
}

// Before AUTH a body above maxAuthBody is refused from its header; after
// AUTH the full -max-frame applies again.
func TestPreAuthBodyLimit(t *testing.T) { forEachEngine(t, testPreAuthBodyLimit) }

func testPreAuthBodyLimit(t *testing.T, engine string) {
	e := startEnv(t, engine, func(c *config) { c.maxFrame = protocol.DefaultMaxBodySize })
	big := e.dial()
	big.writeRaw(protocol.AppendFrame(nil, protocol.OpAuth, 0, 1, make([]byte, maxAuthBody+1)))
	big.expectError(protocol.CodeFrameTooLarge)

	c := e.dial()
	c.auth(e.token("appA", testSecretA, "bulk", "", time.Hour), "")
	ids := make([]uint64, 3000)
	for i := range ids {
		ids[i] = 1 << 60 >> (i % 50)
	}
	ack, err := protocol.AppendMessage(nil, protocol.OpAck, 2, &clientpb.Ack{Ids: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(ack)-protocol.HeaderSize <= maxAuthBody {
		t.Fatalf("test ACK body is %d bytes, want more than %d", len(ack)-protocol.HeaderSize, maxAuthBody)
	}
	c.writeRaw(ack)
	c.ping(3)
}

// The largest AUTH a valid client can send fits maxAuthBody.
func TestMaxAuthBodyFitsLargestAuth(t *testing.T) {
	a := &clientpb.Auth{
		Token:      strings.Repeat("t", token.MaxTokenLen),
		Device:     strings.Repeat("d", token.MaxDeviceLen),
		Platform:   strings.Repeat("p", maxPlatformLen),
		SdkVersion: strings.Repeat("v", 256),
		// Reserved field, largest varint.
		LastBroadcastSeq: ^uint64(0),
	}
	if n := proto.Size(a); n > maxAuthBody {
		t.Fatalf("largest valid AUTH body is %d bytes, above maxAuthBody %d", n, maxAuthBody)
	}
}

// BenchmarkFrameRateAllow is the per-frame cost of the limit, clock read
// included.
func BenchmarkFrameRateAllow(b *testing.B) {
	r := newFrameRate(1e9, 1<<30) // never refuses, so every call takes the full path
	var l frameLimiter
	b.ReportAllocs()
	for b.Loop() {
		if !r.allow(&l, monoNanos(time.Now())) {
			b.Fatal("refused")
		}
	}
}
