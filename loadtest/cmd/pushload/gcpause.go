package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxGCLogBytes bounds how much of a room's log one window reads.
const maxGCLogBytes = 256 << 20

// The room runs with GODEBUG=gctrace=1, which prints one line per GC:
//
//	gc 12 @3.456s 1%: 0.021+1.8+0.032 ms clock, 0.08+0.5/1.2/0+0.13 ms cpu, ...
//
// The first and last terms of the wall-clock triple are the two
// stop-the-world phases (sweep termination, mark termination); their sum
// is the cycle's pause, what runtime.MemStats.PauseNs records. Reading
// every cycle gives exact percentiles, which the five quantiles of
// go_gc_duration_seconds cannot.

// gcPause parses one gctrace line; ok is false for any other line.
func gcPause(line string) (time.Duration, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	_, rest, found := strings.Cut(line, ": ")
	if !found {
		return 0, false
	}
	clock, _, found := strings.Cut(rest, " ms clock")
	if !found {
		return 0, false
	}
	terms := strings.Split(clock, "+")
	if len(terms) != 3 {
		return 0, false
	}
	var total float64
	for _, i := range []int{0, 2} {
		v, err := strconv.ParseFloat(terms[i], 64)
		if err != nil || v < 0 {
			return 0, false
		}
		total += v
	}
	// Rounded: 0.021 ms is not exact in binary floating point.
	return time.Duration(math.Round(total * float64(time.Millisecond))), true
}

// logOffset is the current size of a log, the start of a window.
func logOffset(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// gcPauses reads the GC pauses logged after offset.
func gcPauses(path string, offset int64) (*hist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gc pauses: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("gc pauses: %w", err)
	}
	return parseGCPauses(io.LimitReader(f, maxGCLogBytes))
}

func parseGCPauses(r io.Reader) (*hist, error) {
	h := newHist()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if d, ok := gcPause(sc.Text()); ok {
			h.Record(d)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gc pauses: %w", err)
	}
	return h, nil
}

// summary reduces pauses to the result's p99 and max.
func (l *hist) gcSummary() GCPauseMS {
	s := l.Summary()
	return GCPauseMS{Count: s.Count, P99: s.P99, Max: s.Max}
}
