package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/mariadbtest"
	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/test"
)

const (
	// warmup is steady load before the first fault, the baseline the
	// fault windows are compared with.
	warmup = 8 * time.Second
	// finalRead bounds the wait after the last resort of the run: every
	// client reconnects, pulling whatever is still pending.
	finalRead = 30 * time.Second
	// connectTimeout bounds the wait for the fleet to come up.
	connectTimeout = 60 * time.Second
)

// harness is one run: the cluster, its private servers, the fleet of
// clients, the writer and the checker.
type harness struct {
	t      *testing.T
	c      *test.Cluster
	redis  *redistest.Server
	maria  *mariadbtest.Server
	fleet  *fleet
	writer *writer
	users  []string
	chk    *checker
	bchk   *bcastChecker
}

// Report is the JSON a run prints.
type Report struct {
	Schedule   schedule `json:"schedule"`
	Steps      []string `json:"steps"`
	Started    string   `json:"started"`
	DurationS  int      `json:"duration_s"`
	Race       bool     `json:"race_built_services"`
	Skipped    int64    `json:"writer_ticks_skipped"`
	Connects   uint64   `json:"sdk_connects"`
	LateOnRead int      `json:"delivered_only_after_final_reconnect"`
	// Services is each process's footprint once the run has drained.
	Services map[string]footprint `json:"services"`
	Stopped  []string             `json:"clients_stopped,omitempty"`
	// Broadcasts is the broadcast stream's check (absent when the plan
	// sends none).
	Broadcasts *BroadcastResult `json:"broadcasts,omitempty"`
	Passed     bool             `json:"passed"`
	*Result
}

func runSchedule(t *testing.T, s schedule, out string, keepLogs bool) {
	started := time.Now()
	h := &harness{t: t, chk: newChecker()}
	h.startCluster(s, keepLogs)
	closeLog := h.startFleet(s.Clients)
	defer closeLog()
	defer h.fleet.stop()

	h.writer = newWriter(h.c.App, h.c.APIKey, h.c.CenterURLs, h.users, s.Rate, s.Retries, h.chk)
	ctx, stopWriting := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go func() { h.writer.run(ctx); close(writerDone) }()
	bcastDone := make(chan struct{})
	if s.BroadcastEvery > 0 {
		bw := &bcastWriter{app: h.c.App, apiKey: h.c.APIKey, centers: h.c.CenterURLs, every: s.BroadcastEvery, chk: h.bchk,
			hc: &http.Client{Timeout: pushTimeout}}
		go func() { bw.run(ctx); close(bcastDone) }()
	} else {
		close(bcastDone)
	}
	txDone, badChecks := h.startTx(ctx, s)
	writeStart := time.Now()
	time.Sleep(warmup)
	h.inject(s)
	stopWriting()
	<-writerDone
	<-bcastDone
	<-txDone
	writing := time.Since(writeStart)

	late := h.drain(s)
	res := h.chk.result()
	steadyTime(res, writing)
	stats := h.fleet.stats()
	res.Redelivered = stats.Redelivered
	res.Problems = append(res.Problems, h.chk.problems("late", late)...)
	h.describeLost(res)
	var steps []string
	for _, st := range s.steps {
		steps = append(steps, st.name)
	}
	rep := Report{
		Schedule: s, Steps: steps, Started: started.UTC().Format(time.RFC3339), DurationS: int(time.Since(started).Seconds()),
		Race: os.Getenv("PUSHGW_TEST_RACE") == "1", Skipped: h.writer.skipped.Load(), Connects: stats.Connects,
		LateOnRead: len(late), Stopped: h.fleet.stopped(), Result: res, Services: h.footprints(),
	}
	rep.Passed = res.Passed() && len(rep.Stopped) == 0 && len(late) == 0
	if s.BroadcastEvery > 0 {
		rep.Broadcasts = h.bchk.result()
		rep.Passed = rep.Passed && rep.Broadcasts.passed()
		if rep.Broadcasts.Acknowledged == 0 {
			t.Errorf("no broadcast acknowledged in the whole run")
		}
	}
	if n := badChecks.Load(); n > 0 {
		t.Errorf("%d check-backs were badly signed", n)
	}
	for name, fp := range rep.Services {
		if fp.Goroutines > maxGoroutines || fp.RSSMiB > maxRSSMiB {
			t.Errorf("%s after the run: %d goroutines, %.0f MiB RSS; bounds %d and %d MiB", name, fp.Goroutines, fp.RSSMiB, maxGoroutines, maxRSSMiB)
		}
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Printf("%s\n", js)
	if out != "" {
		if err := os.WriteFile(out, append(js, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
	if !rep.Passed {
		t.Errorf("fault run failed: lost=%d unexpected=%d duplicated=%d delivered only after reconnecting=%d clients stopped=%v; tx %+v; problems: %+v",
			res.Lost, res.Unexpected, res.Duplicated, len(late), rep.Stopped, res.Tx, res.Problems)
		if b := rep.Broadcasts; b != nil && !b.passed() {
			t.Errorf("broadcasts: lost=%d duplicated=%d unexpected=%d; problems: %v", b.Lost, b.Duplicated, b.Unexpected, b.Problems)
		}
	}
	// A run that pushed nearly nothing proves nothing.
	if minAcked := s.Rate * int(warmup/time.Second); res.Acknowledged < minAcked {
		t.Errorf("only %d messages acknowledged, want at least %d", res.Acknowledged, minAcked)
	}
}

// Bounds on each service once a run has drained: far above what 200
// clients need (a room holds two goroutines a connection), far below what
// a leak per message or per retry would leave after ten thousand of them.
const (
	maxGoroutines = 5000
	maxRSSMiB     = 1024
)

// footprint is one service's use of the machine.
type footprint struct {
	Goroutines int     `json:"goroutines"`
	RSSMiB     float64 `json:"rss_mib"`
}

// footprints scrapes every service's admin /metrics.
func (h *harness) footprints() map[string]footprint {
	out := map[string]footprint{}
	for name, p := range h.c.Procs {
		m := test.ScrapeAdmin(h.t, p.Admin)
		out[name] = footprint{Goroutines: int(m["go_goroutines"]), RSSMiB: m["process_resident_memory_bytes"] / (1 << 20)}
	}
	return out
}

// startTx runs the transactional writer beside the steady one, with the
// app's check-back pointed at a business server of the run. The returned
// channel closes when the writer has stopped; the counter counts
// check-backs whose signature did not verify.
func (h *harness) startTx(ctx context.Context, s schedule) (<-chan struct{}, *atomic.Int64) {
	bad := &atomic.Int64{}
	biz := txBusiness(h.c.Secret, bad)
	h.t.Cleanup(biz.Close)
	app := appconfig.App{Name: h.c.App, Secret: h.c.Secret, APIKey: h.c.APIKey}
	if err := setTxCheck(h.c.Etcd, h.c.Name, app, biz.URL+"/check"); err != nil {
		h.t.Fatal(err)
	}
	tw := &txWriter{app: h.c.App, apiKey: h.c.APIKey, centers: h.c.CenterURLs, users: h.users, rate: max(1, s.Rate/txShare),
		retries: s.Retries, chk: h.chk, hc: h.writer.hc}
	done := make(chan struct{})
	go func() { tw.run(ctx); close(done) }()
	return done, bad
}

// startCluster starts the private servers the plan needs and the cluster.
func (h *harness) startCluster(s schedule, keepLogs bool) {
	opts := test.Options{Rooms: 2, Centers: 2, PrivateEtcd: s.PrivateEtcd, RedisCluster: s.RedisCluster}
	if !s.RedisCluster {
		h.redis = redistest.Start(h.t)
		opts.RedisAddr = h.redis.Addr()
	}
	if s.PrivateMariaDB {
		h.maria = mariadbtest.Start(h.t)
		opts.MySQLRoot = h.maria.RootDSN()
	}
	h.c = test.StartCluster(h.t, opts)
	// The services' logs live in the test's temporary directory.
	h.t.Cleanup(func() {
		if h.t.Failed() || keepLogs {
			h.keepLogs()
		}
	})
}

// startFleet connects n clients, one user each, and waits until all are
// in. The returned function closes the SDK log.
func (h *harness) startFleet(n int) func() {
	h.users = make([]string, n)
	for i := range h.users {
		h.users[i] = "u" + strconv.Itoa(i)
	}
	sdkLog, closeLog := h.sdkLogger()
	h.bchk = newBcastChecker(h.users)
	f, err := startFleet(h.c.DispatcherURL, h.c.App, h.users, func(u string) string { return h.c.Token(u, "d", 24*time.Hour) }, h.chk, h.bchk, sdkLog)
	if err != nil {
		closeLog()
		h.t.Fatal(err)
	}
	h.fleet = f
	h.waitConnected(n)
	return closeLog
}

// inject runs the plan's faults one after the other, each followed by its
// settle time, and records their windows.
func (h *harness) inject(s schedule) {
	for _, st := range s.steps {
		start := time.Now()
		h.t.Logf("fault: %s", st.name)
		st.inject(h)
		time.Sleep(st.hold)
		if st.heal != nil {
			st.heal(h)
		}
		time.Sleep(s.Settle)
		h.chk.addWindow(window{Name: st.name, Start: start, End: time.Now(), Away: st.away, NoRoom: st.noRoom})
	}
}

// drain waits for redelivery with every client as it is (what a user who
// stays connected gets without doing anything), then does the final read:
// every client reconnects and pulls what is pending. It returns what only
// that reconnect brought, which was stuck for a connected user.
func (h *harness) drain(s schedule) (late []string) {
	h.waitDelivered(s.Drain)
	beforeRead := h.chk.missing()
	if len(beforeRead) == 0 {
		return nil
	}
	h.t.Logf("%d acknowledged messages not delivered after %v; reconnecting every client", len(beforeRead), s.Drain)
	h.fleet.reconnectAll()
	h.waitDelivered(finalRead)
	stillMissing := map[string]bool{}
	for _, k := range h.chk.missing() {
		stillMissing[k] = true
	}
	for _, k := range beforeRead {
		if !stillMissing[k] {
			late = append(late, k)
		}
	}
	return late
}

// steadyTime gives the "steady" window the writing time no fault covered.
func steadyTime(r *Result, writing time.Duration) {
	faulty := 0
	for _, w := range r.Windows[1:] {
		faulty += w.Seconds
	}
	r.Windows[0].Seconds = max(0, int(writing.Round(time.Second)/time.Second)-faulty)
}

// waitConnected waits until every client has connected once.
func (h *harness) waitConnected(n int) {
	deadline := time.Now().Add(connectTimeout)
	for time.Now().Before(deadline) {
		if int(h.fleet.stats().Connects) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("only %d of %d clients connected within %v", h.fleet.stats().Connects, n, connectTimeout)
}

// waitDelivered waits until every acknowledged message was delivered, or d.
func (h *harness) waitDelivered(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if len(h.chk.missing()) == 0 && h.bchk.missing() == 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// describeLost adds center's view of each lost message, which tells a
// message saver never stored from one stored and never handed out.
func (h *harness) describeLost(r *Result) {
	hc := &http.Client{Timeout: 3 * time.Second}
	for i, p := range r.Problems {
		if p.Kind != "lost" {
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, h.c.CenterURL+"/v1/messages/"+strconv.FormatUint(p.ID, 10), nil)
		req.Header.Set("Authorization", "Bearer "+h.c.APIKey)
		resp, err := hc.Do(req)
		if err != nil {
			r.Problems[i].Detail = "status: " + err.Error()
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		r.Problems[i].Detail = fmt.Sprintf("status %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
}

// sdkLogger sends the fleet's warnings to a file next to the service logs.
func (h *harness) sdkLogger() (*slog.Logger, func()) {
	f, err := os.Create(filepath.Join(h.c.LogDir(), "sdk.log"))
	if err != nil {
		h.t.Fatal(err)
	}
	return slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})), func() { f.Close() }
}

// keepLogs copies every log of a failed (or -faults.keep-logs) run out of the test's temporary
// directory, which is removed when the test ends.
func (h *harness) keepLogs() {
	dst, err := os.MkdirTemp("", "pushgw-faults-logs-")
	if err != nil {
		return
	}
	entries, _ := os.ReadDir(h.c.LogDir())
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(h.c.LogDir(), e.Name())); err == nil {
			_ = os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
		}
	}
	h.t.Logf("logs of the failed run kept in %s", dst)
}
