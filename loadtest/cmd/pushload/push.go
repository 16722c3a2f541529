package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// Limits of the push scenarios.
const (
	maxRate         = 100000
	maxDuration     = 10 * time.Minute
	maxPayload      = 60 << 10
	maxHTTPConc     = 1024
	maxBatch        = 1000 // center's users per /v1/push/multi
	httpTimeout     = 10 * time.Second
	pacerStep       = time.Millisecond
	maxErrorSamples = 5
	// Payload prefix: "<run id>|<unix ns>|"; the rest is padding.
	runIDBytes = 8
)

type pushFlags struct {
	commonFlags
	center   string
	apiKey   string
	users    int
	rate     float64
	duration time.Duration
	qos      int
	ttl      int
	size     int
	httpConc int
	batch    int
	drain    time.Duration
	warmup   time.Duration
	multi    bool
	cpuPIDs  string
	// httpClient is -http-client: httpClientLean or httpClientStd.
	httpClient string
}

// PushResult is the JSON result of push and multi.
type PushResult struct {
	Scenario         string         `json:"scenario"`
	Targets          []string       `json:"targets"`
	Center           string         `json:"center"`
	Users            int            `json:"users"`
	Connected        int            `json:"connected"`
	ConnectFailures  map[string]int `json:"connect_failures"`
	QoS              int            `json:"qos"`
	PayloadBytes     int            `json:"payload_bytes"`
	UsersPerRequest  int            `json:"users_per_request"`
	TargetRate       float64        `json:"target_requests_per_sec"`
	Requests         int64          `json:"requests"`
	RequestsPerSec   float64        `json:"requests_per_sec"`
	HTTPStatus       map[string]int `json:"http_status"`
	ErrorSamples     []string       `json:"error_samples,omitempty"`
	RequestLatency   Percentiles    `json:"request_latency"`
	Accepted         int64          `json:"messages_accepted"`
	Delivered        int64          `json:"delivered_unique"`
	Duplicates       int64          `json:"duplicates"`
	Missing          int64          `json:"missing"`
	SendSeconds      float64        `json:"send_seconds"`
	DeliverSeconds   float64        `json:"deliver_seconds"`
	DeliveredPerSec  float64        `json:"delivered_per_sec"`
	Latency          Percentiles    `json:"end_to_end_latency"`
	Drops            map[string]int `json:"connections_dropped"`
	Room             *RoomLoad      `json:"room,omitempty"`
	LoadAvgBefore    string         `json:"loadavg_before"`
	LoadAvgAfter     string         `json:"loadavg_after"`
	DeliveredPerCore float64        `json:"delivered_per_room_cpu_second,omitempty"`
	// CPUSeconds is what each -cpu-pids process spent over the run.
	CPUSeconds map[string]float64 `json:"cpu_seconds,omitempty"`
}

// RoomLoad is what the room spent during the send window.
type RoomLoad struct {
	Before       Sample  `json:"before"`
	After        Sample  `json:"after"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	GCs          float64 `json:"gcs"`
	GCPauseTotal float64 `json:"gc_pause_seconds_total"`
	GCPauseMean  float64 `json:"gc_pause_seconds_mean"`
	Pushes       float64 `json:"pushes_written"`
}

func parsePushFlags(args []string, multi bool) (*pushFlags, error) {
	var f pushFlags
	name := "push"
	if multi {
		name = "multi"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f.bind(fs)
	fs.StringVar(&f.center, "center", "http://127.0.0.1:7000", "center base URL")
	fs.StringVar(&f.apiKey, "api-key", os.Getenv("PUSHGW_API_KEY"), "app API key for center (default $PUSHGW_API_KEY)")
	fs.IntVar(&f.users, "users", 1000, "connected users u0..u<users-1> that pushes go to")
	fs.Float64Var(&f.rate, "rate", 1000, "target HTTP requests per second")
	fs.DurationVar(&f.duration, "duration", 20*time.Second, "send window")
	fs.IntVar(&f.qos, "qos", 1, "QoS of the pushes (0 or 1)")
	fs.IntVar(&f.ttl, "ttl", 600, "message TTL in seconds (QoS 1)")
	fs.IntVar(&f.size, "payload-size", 64, "payload bytes (at least the 37-byte timing prefix)")
	fs.IntVar(&f.httpConc, "http-conc", 64, "HTTP requests in flight at most; a saturated center lowers the achieved rate")
	fs.DurationVar(&f.drain, "drain", 15*time.Second, "after the send window, wait at most this long for outstanding deliveries")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "pause after connecting, so register holds every session before the first push")
	fs.StringVar(&f.httpClient, "http-client", httpClientLean, "HTTP client of the pushes: lean (one keep-alive connection per worker, each request built in a reused buffer) or std (net/http and a JSON-marshalled map per push), to compare the generator's CPU")
	fs.StringVar(&f.cpuPIDs, "cpu-pids", "", "other processes whose CPU to report, name=pid comma-separated (e.g. center=123,saver=456)")
	f.batch, f.multi = 1, multi
	if multi {
		fs.IntVar(&f.batch, "batch", maxBatch, "users per /v1/push/multi call")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case f.secret == "":
		return nil, fmt.Errorf("%s: -secret (or $PUSHGW_APP_SECRET) is required", name)
	case f.apiKey == "":
		return nil, fmt.Errorf("%s: -api-key (or $PUSHGW_API_KEY) is required", name)
	case f.users < 1:
		return nil, fmt.Errorf("%s: -users %d: want >= 1", name, f.users)
	case f.rate <= 0 || f.rate > maxRate:
		return nil, fmt.Errorf("%s: -rate %v: want (0, %d]", name, f.rate, maxRate)
	case f.duration <= 0 || f.duration > maxDuration:
		return nil, fmt.Errorf("%s: -duration %v: want (0, %v]", name, f.duration, maxDuration)
	case f.qos != 0 && f.qos != 1:
		return nil, fmt.Errorf("%s: -qos %d: want 0 or 1", name, f.qos)
	case f.size < 2*runIDBytes+21 || f.size > maxPayload:
		return nil, fmt.Errorf("%s: -payload-size %d: want %d..%d", name, f.size, 2*runIDBytes+21, maxPayload)
	case f.httpConc < 1 || f.httpConc > maxHTTPConc:
		return nil, fmt.Errorf("%s: -http-conc %d: want 1..%d", name, f.httpConc, maxHTTPConc)
	case f.batch < 1 || f.batch > maxBatch || f.batch > f.users:
		return nil, fmt.Errorf("%s: -batch %d: want 1..min(%d, -users)", name, f.batch, maxBatch)
	case f.drain < 0 || f.drain > maxDuration:
		return nil, fmt.Errorf("%s: -drain %v: want 0..%v", name, f.drain, maxDuration)
	case !contains(httpClients(), f.httpClient):
		return nil, fmt.Errorf("%s: -http-client %q: want one of %s", name, f.httpClient, strings.Join(httpClients(), ", "))
	}
	if err := checkPerProc(f.users); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &f, nil
}

// tracker receives PUSH frames and keeps the delivery books.
type tracker struct {
	runID string
	lat   latencies
	// accepted and acked are the unicast scenario's hops (hops.go): center's
	// created_ms and the client's ACK write, each from the request start.
	accepted latencies
	acked    latencies

	mu       sync.Mutex
	seen     map[uint64]struct{}
	dups     int64
	first    time.Time
	last     time.Time
	foreign  atomic.Int64 // pushes of other runs (left-over QoS 1 messages)
	progress atomic.Int64
}

func (t *tracker) onPush(p *clientpb.Push) {
	now := time.Now()
	rest, ok := strings.CutPrefix(string(p.GetPayload()), t.runID+"|")
	if !ok {
		t.foreign.Add(1)
		return
	}
	ts, _, _ := strings.Cut(rest, "|")
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.foreign.Add(1)
		return
	}
	t.mu.Lock()
	if _, dup := t.seen[p.GetId()]; dup {
		t.dups++
		t.mu.Unlock()
		return
	}
	t.seen[p.GetId()] = struct{}{}
	if t.first.IsZero() {
		t.first = now
	}
	t.last = now
	t.mu.Unlock()
	t.progress.Add(1)
	sent := time.Unix(0, ns)
	t.lat.Add(now.Sub(sent))
	if c := p.GetCreatedMs(); c > 0 {
		t.accepted.Add(acceptedAfter(c, sent))
	}
}

// onAcked records when the client wrote the ACK of one of this run's
// pushes (duplicates included: each copy is acked).
func (t *tracker) onAcked(p *clientpb.Push, at time.Time) {
	rest, ok := strings.CutPrefix(string(p.GetPayload()), t.runID+"|")
	if !ok {
		return
	}
	ts, _, _ := strings.Cut(rest, "|")
	if ns, err := strconv.ParseInt(ts, 10, 64); err == nil {
		t.acked.Add(at.Sub(time.Unix(0, ns)))
	}
}

func runPush(args []string, multi bool) (*PushResult, error) {
	f, err := parsePushFlags(args, multi)
	if err != nil {
		return nil, err
	}
	fl, connectTO, err := f.fleet()
	if err != nil {
		return nil, err
	}
	center, err := checkURL(f.center)
	if err != nil {
		return nil, err
	}
	pr, err := newProbe(f.roomPID, f.roomAdmin)
	if err != nil {
		return nil, err
	}
	others, err := parseCPUPIDs(f.cpuPIDs)
	if err != nil {
		return nil, err
	}
	id := make([]byte, runIDBytes)
	_, _ = rand.Read(id)
	tr := &tracker{runID: hex.EncodeToString(id), seen: map[uint64]struct{}{}}

	fl.onPush = tr.onPush
	stopPing := make(chan struct{})
	go fl.pinger(stopPing)
	defer func() {
		close(stopPing)
		fl.closeAll()
	}()
	fl.connectRange(f.userPrefix, 0, f.users, f.conc, time.Now().Add(connectTO*time.Duration(f.users/f.conc+2)))
	if int(fl.ok.Load()) < f.users {
		return nil, fmt.Errorf("only %d of %d users connected (%v); not pushing to a partial fleet", fl.ok.Load(), f.users, fl.failures.Snapshot())
	}
	sleepOrSignal(f.warmup)
	// Left-over QoS 1 messages of earlier runs arrive on connect; they are
	// counted as foreign and do not touch this run's figures.

	res := &PushResult{
		Scenario: map[bool]string{false: "push", true: "multi"}[multi], Targets: fl.addrs, Center: center,
		Users: f.users, Connected: int(fl.ok.Load()), ConnectFailures: fl.failures.Snapshot(),
		QoS: f.qos, PayloadBytes: f.size, UsersPerRequest: f.batch, TargetRate: f.rate,
		LoadAvgBefore: loadAvg(),
	}
	var before Sample
	if pr != nil {
		if before, err = pr.Sample(); err != nil {
			return nil, err
		}
	}
	cpu0 := cpuOf(others)
	s := &sender{f: f, center: center, tr: tr, status: &counts{},
		http: &http.Client{Timeout: httpTimeout, Transport: &http.Transport{
			MaxIdleConns: f.httpConc, MaxIdleConnsPerHost: f.httpConc, IdleConnTimeout: time.Minute}}}
	sendStart := time.Now()
	s.run()
	sendEnd := time.Now()

	// Wait for the deliveries of what center accepted.
	drainUntil := time.Now().Add(f.drain)
	for tr.progress.Load() < s.accepted.Load() && time.Now().Before(drainUntil) {
		time.Sleep(50 * time.Millisecond)
	}
	if pr != nil {
		after, err := pr.Sample()
		if err != nil {
			return nil, err
		}
		rl := &RoomLoad{Before: before, After: after, CPUSeconds: after.CPUSeconds - before.CPUSeconds,
			GCs: after.GCCount - before.GCCount, GCPauseTotal: after.GCPauseSum - before.GCPauseSum,
			Pushes: after.Pushes - before.Pushes}
		if rl.GCs > 0 {
			rl.GCPauseMean = rl.GCPauseTotal / rl.GCs
		}
		res.Room = rl
	}
	res.LoadAvgAfter = loadAvg()
	if len(others) > 0 {
		res.CPUSeconds = map[string]float64{}
		for name, v := range cpuOf(others) {
			res.CPUSeconds[name] = v - cpu0[name]
		}
	}

	tr.mu.Lock()
	res.Delivered, res.Duplicates = int64(len(tr.seen)), tr.dups
	last := tr.last
	tr.mu.Unlock()
	res.Requests = s.requests.Load()
	res.Accepted = s.accepted.Load()
	res.Missing = max(res.Accepted-res.Delivered, 0)
	res.HTTPStatus = s.status.Snapshot()
	res.ErrorSamples = s.errorSamples()
	res.RequestLatency = s.lat.Summary()
	res.SendSeconds = sendEnd.Sub(sendStart).Seconds()
	if res.SendSeconds > 0 {
		res.RequestsPerSec = float64(res.Requests) / res.SendSeconds
	}
	if !last.IsZero() {
		res.DeliverSeconds = last.Sub(sendStart).Seconds()
		res.DeliveredPerSec = float64(res.Delivered) / res.DeliverSeconds
	}
	if res.Room != nil && res.Room.CPUSeconds > 0 {
		res.DeliveredPerCore = float64(res.Delivered) / res.Room.CPUSeconds
	}
	res.Latency = tr.lat.Summary()
	res.Drops = fl.drops.Snapshot()
	if n := tr.foreign.Load(); n > 0 {
		res.Drops["(foreign pushes from earlier runs, ignored)"] = int(n)
	}
	return res, nil
}

// sender paces HTTP requests to center.
type sender struct {
	f      *pushFlags
	center string
	tr     *tracker
	// http is the net/http client of f.httpClient std; the lean client
	// has a connection per worker instead.
	http *http.Client
	lat  latencies

	requests atomic.Int64
	accepted atomic.Int64
	status   *counts

	errMu   sync.Mutex
	errList []string

	// stop, when set, ends the send window early (the churn scenario
	// pushes until its phases are over).
	stop <-chan struct{}
}

// run issues requests at f.rate for f.duration on f.httpConc workers. When
// every worker is busy the pacer waits, so the achieved rate shows what
// center sustained.
func (s *sender) run() {
	jobs := make(chan int64, s.f.httpConc)
	var wg sync.WaitGroup
	for w := 0; w < s.f.httpConc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(jobs)
		}()
	}
	pace(s.f.rate, s.f.duration, s.stopped, jobs)
	close(jobs)
	wg.Wait()
}

// pace puts job numbers 0, 1, ... into jobs at rate per second for
// duration (or until stopped says so). A full jobs channel holds the
// pacer back, so a saturated receiver lowers the achieved rate instead
// of queueing without bound.
func pace(rate float64, duration time.Duration, stopped func() bool, jobs chan<- int64) {
	start := time.Now()
	var issued int64
	stop := start.Add(duration)
	for now := start; now.Before(stop) && !stopped(); now = time.Now() {
		due := int64(now.Sub(start).Seconds() * rate)
		for ; issued < due; issued++ {
			jobs <- issued
		}
		time.Sleep(pacerStep)
	}
}

func (s *sender) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// work sends the requests of jobs one at a time, over net/http for
// -http-client std, else (lean, the default) over a connection of its own.
func (s *sender) work(jobs <-chan int64) {
	if s.f.httpClient == httpClientStd {
		for k := range jobs {
			s.one(k)
		}
		return
	}
	lc, err := newLeanConn(s.center, s.f.apiKey, httpTimeout)
	if err != nil {
		s.noteError(err.Error())
		for range jobs {
			s.requests.Add(1)
			s.status.Add("transport_error", 1)
		}
		return
	}
	defer lc.close()
	var body []byte
	for k := range jobs {
		body = s.oneLean(lc, body, k)
	}
}

// oneLean sends request k over lc, building its body in buf (returned
// for reuse); it counts as one does.
func (s *sender) oneLean(lc *leanConn, buf []byte, k int64) []byte {
	t0 := time.Now()
	body := appendPushBody(buf[:0], s.f, s.tr.runID, k, t0)
	path := "/v1/push"
	if s.f.multi {
		path = "/v1/push/multi"
	}
	s.requests.Add(1)
	r, err := lc.post(path, body, t0)
	if err != nil {
		s.status.Add("transport_error", 1)
		s.noteError(err.Error())
		return body
	}
	s.lat.Add(time.Since(t0))
	if r.status != http.StatusOK {
		s.status.Add(strconv.Itoa(r.status), 1)
		s.noteError(r.statusText + " " + strings.TrimSpace(string(r.body)))
		return body
	}
	s.status.Add("200", 1)
	s.accepted.Add(int64(s.f.batch))
	return body
}

// one sends request k over net/http: unicast to user k mod users, or a
// batch of users starting at k*batch.
func (s *sender) one(k int64) {
	t0 := time.Now()
	payload := s.payload(t0)
	var (
		path string
		body any
	)
	if !s.f.multi {
		path = "/v1/push"
		body = map[string]any{"app": s.f.app, "user": s.user(k), "payload": payload, "qos": s.f.qos, "ttl": s.f.ttl}
	} else {
		users := make([]string, s.f.batch)
		for i := range users {
			users[i] = s.user(k*int64(s.f.batch) + int64(i))
		}
		path = "/v1/push/multi"
		body = map[string]any{"app": s.f.app, "users": users, "payload": payload, "qos": s.f.qos, "ttl": s.f.ttl}
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.center+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+s.f.apiKey)
	req.Header.Set("Content-Type", "application/json")
	s.requests.Add(1)
	resp, err := s.http.Do(req)
	if err != nil {
		s.status.Add("transport_error", 1)
		s.noteError(err.Error())
		return
	}
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	s.lat.Add(time.Since(t0))
	s.status.Add(strconv.Itoa(resp.StatusCode), 1)
	if resp.StatusCode != http.StatusOK {
		s.noteError(resp.Status + " " + strings.TrimSpace(string(rb)))
		return
	}
	s.accepted.Add(int64(s.f.batch))
}

func (s *sender) user(i int64) string {
	return s.f.userPrefix + strconv.FormatInt(i%int64(s.f.users), 10)
}

// payload carries the run id and the request start, so the receiving
// client measures latency without matching ids to HTTP responses.
func (s *sender) payload(t time.Time) string { return timedPayload(s.tr.runID, t, s.f.size) }

// timedPayload is "<run id>|<unix ns>|" padded with x to size bytes.
func timedPayload(runID string, t time.Time, size int) string {
	p := runID + "|" + strconv.FormatInt(t.UnixNano(), 10) + "|"
	if len(p) < size {
		p += strings.Repeat("x", size-len(p))
	}
	return p
}

func (s *sender) noteError(msg string) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if len(s.errList) < maxErrorSamples {
		s.errList = append(s.errList, msg)
	}
}

func (s *sender) errorSamples() []string {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.errList
}
