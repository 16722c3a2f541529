package main

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchWheelEntries is the scale of the wheel benchmarks: a busy room's
// connection count, all sharing one wheel.
const benchWheelEntries = 100_000

// benchWheel returns a wheel sized like a room's with the default 30s
// heartbeat and 3 missed beats, holding benchWheelEntries timers.
func benchWheel(b *testing.B) (*timingWheel[int], []wheelTimer[int]) {
	b.Helper()
	hb := 30 * time.Second
	w := newTimingWheel(wheelTick(hb), 3*hb, func(int) {})
	timers := make([]wheelTimer[int], benchWheelEntries)
	for i := range timers {
		w.Add(&timers[i], i, time.Duration(1+i%90)*time.Second)
	}
	return w, timers
}

// BenchmarkWheelTouch is the per-frame cost of liveness tracking.
func BenchmarkWheelTouch(b *testing.B) {
	_, timers := benchWheel(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		timers[i].Touch(90 * time.Second)
		i = (i + 1) % len(timers)
	}
}

// BenchmarkFrameLimitAndTouch is what OnFrame pays per inbound frame for
// the rate limit and liveness together: one clock read shared by both.
func BenchmarkFrameLimitAndTouch(b *testing.B) {
	_, timers := benchWheel(b)
	r := newFrameRate(1e9, 1<<30)
	var l frameLimiter
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		now := monoNanos(time.Now())
		if !r.allow(&l, now) {
			b.Fatal("refused")
		}
		timers[i].TouchAt(now, 90*time.Second)
		i = (i + 1) % len(timers)
	}
}

func BenchmarkWheelTouchParallel(b *testing.B) {
	_, timers := benchWheel(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919)) % len(timers)
		for pb.Next() {
			timers[i].Touch(90 * time.Second)
			i = (i + 1) % len(timers)
		}
	})
}

// BenchmarkWheelAddRemove is a connection opening and closing in a wheel
// that already holds 100k others.
func BenchmarkWheelAddRemove(b *testing.B) {
	w, _ := benchWheel(b)
	var t wheelTimer[int]
	b.ReportAllocs()
	for b.Loop() {
		w.Add(&t, -1, 10*time.Second)
		w.Remove(&t)
	}
	if w.Len() != benchWheelEntries {
		b.Fatalf("Len = %d, want %d", w.Len(), benchWheelEntries)
	}
}

// BenchmarkWheelAdvance100k is one tick over 100k live, recently touched
// timers: the clock passed to Advance stands still, so every timer is
// revisited (re-slotted) as the wheel turns and none fires.
func BenchmarkWheelAdvance100k(b *testing.B) {
	w, timers := benchWheel(b)
	for i := range timers {
		timers[i].Touch(time.Hour)
	}
	now := time.Now()
	visited := 0
	b.ReportAllocs()
	for b.Loop() {
		before := w.slots[(w.pos+1)%len(w.slots)]
		for t := before; t != nil; t = t.next {
			visited++
		}
		w.Advance(now)
	}
	if w.Len() != benchWheelEntries {
		b.Fatalf("Len = %d after advancing, want %d (nothing may fire)", w.Len(), benchWheelEntries)
	}
	b.ReportMetric(float64(visited)/float64(b.N), "timers/tick")
}

type benchAck struct {
	app, user string
	id        uint64
}

// BenchmarkBatcherThroughput pushes items through one batcher as fast as
// its single flushing goroutine takes them: ns/op is the sustained cost of
// one ACK or session on its way to saver or register (flush itself free).
// A full queue makes Add shed; the producer then yields and retries, and
// the retries are reported.
func BenchmarkBatcherThroughput(b *testing.B) {
	var flushed atomic.Int64
	var shed int64
	bt := newBatcher(defaultBatchSize, defaultBatchDelay, defaultBatchQueue,
		func(items []benchAck) { flushed.Add(int64(len(items))) }, nil)
	v := benchAck{app: "bench", user: "u1", id: 1}
	b.ReportAllocs()
	for b.Loop() {
		for !bt.Add(v) {
			shed++
			runtime.Gosched()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bt.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if got := flushed.Load(); got != int64(b.N) {
		b.Fatalf("flushed %d, want %d", got, b.N)
	}
	b.ReportMetric(float64(shed)/float64(b.N), "retries/op")
}
