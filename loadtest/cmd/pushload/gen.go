package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Generator processes of the bench scenarios.
const (
	// genPerProc keeps every generator child well under the 20,000-fd
	// limit (its runtime, pipes and the dispatcher's HTTP connections need
	// some too).
	genPerProc = 15000
	// genHold bounds how long a child holds its connections if the bench
	// never releases it (it is killed with the bench otherwise).
	genHold = 20 * time.Minute
	// sampleEvery is the period of memory samples during a connect phase.
	sampleEvery = time.Second
	// genSources is how many loopback source addresses (127.0.1.1 …) the
	// children spread their dials over. From one address to one room, the
	// kernel has ~14k of its preferred (even) ephemeral ports; past them
	// every connect() walks all of them before trying an odd one, which
	// made __inet_check_established ≈ 45 % of a generator's CPU at 18,000
	// connections. Real clients come from many addresses.
	genSources = 16
)

// genSourceList is the -src value of the bench's children.
func genSourceList() string {
	srcs := make([]string, genSources)
	for i := range srcs {
		srcs[i] = "127.0.1." + strconv.Itoa(i+1)
	}
	return strings.Join(srcs, ",")
}

// genSpec describes connections to open from child processes.
type genSpec struct {
	bin        string // pushload binary to fork; "" for this one
	addrs      []string
	dispatcher string // optional: look every user's room up first
	secret     string
	prefix     string
	n          int
	conc       int
	connectTO  time.Duration
}

// generators are the children holding one scenario's connections.
type generators struct {
	spec     genSpec
	children []*child
}

// procsFor is how many children n connections need.
func procsFor(n int) int { return max((n+genPerProc-1)/genPerProc, 1) }

// startGenerators forks the children; each opens its share at once.
func startGenerators(s genSpec) (*generators, error) {
	self := s.bin
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("generators: cannot find own binary: %w", err)
		}
	}
	procs := procsFor(s.n)
	g := &generators{spec: s}
	offset := 0
	for i := 0; i < procs; i++ {
		n := s.n / procs
		if i < s.n%procs {
			n++
		}
		args := []string{"conns", "-child", "-addr", strings.Join(s.addrs, ","), "-app", benchApp,
			"-user-prefix", s.prefix, "-n", strconv.Itoa(n), "-user-offset", strconv.Itoa(offset),
			"-c", strconv.Itoa(max(s.conc/procs, 1)), "-connect-timeout", s.connectTO.String(),
			"-hold", genHold.String(), "-src", genSourceList()}
		if s.dispatcher != "" {
			args = append(args, "-dispatcher", s.dispatcher)
		}
		offset += n
		c, err := startChild(self, args, s.secret)
		if err != nil {
			g.release()
			return nil, err
		}
		g.children = append(g.children, c)
	}
	return g, nil
}

// Progress sums the children's last reports.
func (g *generators) Progress() (ok, failed int64) {
	for _, c := range g.children {
		ok += c.ok.Load()
		failed += c.failed.Load()
	}
	return ok, failed
}

// allReady is closed once every child finished its connect phase or
// died (a child's ready closes either way, so the waiter always ends).
func (g *generators) allReady() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for _, c := range g.children {
			<-c.ready
		}
		close(ch)
	}()
	return ch
}

// Ready says whether every child finished its connect phase (or died).
func (g *generators) Ready() bool {
	for _, c := range g.children {
		select {
		case <-c.ready:
		default:
			return false
		}
	}
	return true
}

// PIDs of the children, for memory accounting.
func (g *generators) PIDs() []int {
	out := make([]int, 0, len(g.children))
	for _, c := range g.children {
		if c.cmd.Process != nil {
			out = append(out, c.cmd.Process.Pid)
		}
	}
	return out
}

func (g *generators) release() {
	for _, c := range g.children {
		c.release()
	}
}

// genResult is the merged outcome of the children.
type genResult struct {
	Connected   int
	LiveAtEnd   int
	Start, End  time.Time
	Latency     *hist
	Failures    map[string]int64
	Drops       map[string]int64
	PingFailure int64
	// Broadcasts merges what the children saw, by broadcast id.
	Broadcasts map[uint64]*bcastTotal
}

// Errors counts connects that failed and connections lost while held.
func (r *genResult) Errors() (int64, map[string]int64) {
	kinds := map[string]int64{}
	var n int64
	for k, v := range r.Failures {
		kinds["connect_"+k] += v
		n += v
	}
	for k, v := range r.Drops {
		kinds["dropped_"+k] += v
		n += v
	}
	if r.PingFailure > 0 {
		kinds["ping_failed"] = r.PingFailure
		n += r.PingFailure
	}
	return n, kinds
}

// Rate is connects per second over the union of the connect phases.
func (r *genResult) Rate() float64 {
	if s := r.End.Sub(r.Start).Seconds(); s > 0 {
		return float64(r.Connected) / s
	}
	return 0
}

// collect releases the children and merges their results.
func (g *generators) collect() (*genResult, error) {
	g.release()
	res := &genResult{Latency: newHist(), Failures: map[string]int64{}, Drops: map[string]int64{}, Broadcasts: map[uint64]*bcastTotal{}}
	var firstErr error
	for i, c := range g.children {
		<-c.exited
		if c.err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("generator %d: %w", i, c.err))
			continue
		}
		var r ConnsResult
		if err := json.Unmarshal(c.stdout.Bytes(), &r); err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("generator %d result: %w", i, err))
			continue
		}
		res.add(&r)
	}
	return res, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func (res *genResult) add(r *ConnsResult) {
	res.Connected += r.Connected
	res.LiveAtEnd += r.LiveAtEnd
	res.PingFailure += r.PingFailures
	for k, v := range r.Failures {
		res.Failures[k] += int64(v)
	}
	for k, v := range r.Drops {
		res.Drops[k] += int64(v)
	}
	if !r.ConnectStart.IsZero() && (res.Start.IsZero() || r.ConnectStart.Before(res.Start)) {
		res.Start = r.ConnectStart
	}
	if r.ConnectEnd.After(res.End) {
		res.End = r.ConnectEnd
	}
	if h, err := decodeHist(r.ConnectHist); err == nil {
		res.Latency.Merge(h)
	}
	if res.Broadcasts != nil {
		mergeBroadcasts(res.Broadcasts, r.Broadcasts)
	}
}
