package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// benchScenarios lists the scenarios of `pushload bench` (make bench
// SCENARIO=...).
func benchScenarios() []string {
	return []string{"idle", "connect", "unicast", "churn", "box", "broadcast"}
}

// Engines the room may run; "std" is the goroutine-per-connection
// baseline every scenario runs beside.
const (
	engineStd  = "std"
	engineGnet = "gnet"
)

// Defaults and bounds of the bench flags.
const (
	defaultBenchConns = 18000
	defaultBoxTarget  = 200000
	maxBoxTarget      = 1000000
	defaultMemLimit   = 24 << 30
	defaultUsers      = 2000
	maxBenchDuration  = 2 * time.Hour
	connectPhaseLimit = 10 * time.Minute
	// maxBcastRate bounds the broadcast stream's offered rate.
	maxBcastRate = 1000
)

type benchFlags struct {
	scenario   string
	engines    string
	binDir     string
	generator  string
	logs       string
	out        string
	etcd       string
	mysqlRoot  string
	redisBin   string
	conns      int
	conc       int
	connectTO  time.Duration
	settle     time.Duration
	hold       time.Duration
	profiles   bool
	noProgress bool
	colocated  bool
	roomProcs  int
	limit      time.Duration

	users      int
	rateStart  float64
	rateFactor float64
	rateMax    float64
	step       time.Duration
	p99Limit   time.Duration
	drain      time.Duration
	ackDelay   time.Duration
	// transports and grpcStreams: unicast's ways into center.
	transports  string
	grpcStreams int
	// httpClient is the generator's HTTP client (unicast http, churn).
	httpClient string

	churnRate     float64
	churnDuration time.Duration
	churnPushRate float64

	boxTarget   int
	roomConns   int
	memLimitGiB float64

	bcastRate     float64
	bcastDuration time.Duration
	bcastQoS      int
}

func parseBenchFlags(args []string) (*benchFlags, error) {
	var f benchFlags
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&f.scenario, "scenario", "idle", "one of "+strings.Join(benchScenarios(), ", "))
	fs.StringVar(&f.engines, "engines", engineStd+","+engineGnet, "room engines to run, in order (a room without -engine runs std only; gnet is then reported skipped)")
	fs.StringVar(&f.binDir, "bin", "bin", "directory holding the service binaries (make build)")
	fs.StringVar(&f.logs, "logs", "", "directory for the cluster's logs (default a new /tmp/pushgw-bench-*)")
	fs.StringVar(&f.generator, "generator", "", "pushload binary run as generator children (default: this one)")
	fs.StringVar(&f.out, "out", "", "directory for JSON, PNG and profiles (default loadtest/results/<UTC date>)")
	fs.StringVar(&f.etcd, "etcd", envOr("PUSHGW_ETCD", "127.0.0.1:2379"), "etcd the bench cluster registers in, under its own /pushgw/bench-<random>/ prefix")
	fs.StringVar(&f.mysqlRoot, "mysql", envOr("PUSHGW_BENCH_MYSQL", "root@tcp(127.0.0.1:3306)/"), "MySQL DSN prefix; the bench creates and drops database pushgw_bench_<random>")
	fs.StringVar(&f.redisBin, "redis-server", "redis-server", "redis-server binary for the bench's private Redis")
	fs.IntVar(&f.conns, "conns", defaultBenchConns, "connections per room for idle, connect and churn")
	fs.IntVar(&f.conc, "c", 256, "connections being dialled and authenticated at once (over all generators)")
	fs.DurationVar(&f.connectTO, "connect-timeout", 10*time.Second, "deadline of one dial + AUTH round trip")
	fs.DurationVar(&f.settle, "settle", 5*time.Second, "wait after a connect phase before sampling memory")
	fs.DurationVar(&f.hold, "hold", 10*time.Second, "idle: how long connections are held after the memory sample")
	fs.BoolVar(&f.profiles, "profiles", true, "save the room's heap (held) and CPU (under load) pprof profiles next to the results")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bars")
	fs.BoolVar(&f.colocated, "colocated", true, "run the services tuned for sharing one small box: GOMAXPROCS=1 and GODEBUG=schedtrace=2147483647 (docs/OPERATIONS.md); false runs them with Go's defaults")
	fs.IntVar(&f.roomProcs, "room-procs", 1, "with -colocated: GOMAXPROCS of the rooms")
	fs.DurationVar(&f.limit, "limit", time.Hour, "the whole run stops after this long, whatever its phase")

	fs.IntVar(&f.users, "users", defaultUsers, "unicast: connected users pushes go to")
	fs.Float64Var(&f.rateStart, "rate-start", 100, "unicast: first offered rate (pushes/s)")
	fs.Float64Var(&f.rateFactor, "rate-factor", 2, "unicast: each step offers this times the last")
	fs.Float64Var(&f.rateMax, "rate-max", 25600, "unicast: highest offered rate")
	fs.DurationVar(&f.step, "step", 10*time.Second, "unicast: length of one rate step")
	fs.DurationVar(&f.p99Limit, "p99-limit", 50*time.Millisecond, "unicast: the ladder stops at the first step whose end-to-end p99 exceeds this")
	fs.StringVar(&f.transports, "transports", strings.Join(unicastTransports(), ","), "unicast: how pushes enter center, in order: http (POST /v1/push, one push per request, keep-alive) and/or grpc (PushStream)")
	fs.StringVar(&f.httpClient, "http-client", httpClientLean, "unicast (http), churn: the generator's HTTP client: lean (one keep-alive connection per worker, each request built in a reused buffer) or std (net/http and a JSON-marshalled map per push)")
	fs.IntVar(&f.grpcStreams, "grpc-streams", 8, "unicast: PushStreams the grpc transport spreads its pushes over (center answers at most 256 in flight per stream)")
	fs.DurationVar(&f.ackDelay, "ack-delay", 0, "unicast: the clients write each ACK this long after reading its PUSH (a mobile network's round trip; 0 acks at once)")
	fs.DurationVar(&f.drain, "drain", 10*time.Second, "unicast, churn: wait at most this long for outstanding deliveries")

	fs.Float64Var(&f.churnRate, "churn-rate", 300, "churn: connections closed and reopened per second in the steady phase")
	fs.DurationVar(&f.churnDuration, "churn-duration", 30*time.Second, "churn: length of the steady phase")
	fs.Float64Var(&f.churnPushRate, "churn-push-rate", 100, "churn: QoS 1 pushes per second to random users throughout")

	fs.IntVar(&f.boxTarget, "box-target", defaultBoxTarget, "box: connections to reach over all rooms")
	fs.IntVar(&f.roomConns, "room-conns", defaultBenchConns, "box: connections per room process")
	fs.Float64Var(&f.memLimitGiB, "mem-limit-gib", float64(defaultMemLimit>>30), "box: stop connecting when rooms, generators and cluster together use this much RSS")
	fs.Float64Var(&f.bcastRate, "bcast-rate", 20, "broadcast: broadcasts per second in the stream phase")
	fs.DurationVar(&f.bcastDuration, "bcast-duration", 10*time.Second, "broadcast: length of the stream phase")
	fs.IntVar(&f.bcastQoS, "bcast-qos", 1, "broadcast: qos of the broadcasts (1: every connection ACKs each one)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &f, f.validate()
}

func (f *benchFlags) validate() error {
	l := f.ladder()
	switch {
	case !contains(benchScenarios(), f.scenario):
		return fmt.Errorf("bench: -scenario %q: want one of %s", f.scenario, strings.Join(benchScenarios(), ", "))
	case f.conns < 1 || f.conns > roomMaxConns-1000:
		return fmt.Errorf("bench: -conns %d: want 1..%d (one room's file descriptors)", f.conns, roomMaxConns-1000)
	case f.scenario == "churn" && f.conns > maxConnsPerProc:
		return fmt.Errorf("bench: churn holds its connections in one process: -conns %d exceeds %d", f.conns, maxConnsPerProc)
	case f.conc < 1 || f.conc > 4096:
		return fmt.Errorf("bench: -c %d: want 1..4096", f.conc)
	case f.users < 1 || f.users > maxConnsPerProc:
		return fmt.Errorf("bench: -users %d: want 1..%d", f.users, maxConnsPerProc)
	case f.limit <= 0 || f.limit > maxBenchDuration:
		return fmt.Errorf("bench: -limit %v: want (0, %v]", f.limit, maxBenchDuration)
	case f.step < time.Second || f.step > maxDuration:
		return fmt.Errorf("bench: -step %v: want 1s..%v", f.step, maxDuration)
	case f.churnRate <= 0 || f.churnRate > maxRate || f.churnPushRate <= 0 || f.churnPushRate > maxRate:
		return fmt.Errorf("bench: -churn-rate %v, -churn-push-rate %v: want (0, %d]", f.churnRate, f.churnPushRate, maxRate)
	case f.churnDuration <= 0 || f.churnDuration > maxDuration:
		return fmt.Errorf("bench: -churn-duration %v: want (0, %v]", f.churnDuration, maxDuration)
	case f.boxTarget < 1 || f.boxTarget > maxBoxTarget:
		return fmt.Errorf("bench: -box-target %d: want 1..%d", f.boxTarget, maxBoxTarget)
	case f.roomConns < 1 || f.roomConns > roomMaxConns-1000:
		return fmt.Errorf("bench: -room-conns %d: want 1..%d", f.roomConns, roomMaxConns-1000)
	case f.memLimitGiB <= 0:
		return fmt.Errorf("bench: -mem-limit-gib %v: want > 0", f.memLimitGiB)
	case f.bcastRate <= 0 || f.bcastRate > maxBcastRate:
		return fmt.Errorf("bench: -bcast-rate %v: want (0, %d]", f.bcastRate, maxBcastRate)
	case f.bcastQoS != 0 && f.bcastQoS != 1:
		return fmt.Errorf("bench: -bcast-qos %d: want 0 or 1", f.bcastQoS)
	case f.bcastDuration <= 0 || f.bcastDuration > maxDuration:
		return fmt.Errorf("bench: -bcast-duration %v: want (0, %v]", f.bcastDuration, maxDuration)
	case f.settle < 0 || f.hold < 0 || f.drain < 0:
		return errors.New("bench: -settle, -hold and -drain must not be negative")
	}
	if _, err := parseEngines(f.engines); err != nil {
		return err
	}
	if !contains(httpClients(), f.httpClient) {
		return fmt.Errorf("bench: -http-client %q: want one of %s", f.httpClient, strings.Join(httpClients(), ", "))
	}
	if f.scenario == "unicast" {
		if err := l.validate(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if _, err := parseTransports(f.transports); err != nil {
			return err
		}
		if f.grpcStreams < 1 || f.grpcStreams > maxGRPCStreams {
			return fmt.Errorf("bench: -grpc-streams %d: want 1..%d", f.grpcStreams, maxGRPCStreams)
		}
	}
	return nil
}

func (f *benchFlags) ladder() ladder {
	return ladder{start: f.rateStart, factor: f.rateFactor, max: f.rateMax,
		p99LimitMS: float64(f.p99Limit) / float64(time.Millisecond)}
}

func parseEngines(list string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if e != engineStd && e != engineGnet {
			return nil, fmt.Errorf("bench: -engines: unknown engine %q (want std, gnet)", e)
		}
		if !contains(out, e) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("bench: -engines: name at least one engine")
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// bench is one invocation: a cluster, the engines to run and the results.
type bench struct {
	f       *benchFlags
	ctx     context.Context
	p       *progress
	cl      *benchCluster
	out     string
	git     string
	results []*Result
	// engineFlag says whether the room binary takes -engine.
	engineFlag bool
}

// BenchSummary is what `pushload bench` prints on stdout.
type BenchSummary struct {
	Scenario string `json:"scenario"`
	// Cluster and Database name what the run created (and removed).
	Cluster  string   `json:"cluster"`
	Database string   `json:"database"`
	Logs     string   `json:"logs"`
	Out      string   `json:"out"`
	Files    []string `json:"files"`
	Lines    []string `json:"summary"`
}

func runBench(args []string) (*BenchSummary, error) {
	f, err := parseBenchFlags(args)
	if err != nil {
		return nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, f.limit)
	defer cancel()
	out := f.out
	if out == "" {
		out = filepath.Join("loadtest", "results", time.Now().UTC().Format("2006-01-02"))
	}
	bin, err := filepath.Abs(f.binDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(bin, "room")); err != nil {
		return nil, fmt.Errorf("bench: no room binary in %s (run make build): %w", bin, err)
	}
	b := &bench{f: f, ctx: ctx, p: newProgress(ctx, !f.noProgress), out: out, git: gitCommit()}
	if b.engineFlag, err = roomEngines(filepath.Join(bin, "room")); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	runDir := f.logs
	if runDir == "" {
		if runDir, err = os.MkdirTemp("", "pushgw-bench-"); err != nil {
			return nil, err
		}
	}
	b.p.logf("scenario %s; cluster logs in %s; results in %s", f.scenario, runDir, out)
	bar := b.p.count(clusterProcs, "proc", "cluster: start")
	b.cl, err = startCluster(clusterConfig{binDir: bin, runDir: runDir, etcd: f.etcd, mysqlRoot: f.mysqlRoot,
		redisBin: f.redisBin, colocated: f.colocated, roomProcs: f.roomProcs, started: func(string) { _ = bar.Add(1) }})
	b.p.done(bar)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer func() {
		b.p.logf("stopping the bench cluster %s", b.cl.Name)
		b.cl.Stop()
	}()
	engines, _ := parseEngines(f.engines)
	for i, e := range engines {
		if ctx.Err() != nil {
			break
		}
		if e != engineStd && !b.engineFlag {
			b.skip(e, "the room binary has no -engine flag (the gnet engine is not merged yet): "+e+" half skipped")
			continue
		}
		flagVal := e
		if !b.engineFlag {
			flagVal = "" // the binary's only engine is the goroutine one
		}
		if err := b.runScenario(i, e, flagVal); err != nil {
			return nil, fmt.Errorf("bench %s, engine %s: %w", f.scenario, e, err)
		}
	}
	return b.finish()
}

// runScenario runs the scenario on one engine.
func (b *bench) runScenario(i int, engine, flagVal string) error {
	switch b.f.scenario {
	case "idle":
		return b.idle(i, engine, flagVal)
	case "connect":
		return b.connect(i, engine, flagVal)
	case "unicast":
		return b.unicast(i, engine, flagVal)
	case "churn":
		return b.churn(i, engine, flagVal)
	case "box":
		return b.box(i, engine, flagVal)
	case "broadcast":
		return b.broadcast(i, engine, flagVal)
	}
	return fmt.Errorf("unknown scenario %q", b.f.scenario)
}

// newResult starts a result with the fields every run shares.
func (b *bench) newResult(engine string) *Result {
	return &Result{Schema: resultSchema, Scenario: b.f.scenario, Engine: engine, Date: time.Now().UTC(),
		Git: b.git, Loadavg: Loadavg{Before: loadAvg()}, ErrorKinds: map[string]int64{}}
}

func (b *bench) skip(engine, why string) {
	b.p.logf("%s", why)
	transports := []string{""}
	if b.f.scenario == "unicast" {
		transports, _ = parseTransports(b.f.transports)
	}
	for _, tp := range transports {
		r := b.newResult(engine)
		r.Skipped, r.Transport = why, tp
		r.Loadavg.After = r.Loadavg.Before
		b.results = append(b.results, r)
	}
}

// keep finishes r and records it.
func (b *bench) keep(r *Result) {
	r.Loadavg.After = loadAvg()
	r.Seconds = time.Since(r.Date).Seconds()
	if b.f.colocated {
		r.Notes = append(r.Notes, fmt.Sprintf("services run co-located: %s, rooms with GOMAXPROCS=%d", strings.Join(colocatedEnv, " "), max(b.f.roomProcs, 1)))
	} else {
		r.Notes = append(r.Notes, "services run with Go's default GOMAXPROCS and GODEBUG (-colocated=false)")
	}
	if b.ctx.Err() != nil {
		r.Notes = append(r.Notes, "run interrupted or stopped by -limit before the end: "+b.ctx.Err().Error())
	}
	b.results = append(b.results, r)
}

// finish writes every result and the plots, and returns the summary.
func (b *bench) finish() (*BenchSummary, error) {
	s := &BenchSummary{Scenario: b.f.scenario, Out: b.out, Cluster: b.cl.Name, Database: b.cl.DB, Logs: b.cl.cfg.runDir}
	for _, r := range b.results {
		path, err := writeResult(b.out, r)
		if err != nil {
			return nil, err
		}
		s.Files = append(s.Files, path)
		s.Lines = append(s.Lines, r.oneLine())
	}
	var plots []string
	stamp := time.Now().UTC().Format("150405")
	switch b.f.scenario {
	case "idle", "box", "churn", "connect":
		p, err := plotRSS(b.out, b.f.scenario+"-rss-"+stamp+".png",
			"room RSS vs connections ("+b.f.scenario+", "+time.Now().UTC().Format("2006-01-02")+")", b.results)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
	case "unicast":
		p, err := plotLatency(b.out, "unicast-latency-"+stamp+".png",
			"unicast latency vs offered rate ("+time.Now().UTC().Format("2006-01-02")+")", b.results)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
		p, err = plotP99(b.out, "unicast-p99-"+stamp+".png",
			"unicast p99 vs offered rate, per transport ("+time.Now().UTC().Format("2006-01-02")+")",
			b.f.ladder().p99LimitMS, b.results)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
	}
	for _, p := range plots {
		if p != "" {
			s.Files = append(s.Files, p)
		}
	}
	for _, l := range s.Lines {
		b.p.logf("%s", l)
	}
	return s, nil
}

// oneLine is the human summary of a result.
func (r *Result) oneLine() string {
	name := r.Scenario
	if r.Mode != "" {
		name += "/" + r.Mode
	}
	if r.Transport != "" {
		name += "/" + r.Transport
	}
	if r.Skipped != "" {
		return fmt.Sprintf("%s %s: skipped: %s", name, r.Engine, r.Skipped)
	}
	if bf := r.Broadcast; bf != nil && bf.Stream != nil {
		return fmt.Sprintf("%s %s: conns %d, one broadcast: answer %.1f ms, last delivery %.1f ms after the answer, p50 %.1f ms p99 %.1f ms from the request, reached %d; stream %.0f/s offered: %d accepted, %.0f deliveries/s, %.0f deliveries per room CPU-s; errors %d, missing %d, load %s",
			name, r.Engine, r.Conns, bf.APIAnswerMS, bf.LastAfterAnswer, r.LatencyMS.P50, r.LatencyMS.P99, bf.Reached,
			bf.Stream.Offered, bf.Stream.Accepted, bf.Stream.DeliveriesPerS, bf.Stream.DeliveriesPerRoomCPUS, r.Errors, r.Missing, r.Loadavg.After)
	}
	if r.Scenario == "unicast" {
		h := r.HopsMS
		return fmt.Sprintf("%s %s: sustainable %.0f/s; there: deliveries %.0f/s, p50 %.2f p99 %.2f max %.2f ms (p99 accepted %.2f, stored %.2f, acked %.2f), room %.1f µs/push, GC p99 %.3f max %.3f ms, errors %d, missing %d, load %s",
			name, r.Engine, r.SustainableRate, r.DeliveriesPerS, r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max,
			h["accepted"].P99, h["stored"].P99, h["acked"].P99, r.RoomCPUMicrosPerDelivery, r.GCPauseMS.P99, r.GCPauseMS.Max,
			r.Errors, r.Missing, r.Loadavg.After)
	}
	return fmt.Sprintf("%s %s: conns %d, RSS %.0f B/conn, heap %.0f B/conn, accept+auth %.0f/s, deliveries %.0f/s, p99 %.2f ms, GC p99 %.3f ms max %.3f ms, errors %d, missing %d, load %s",
		name, r.Engine, r.Conns, r.RSSBytesPerConn, r.HeapBytesPerConn, r.AcceptAuthPerS, r.DeliveriesPerS,
		r.LatencyMS.P99, r.GCPauseMS.P99, r.GCPauseMS.Max, r.Errors, r.Missing, r.Loadavg.After)
}
