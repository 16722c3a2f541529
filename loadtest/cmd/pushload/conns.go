package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// readyMarker is the stderr line a child prints once its connect phase is
// over; the parent samples the room when every child printed it.
const readyMarker = "pushload-ready"

// progressMarker starts the stderr lines ("pushload-progress OK FAILED") a
// child prints during its connect phase, for the parent's progress bar.
const progressMarker = "pushload-progress "

// progressEvery is how often a child reports its connect progress.
const progressEvery = 250 * time.Millisecond

// Bounds on flag values.
const (
	maxProcs       = 64
	maxTotalConns  = maxConnsPerProc * maxProcs
	maxHold        = 30 * time.Minute
	childExitGrace = 2 * time.Minute
)

type connsFlags struct {
	commonFlags
	n           int
	userOffset  int
	hold        time.Duration
	procs       int
	settle      time.Duration
	heapProfile string
	child       bool
}

// ConnsResult is the JSON result of the conns scenario.
type ConnsResult struct {
	Scenario        string         `json:"scenario"`
	Targets         []string       `json:"targets"`
	Procs           int            `json:"procs"`
	Requested       int            `json:"requested"`
	Connected       int            `json:"connected"`
	Failures        map[string]int `json:"connect_failures"`
	ConnectStart    time.Time      `json:"connect_start"`
	ConnectEnd      time.Time      `json:"connect_end"`
	ConnectSeconds  float64        `json:"connect_seconds"`
	ConnectsPerSec  float64        `json:"connects_per_sec"`
	ConnectLatency  Percentiles    `json:"connect_latency"`
	Concurrency     int            `json:"concurrency"`
	HeartbeatSecond float64        `json:"heartbeat_seconds"`
	HoldSeconds     float64        `json:"hold_seconds"`
	LiveAtEnd       int            `json:"live_at_end"`
	Drops           map[string]int `json:"dropped_during_hold"`
	PingFailures    int64          `json:"ping_failures"`
	Room            *RoomMemory    `json:"room,omitempty"`
	Children        []ConnsResult  `json:"children,omitempty"`
	// ConnectHist is the HDR histogram of connect latencies (children
	// send it so the parent's percentiles are exact, not the worst child's).
	ConnectHist []byte `json:"connect_hist,omitempty"`
	// Broadcasts a child saw (bench broadcast scenario).
	Broadcasts []BroadcastSeen `json:"broadcasts,omitempty"`
}

// RoomMemory is the room's cost of the held connections.
type RoomMemory struct {
	Before Sample `json:"before"`
	Held   Sample `json:"held"`
	After  Sample `json:"after_close"`
	// Per connection held at the Held sample (room-reported connections
	// when available, else the generator's live count).
	Conns          float64 `json:"conns"`
	RSSPerConn     float64 `json:"rss_bytes_per_conn"`
	HeapPerConn    float64 `json:"heap_inuse_bytes_per_conn"`
	StackPerConn   float64 `json:"stack_inuse_bytes_per_conn"`
	GoroutinesPerC float64 `json:"goroutines_per_conn"`
	HeapProfile    string  `json:"heap_profile,omitempty"`
}

func parseConnsFlags(args []string) (*connsFlags, error) {
	var f connsFlags
	fs := flag.NewFlagSet("conns", flag.ContinueOnError)
	f.bind(fs)
	fs.IntVar(&f.n, "n", 1000, "connections to open in total (over all -procs)")
	fs.IntVar(&f.userOffset, "user-offset", 0, "index of the first user")
	fs.DurationVar(&f.hold, "hold", 30*time.Second, "how long to hold the connections after the connect phase")
	fs.IntVar(&f.procs, "procs", 1, "child processes to spread the connections over, each holding n/procs")
	fs.DurationVar(&f.settle, "settle", 5*time.Second, "wait after the connect phase before sampling the room")
	fs.StringVar(&f.heapProfile, "heap-profile", "", "write the room's heap profile (taken at the held sample) to this file")
	fs.BoolVar(&f.child, "child", false, "internal: run as a child of -procs")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case f.secret == "":
		return nil, errors.New("conns: -secret (or $PUSHGW_APP_SECRET) is required")
	case f.n < 1 || f.n > maxTotalConns:
		return nil, fmt.Errorf("conns: -n %d: want 1..%d", f.n, maxTotalConns)
	case f.procs < 1 || f.procs > maxProcs:
		return nil, fmt.Errorf("conns: -procs %d: want 1..%d", f.procs, maxProcs)
	case f.conc < 1:
		return nil, fmt.Errorf("conns: -c %d: want >= 1", f.conc)
	case f.hold < 0 || f.hold > maxHold:
		return nil, fmt.Errorf("conns: -hold %v: want 0..%v", f.hold, maxHold)
	}
	if err := checkPerProc((f.n + f.procs - 1) / f.procs); err != nil {
		return nil, fmt.Errorf("conns: %w", err)
	}
	if (f.roomPID != 0 || f.roomAdmin != "") && !f.child && f.hold < f.settle+2*time.Second {
		return nil, fmt.Errorf("conns: -hold %v must exceed -settle %v by 2s to sample the room while connections are held", f.hold, f.settle)
	}
	return &f, nil
}

func runConns(args []string) (*ConnsResult, error) {
	f, err := parseConnsFlags(args)
	if err != nil {
		return nil, err
	}
	fl, connectTO, err := f.fleet()
	if err != nil {
		return nil, fmt.Errorf("conns: %w", err)
	}
	var pr *probe
	if !f.child {
		if pr, err = newProbe(f.roomPID, f.roomAdmin); err != nil {
			return nil, err
		}
	}
	if f.procs > 1 {
		return runConnsParent(f, fl.addrs, pr)
	}

	var mem *RoomMemory
	if pr != nil {
		mem = &RoomMemory{}
		if mem.Before, err = pr.Sample(); err != nil {
			return nil, err
		}
	}
	var bcasts *bcastRecorder
	if f.child {
		bcasts = newBcastRecorder()
		fl.onPush = bcasts.onPush
	}
	stopPing := make(chan struct{})
	go fl.pinger(stopPing)
	// The connect phase may not outlast one auth timeout per connection
	// and concurrency slot; this bound only keeps the run finite.
	phaseDeadline := time.Now().Add(connectTO * time.Duration(f.n/f.conc+2))
	stopProgress := make(chan struct{})
	if f.child {
		go reportProgress(fl, stopProgress)
	}
	start, end := fl.connectRange(f.userPrefix, f.userOffset, f.n, f.conc, phaseDeadline)
	close(stopProgress)
	ready := time.Now()

	if f.child {
		fmt.Fprintln(os.Stderr, readyMarker)
		waitRelease(f.hold + childExitGrace)
	} else {
		if pr != nil {
			sleepOrSignal(f.settle)
			if err := takeHeld(pr, mem, f.heapProfile); err != nil {
				fmt.Fprintln(os.Stderr, "pushload:", err)
			}
		}
		sleepOrSignal(time.Until(ready.Add(f.hold)))
	}
	res := &ConnsResult{
		Scenario: "conns", Targets: fl.addrs, Procs: 1, Requested: f.n, Connected: int(fl.ok.Load()),
		Failures: fl.failures.Snapshot(), ConnectStart: start, ConnectEnd: end,
		ConnectLatency: fl.connLat.Summary(), Concurrency: f.conc,
		HeartbeatSecond: time.Duration(fl.hb.Load()).Seconds(),
		HoldSeconds:     time.Since(ready).Seconds(), LiveAtEnd: fl.live(),
		PingFailures: fl.pingFails.Load(),
	}
	close(stopPing)
	fl.closeAll()
	res.Drops = fl.drops.Snapshot()
	if f.child {
		if res.ConnectHist, err = fl.connLat.h.Encode(); err != nil {
			return nil, err
		}
		res.Broadcasts = bcasts.result()
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

// reportProgress prints the fleet's connect progress until stop closes,
// and once more at the end so the parent sees the final count.
func reportProgress(fl *fleet, stop <-chan struct{}) {
	tk := time.NewTicker(progressEvery)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(os.Stderr, "%s%d %d\n", progressMarker, fl.ok.Load(), fl.failures.Total())
			return
		case <-tk.C:
			fmt.Fprintf(os.Stderr, "%s%d %d\n", progressMarker, fl.ok.Load(), fl.failures.Total())
		}
	}
}

func (r *ConnsResult) finishRate() {
	r.ConnectSeconds = r.ConnectEnd.Sub(r.ConnectStart).Seconds()
	if r.ConnectSeconds > 0 {
		r.ConnectsPerSec = float64(r.Connected) / r.ConnectSeconds
	}
}

// takeHeld forces a GC in the room, waits for the heap figures to settle
// and samples it with the connections held.
func takeHeld(pr *probe, mem *RoomMemory, profilePath string) error {
	prof, err := pr.heapProfile()
	if err != nil {
		return err
	}
	if profilePath != "" && prof != nil {
		if err := os.WriteFile(profilePath, prof, 0o644); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		mem.HeapProfile = profilePath
	}
	time.Sleep(time.Second)
	mem.Held, err = pr.Sample()
	return err
}

func (m *RoomMemory) perConn(live int) {
	n := m.Held.Connections - m.Before.Connections
	if n <= 0 {
		n = float64(live)
	}
	if n <= 0 {
		return
	}
	m.Conns = n
	m.RSSPerConn = float64(m.Held.RSSBytes-m.Before.RSSBytes) / n
	m.HeapPerConn = (m.Held.HeapInuse - m.Before.HeapInuse) / n
	m.StackPerConn = (m.Held.StackInuse - m.Before.StackInuse) / n
	m.GoroutinesPerC = (m.Held.Goroutines - m.Before.Goroutines) / n
}

// sleepOrSignal sleeps d, returning early on SIGINT/SIGTERM so an
// interrupted run still closes its connections and prints its result.
func sleepOrSignal(d time.Duration) {
	if d <= 0 {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sig:
	}
}

// waitRelease blocks a child until its parent closes stdin (or dies), or
// at most limit, so children always stop by themselves.
func waitRelease(limit time.Duration) {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
	case <-sig:
	case <-t.C:
	}
}
