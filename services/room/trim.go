package main

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// A burst of logins leaves garbage (AUTH decoding, register and saver
// calls) that the collector frees but the runtime keeps mapped: its
// scavenger only returns memory above ≈1.1× the heap goal, and with GOGC
// 100 the goal is twice the live heap (-gc-percent lowers it:
// gcpolicy.go), so after a burst the room's RSS can
// stay near 2× what its idle connections use (measured: 3.5 KB RSS for
// 1.9 KB of heap per connection at 18,000). Once new connections stop for
// a while, the room hands that memory back in one go.
const (
	// trimCheck is how often the room looks; a burst counts as over once
	// no connection has been opened for a whole trimCheck.
	trimCheck = 2 * time.Second
	// trimMinFree is the least free-but-mapped heap worth a trim (which
	// costs one full collection).
	trimMinFree = 4 << 20
	// trimFollowUp is how long after a burst the room trims again: the
	// logins' tail (catch-ups retried, register puts and pulls landing)
	// keeps making garbage for seconds after the last connect, and the
	// collection that frees it leaves it mapped. trimRepeat spaces those
	// trims, so a burst costs at most trimFollowUp/trimRepeat more full
	// collections; a room without new connections never trims.
	trimFollowUp = 30 * time.Second
	trimRepeat   = 6 * time.Second
)

// trimLoop returns free heap to the OS after each burst of new
// connections (at its end, then during trimFollowUp), until the room's
// life ends.
func (r *room) trimLoop() {
	t := time.NewTicker(trimCheck)
	defer t.Stop()
	last := r.nextID.Load()
	burst := false
	var quietSince, lastTrim time.Time
	for {
		var now time.Time
		select {
		case <-r.life.Done():
			return
		case now = <-t.C:
		}
		if n := r.nextID.Load(); n != last {
			last, burst = n, true
			continue
		}
		if burst {
			burst, quietSince, lastTrim = false, now, time.Time{}
		}
		if quietSince.IsZero() || now.Sub(quietSince) > trimFollowUp || now.Sub(lastTrim) < trimRepeat {
			continue
		}
		if free := trimmable(); free >= trimMinFree {
			lastTrim = now
			start := time.Now()
			debug.FreeOSMemory()
			r.log.Debug("room: returned free heap to the OS after a connect burst",
				"free_bytes", free, "took", time.Since(start))
		}
	}
}

// trimmable estimates what a trim would return: heap free but still
// mapped, plus the garbage not collected yet (objects beyond the live heap
// of the last cycle), which the trim's collection frees too. Counting only
// the first missed most bursts: right after one the garbage is still
// uncollected, and the next regular cycle frees it into memory the
// scavenger gives back slowly (RSS per idle connection then varied by
// ≈700 B from run to run).
func trimmable() uint64 {
	samples := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	rtmetrics.Read(samples)
	var v [3]uint64
	for i, s := range samples {
		if s.Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		v[i] = s.Value.Uint64()
	}
	free, objects, live := v[0], v[1], v[2]
	if objects > live {
		free += objects - live
	}
	return free
}
