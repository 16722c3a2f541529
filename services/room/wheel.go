package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// Wheel sizing: the tick bounds how late a deadline can fire; the slot
// count bounds how often a long deadline is re-examined before it is due.
const (
	minWheelTick = 100 * time.Millisecond
	maxWheelTick = time.Second
	// wheelTicksPerHeartbeat: a heartbeat period spans this many ticks.
	wheelTicksPerHeartbeat = 10
	maxWheelSlots          = 4096
)

// wheelTick picks the tick for a heartbeat period.
func wheelTick(heartbeat time.Duration) time.Duration {
	t := heartbeat / wheelTicksPerHeartbeat
	return min(max(t, minWheelTick), maxWheelTick)
}

// wheelTimer is one deadline in a timingWheel, embedded by value in the
// object it guards, so scheduling allocates nothing. Touch moves the deadline
// with one atomic store; the wheel notices lazily when the old slot comes
// round, which keeps the per-frame cost of liveness tracking tiny.
type wheelTimer[T any] struct {
	deadline atomic.Int64 // monoNanos: immune to wall-clock steps
	val      T

	// Guarded by the wheel's mutex.
	scheduled  bool
	slot       int32
	prev, next *wheelTimer[T]
}

// Touch moves the deadline to now+d.
func (t *wheelTimer[T]) Touch(d time.Duration) { t.TouchAt(monoNanos(time.Now()), d) }

// TouchAt is Touch with now (monoNanos) already read, so a frame's
// handling reads the clock once for the rate limit and the deadline.
func (t *wheelTimer[T]) TouchAt(now int64, d time.Duration) {
	t.deadline.Store(now + int64(d))
}

// timingWheel is one hashed wheel for every connection's deadline (auth
// and heartbeat), instead of a runtime timer per connection.
type timingWheel[T any] struct {
	tick    time.Duration
	expired func(T)

	mu    sync.Mutex
	slots []*wheelTimer[T] // heads of intrusive doubly-linked lists
	pos   int
	count int

	stop chan struct{}
	done chan struct{}
}

// newTimingWheel returns a wheel that can hold deadlines up to span ahead in
// one revolution (longer ones are revisited once per revolution). expired is
// called, outside the wheel's lock, for every timer whose deadline passed; it
// must not block.
func newTimingWheel[T any](tick, span time.Duration, expired func(T)) *timingWheel[T] {
	n := int(span/tick) + 2
	n = min(max(n, 8), maxWheelSlots)
	return &timingWheel[T]{
		tick: tick, expired: expired, slots: make([]*wheelTimer[T], n),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Start runs the ticker until Stop.
func (w *timingWheel[T]) Start() {
	go func() {
		defer close(w.done)
		tk := time.NewTicker(w.tick)
		defer tk.Stop()
		for {
			select {
			case <-w.stop:
				return
			case now := <-tk.C:
				w.Advance(now)
			}
		}
	}()
}

// Stop ends the ticker; timers still scheduled never fire.
func (w *timingWheel[T]) Stop() {
	close(w.stop)
	<-w.done
}

// Len returns the number of scheduled timers.
func (w *timingWheel[T]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// Add schedules t to fire d from now with value v.
func (w *timingWheel[T]) Add(t *wheelTimer[T], v T, d time.Duration) {
	now := time.Now()
	t.deadline.Store(monoNanos(now.Add(d)))
	w.mu.Lock()
	t.val = v
	w.unlinkLocked(t)
	w.insertLocked(t, monoNanos(now))
	w.mu.Unlock()
}

// Remove unschedules t; it is a no-op when t is not scheduled.
func (w *timingWheel[T]) Remove(t *wheelTimer[T]) {
	w.mu.Lock()
	w.unlinkLocked(t)
	w.mu.Unlock()
}

// slotFor returns the slot a deadline belongs to: the slot that comes round
// first at or after it, clamped to one revolution ahead.
func (w *timingWheel[T]) slotFor(deadline, now int64) int {
	ahead := int((deadline - now + int64(w.tick) - 1) / int64(w.tick))
	ahead = min(max(ahead, 1), len(w.slots)-1)
	return (w.pos + ahead) % len(w.slots)
}

func (w *timingWheel[T]) insertLocked(t *wheelTimer[T], now int64) {
	s := w.slotFor(t.deadline.Load(), now)
	t.slot, t.scheduled = int32(s), true
	t.prev = nil
	t.next = w.slots[s]
	if t.next != nil {
		t.next.prev = t
	}
	w.slots[s] = t
	w.count++
}

func (w *timingWheel[T]) unlinkLocked(t *wheelTimer[T]) {
	if !t.scheduled {
		return
	}
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		w.slots[t.slot] = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	}
	t.prev, t.next, t.scheduled = nil, nil, false
	w.count--
}

// Advance moves the wheel one slot and fires what is due there; timers
// touched since they were placed go to the slot of their new deadline.
// Exported to the ticker and to tests.
func (w *timingWheel[T]) Advance(now time.Time) {
	nowNs := monoNanos(now)
	var due []T
	w.mu.Lock()
	w.pos = (w.pos + 1) % len(w.slots)
	t := w.slots[w.pos]
	w.slots[w.pos] = nil
	for t != nil {
		next := t.next
		t.prev, t.next, t.scheduled = nil, nil, false
		w.count--
		if t.deadline.Load() <= nowNs {
			due = append(due, t.val)
		} else {
			w.insertLocked(t, nowNs)
		}
		t = next
	}
	w.mu.Unlock()
	for _, v := range due {
		w.expired(v)
	}
}
