package main

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWheelFiresOnceAfterDeadline(t *testing.T) {
	var fired []int
	w := newTimingWheel(10*time.Millisecond, time.Second, func(v int) { fired = append(fired, v) })
	var a, b wheelTimer[int]
	w.Add(&a, 1, 50*time.Millisecond)
	w.Add(&b, 2, 200*time.Millisecond)
	start := time.Now()
	if w.Len() != 2 {
		t.Fatalf("Len = %d, want 2", w.Len())
	}
	// Ticks that end before the first deadline fire nothing.
	for i := 1; i <= 3; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if len(fired) != 0 {
		t.Fatalf("fired early: %v", fired)
	}
	for i := 4; i <= 10; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if len(fired) != 1 || fired[0] != 1 {
		t.Fatalf("after 100ms fired = %v, want [1]", fired)
	}
	for i := 11; i <= 30; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if len(fired) != 2 || fired[1] != 2 {
		t.Fatalf("after 300ms fired = %v, want [1 2]", fired)
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d after firing, want 0", w.Len())
	}
	// A whole extra revolution fires nothing more.
	for i := 31; i <= 250; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if len(fired) != 2 {
		t.Fatalf("fired again: %v", fired)
	}
}

func TestWheelTouchPostpones(t *testing.T) {
	var fired atomic.Int32
	w := newTimingWheel(10*time.Millisecond, time.Second, func(int) { fired.Add(1) })
	var a wheelTimer[int]
	w.Add(&a, 1, 30*time.Millisecond)
	start := time.Now()
	a.Touch(150 * time.Millisecond)
	for i := 1; i <= 10; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if fired.Load() != 0 {
		t.Fatal("touched timer fired at its old deadline")
	}
	if w.Len() != 1 {
		t.Fatalf("touched timer left the wheel: Len = %d", w.Len())
	}
	for i := 11; i <= 20; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if fired.Load() != 1 {
		t.Fatalf("fired %d times, want 1", fired.Load())
	}
}

func TestWheelRemove(t *testing.T) {
	var fired atomic.Int32
	w := newTimingWheel(10*time.Millisecond, time.Second, func(int) { fired.Add(1) })
	timers := make([]wheelTimer[int], 100)
	for i := range timers {
		w.Add(&timers[i], i, 20*time.Millisecond)
	}
	// Remove every other one, including list heads and tails of one slot.
	for i := 0; i < len(timers); i += 2 {
		w.Remove(&timers[i])
	}
	w.Remove(&timers[0]) // twice is a no-op
	if w.Len() != 50 {
		t.Fatalf("Len = %d, want 50", w.Len())
	}
	start := time.Now()
	for i := 1; i <= 10; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if fired.Load() != 50 {
		t.Fatalf("fired %d, want 50", fired.Load())
	}
}

func TestWheelDeadlineBeyondSpan(t *testing.T) {
	var fired atomic.Int32
	// 10 slots of 10ms: a 250ms deadline needs several revolutions.
	w := newTimingWheel(10*time.Millisecond, 80*time.Millisecond, func(int) { fired.Add(1) })
	var a wheelTimer[int]
	w.Add(&a, 1, 250*time.Millisecond)
	start := time.Now()
	for i := 1; i <= 24; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if fired.Load() != 0 {
		t.Fatal("fired before its deadline")
	}
	for i := 25; i <= 40; i++ {
		w.Advance(start.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if fired.Load() != 1 {
		t.Fatalf("fired %d, want 1", fired.Load())
	}
}

func TestWheelTickerConcurrent(t *testing.T) {
	var mu sync.Mutex
	got := map[int]time.Duration{}
	start := time.Now()
	w := newTimingWheel(10*time.Millisecond, time.Second, func(v int) {
		mu.Lock()
		got[v] = time.Since(start)
		mu.Unlock()
	})
	w.Start()
	defer w.Stop()
	timers := make([]wheelTimer[int], 200)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < len(timers); i += 4 {
				w.Add(&timers[i], i, 100*time.Millisecond)
				if i%10 == 0 {
					w.Remove(&timers[i])
				}
			}
		}(g)
	}
	wg.Wait()
	time.Sleep(400 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 180 {
		t.Fatalf("fired %d, want 180", len(got))
	}
	for v, at := range got {
		if v%10 == 0 {
			t.Fatalf("removed timer %d fired", v)
		}
		if at < 100*time.Millisecond {
			t.Fatalf("timer %d fired early at %v", v, at)
		}
	}
}

func TestWheelTick(t *testing.T) {
	for _, c := range []struct{ hb, want time.Duration }{
		{time.Second, 100 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{30 * time.Second, time.Second},
	} {
		if got := wheelTick(c.hb); got != c.want {
			t.Errorf("wheelTick(%v) = %v, want %v", c.hb, got, c.want)
		}
	}
}
