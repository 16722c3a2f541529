package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// child is one forked generator process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
	ready  chan struct{}
	exited chan struct{}
	err    error
	// ok and failed are the child's last reported connect progress.
	ok, failed atomic.Int64
}

// runConnsParent forks f.procs children of this binary, each holding its
// share of the users, samples the room once all are connected, releases
// them after -hold and merges their results.
func runConnsParent(f *connsFlags, addrs []string, pr *probe) (*ConnsResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("conns: cannot find own binary: %w", err)
	}
	var mem *RoomMemory
	if pr != nil {
		mem = &RoomMemory{}
		if mem.Before, err = pr.Sample(); err != nil {
			return nil, err
		}
	}
	srcs := strings.Split(f.src, ",")
	children := make([]*child, 0, f.procs)
	offset := f.userOffset
	for i := 0; i < f.procs; i++ {
		n := f.n / f.procs
		if i < f.n%f.procs {
			n++
		}
		args := []string{"conns", "-child",
			"-addr", strings.Join(addrs, ","), "-app", f.app, "-user-prefix", f.userPrefix,
			"-n", strconv.Itoa(n), "-user-offset", strconv.Itoa(offset),
			"-c", strconv.Itoa(max(f.conc/f.procs, 1)), "-connect-timeout", f.connectTO,
			"-hold", f.hold.String()}
		if f.src != "" {
			// Each child binds its own source address when enough are given.
			args = append(args, "-src", srcs[i%len(srcs)])
		}
		offset += n
		c, err := startChild(self, args, f.secret)
		if err != nil {
			for _, c := range children {
				c.release()
			}
			return nil, err
		}
		children = append(children, c)
	}
	for _, c := range children {
		select {
		case <-c.ready:
		case <-c.exited:
		}
	}
	ready := time.Now()
	if pr != nil {
		sleepOrSignal(f.settle)
		if err := takeHeld(pr, mem, f.heapProfile); err != nil {
			fmt.Fprintln(os.Stderr, "pushload:", err)
		}
	}
	sleepOrSignal(time.Until(ready.Add(f.hold)))
	for _, c := range children {
		c.release()
	}
	res := &ConnsResult{Scenario: "conns", Targets: addrs, Procs: f.procs, Requested: f.n,
		Concurrency: f.conc, Failures: map[string]int{}, Drops: map[string]int{}}
	for i, c := range children {
		<-c.exited
		if c.err != nil {
			return nil, fmt.Errorf("conns: child %d: %w", i, c.err)
		}
		var r ConnsResult
		if err := json.Unmarshal(c.stdout.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("conns: child %d result: %w", i, err)
		}
		res.merge(&r)
	}
	res.finishRate()
	if mem != nil {
		sleepOrSignal(f.settle)
		mem.After, _ = pr.Sample()
		mem.perConn(res.LiveAtEnd)
		res.Room = mem
	}
	return res, nil
}

func startChild(self string, args []string, secret string) (*child, error) {
	c := &child{ready: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command(self, args...)
	// The secret goes through the environment, not argv (visible in ps).
	c.cmd.Env = append(os.Environ(), "PUSHGW_APP_SECRET="+secret)
	c.cmd.Stdout = &c.stdout
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("conns: start child: %w", err)
	}
	var once sync.Once
	markReady := func() { once.Do(func() { close(c.ready) }) }
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if sc.Text() == readyMarker {
				markReady()
				continue
			}
			if ok, failed, isProgress := parseProgress(sc.Text()); isProgress {
				c.ok.Store(ok)
				c.failed.Store(failed)
				continue
			}
			fmt.Fprintln(os.Stderr, sc.Text())
		}
	}()
	go func() {
		<-scanned
		c.err = c.cmd.Wait()
		markReady()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) release() { _ = c.stdin.Close() }

// parseProgress reads a progressMarker line.
func parseProgress(line string) (ok, failed int64, isProgress bool) {
	rest, found := strings.CutPrefix(line, progressMarker)
	if !found {
		return 0, 0, false
	}
	a, b, _ := strings.Cut(rest, " ")
	ok, err1 := strconv.ParseInt(a, 10, 64)
	failed, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return ok, failed, true
}

// merge adds a child's result. Rates come from the union of the connect
// phases; connect latency percentiles are the worst child's (percentiles
// do not add).
func (r *ConnsResult) merge(c *ConnsResult) {
	r.Connected += c.Connected
	r.LiveAtEnd += c.LiveAtEnd
	r.PingFailures += c.PingFailures
	for k, v := range c.Failures {
		r.Failures[k] += v
	}
	for k, v := range c.Drops {
		r.Drops[k] += v
	}
	if r.ConnectStart.IsZero() || c.ConnectStart.Before(r.ConnectStart) {
		r.ConnectStart = c.ConnectStart
	}
	if c.ConnectEnd.After(r.ConnectEnd) {
		r.ConnectEnd = c.ConnectEnd
	}
	r.ConnectLatency.Count += c.ConnectLatency.Count
	r.ConnectLatency.P50 = max(r.ConnectLatency.P50, c.ConnectLatency.P50)
	r.ConnectLatency.P90 = max(r.ConnectLatency.P90, c.ConnectLatency.P90)
	r.ConnectLatency.P99 = max(r.ConnectLatency.P99, c.ConnectLatency.P99)
	r.ConnectLatency.Max = max(r.ConnectLatency.Max, c.ConnectLatency.Max)
	r.HeartbeatSecond = max(r.HeartbeatSecond, c.HeartbeatSecond)
	r.HoldSeconds = max(r.HoldSeconds, c.HoldSeconds)
	c.Children = nil
	r.Children = append(r.Children, *c)
}
