package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// laterQueue runs one-shot callbacks after a delay, all on one goroutine:
// the room's per-connection waits (AUTH_REPLY's bound, retries of a failed
// pending pull or catch-up read, a closing socket's linger) go here rather
// than to a runtime timer each. A runtime timer costs ≈110 B while it waits
// and a goroutine when it fires; after a burst of logins on a loaded box
// thousands of those goroutines are runnable at once, and the runtime keeps
// every goroutine it ever made (≈480 B each) for the life of the process.
// An entry here is 16 B in a slot slice, and firing it starts nothing.
//
// Callbacks run in deadline order per slot, outside the lock, and must not
// block: they submit to a pool or queue a frame.
type laterQueue struct {
	tick time.Duration

	mu    sync.Mutex
	slots [][]laterEntry
	pos   int
	// base is the monoNanos time slot pos stands for.
	base  int64
	count int

	// idle: the ticker is parked because nothing waits (under mu). The
	// queue is empty most of the time, and a 10 ms ticker that runs anyway
	// is 100 thread wake-ups a second per queue for nothing.
	idle bool
	// wake unparks the ticker; After sends at most once per parking.
	wake chan struct{}

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

type laterEntry struct {
	at int64 // monoNanos
	f  func()
}

// Sizing of the room's laterQueue: a 10 ms tick keeps AUTH_REPLY's bound
// (-auth-reply-wait, 250 ms by default) and the retry pauses (1–30 s)
// accurate enough; 4096 slots span 41 s, so the longest retry waits one
// revolution and anything longer is looked at once per revolution.
const (
	laterTick  = 10 * time.Millisecond
	laterSlots = 4096
	// laterKeepCap: a slot slice grown past this by a burst is dropped
	// once fired, so a quiet queue holds no burst-sized arrays.
	laterKeepCap = 64
)

// newLaterQueue returns a stopped queue; Start runs it.
func newLaterQueue(tick time.Duration, slots int) *laterQueue {
	return &laterQueue{
		tick: tick, slots: make([][]laterEntry, slots), base: monoNanos(time.Now()),
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
}

// Start runs the ticker until Stop.
func (q *laterQueue) Start() {
	if q.started.Swap(true) {
		return
	}
	go func() {
		defer close(q.done)
		tk := time.NewTicker(q.tick)
		defer tk.Stop()
		for {
			select {
			case <-q.stop:
				return
			case now := <-tk.C:
				q.advance(monoNanos(now))
			}
			if !q.park() {
				continue
			}
			tk.Stop()
			select {
			case <-q.stop:
				return
			case <-q.wake:
			}
			tk.Reset(q.tick)
		}
	}()
}

// park marks the ticker idle when nothing waits; the caller then sleeps
// until After wakes it.
func (q *laterQueue) park() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count > 0 {
		return false
	}
	q.idle = true
	return true
}

// Stop ends the ticker; callbacks still waiting never run. It may be
// called more than once, and on a queue never started.
func (q *laterQueue) Stop() {
	q.stopOnce.Do(func() { close(q.stop) })
	if q.started.Load() {
		<-q.done
	}
}

// Len returns the number of waiting callbacks.
func (q *laterQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

// After runs f once, d from now (at the first tick at or after it).
func (q *laterQueue) After(d time.Duration, f func()) {
	now := monoNanos(time.Now())
	q.mu.Lock()
	if q.idle {
		// Nothing waits, so the wheel can jump to now instead of the
		// ticker walking every slot it slept through.
		q.idle = false
		q.base = now
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	q.insertLocked(laterEntry{at: now + int64(d), f: f})
	q.mu.Unlock()
}

func (q *laterQueue) insertLocked(e laterEntry) {
	ahead := int((e.at - q.base + int64(q.tick) - 1) / int64(q.tick))
	ahead = min(max(ahead, 1), len(q.slots)-1)
	i := (q.pos + ahead) % len(q.slots)
	q.slots[i] = append(q.slots[i], e)
	q.count++
}

// advance fires every slot whose time has come by now (monoNanos).
func (q *laterQueue) advance(now int64) {
	var due []laterEntry
	q.mu.Lock()
	for q.base+int64(q.tick) <= now {
		q.pos = (q.pos + 1) % len(q.slots)
		q.base += int64(q.tick)
		slot := q.slots[q.pos]
		if len(slot) == 0 {
			continue
		}
		if cap(slot) > laterKeepCap {
			q.slots[q.pos] = nil
		} else {
			q.slots[q.pos] = slot[:0]
		}
		for _, e := range slot {
			q.count--
			if e.at <= now {
				due = append(due, e)
			} else {
				// Beyond one revolution: wait for the next.
				q.insertLocked(e)
			}
		}
		clear(slot)
	}
	q.mu.Unlock()
	for _, e := range due {
		e.f()
	}
}
