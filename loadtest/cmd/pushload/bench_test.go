package main

import (
	"encoding/json"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// within says whether got is within 0.1% (HDR's three digits) of want.
func within(got, want float64) bool { return math.Abs(got-want) <= want*0.001+1e-9 }

func TestHistSummary(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 500}, {"p90", s.P90, 900}, {"p99", s.P99, 990}, {"p999", s.P999, 999}, {"max", s.Max, 1000}} {
		if !within(c.got, c.want) {
			t.Errorf("%s = %v ms, want %v ±0.1%%", c.name, c.got, c.want)
		}
	}
	if s.Count != 1000 {
		t.Errorf("count = %d", s.Count)
	}
	if e := newHist().Summary(); e != (LatencyMS{}) {
		t.Errorf("empty summary = %+v", e)
	}
	var zero hist // usable without newHist
	zero.Record(time.Millisecond)
	if zero.Summary().Count != 1 {
		t.Error("zero hist did not record")
	}
}

func TestHistClampsOutOfRange(t *testing.T) {
	h := newHist()
	h.Record(0)
	h.Record(10 * time.Minute)
	s := h.Summary()
	if s.Count != 2 || h.clipped != 1 || !within(s.Max, float64(histMaxMicros)/1000) {
		t.Fatalf("summary %+v clipped %d", s, h.clipped)
	}
}

// Children ship encoded histograms; the parent's merge must give the
// percentiles of all values together, not the worst child's.
func TestHistEncodeMerge(t *testing.T) {
	a, b, all := newHist(), newHist(), newHist()
	for i := 1; i <= 900; i++ {
		a.Record(time.Duration(i) * time.Millisecond)
		all.Record(time.Duration(i) * time.Millisecond)
	}
	for i := 901; i <= 1000; i++ {
		b.Record(time.Duration(i) * time.Millisecond)
		all.Record(time.Duration(i) * time.Millisecond)
	}
	merged := newHist()
	for _, h := range []*hist{a, b} {
		enc, err := h.Encode()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := decodeHist(enc)
		if err != nil {
			t.Fatal(err)
		}
		merged.Merge(dec)
	}
	if got, want := merged.Summary(), all.Summary(); got != want {
		t.Fatalf("merged %+v, want %+v", got, want)
	}
	if _, err := decodeHist([]byte("not a histogram")); err == nil {
		t.Fatal("decodeHist accepted garbage")
	}
	if e, err := decodeHist(nil); err != nil || e.Summary().Count != 0 {
		t.Fatalf("empty input: %v %v", e, err)
	}
}

func TestHistConcurrent(t *testing.T) {
	h := newHist()
	other := newHist()
	other.Record(time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h.Record(time.Millisecond)
				if i%100 == 0 {
					_ = h.Summary()
				}
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); h.Merge(other) }()
	wg.Wait()
	if n := h.Summary().Count; n != 8001 {
		t.Fatalf("count = %d, want 8001", n)
	}
}

func TestGCPauseLines(t *testing.T) {
	log := strings.Join([]string{
		`{"level":"INFO","msg":"room started"}`,
		`gc 1 @0.012s 2%: 0.018+1.2+0.003 ms clock, 0.036+0.3/0.9/0+0.006 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P`,
		`gc 2 @1.500s 1%: 1.5+20+3.5 ms clock, 3.0+1/2/0+7 ms cpu, 30->31->20 MB, 40 MB goal, 1 MB stacks, 0 MB globals, 2 P`,
		`gc 3 @2.000s 1%: x+1+2 ms clock, ...`,
		`gc 4 @2.5s 1%: 1+2 ms clock`,
		`gc 5 @3s (forced)`,
	}, "\n")
	h, err := parseGCPauses(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	s := h.gcSummary()
	// 0.021 ms and 5 ms; the malformed lines are ignored.
	if s.Count != 2 || !within(s.Max, 5) {
		t.Fatalf("pauses %+v, want 2 with max 5 ms", s)
	}
	if d, ok := gcPause(`gc 1 @0.012s 2%: 0.018+1.2+0.003 ms clock, rest`); !ok || d != 21*time.Microsecond {
		t.Fatalf("gcPause = %v %v, want 21µs", d, ok)
	}
}

func TestGCPausesFromOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "room.log")
	early := "gc 1 @0.1s 1%: 9+1+9 ms clock, x\n"
	if err := os.WriteFile(path, []byte(early), 0o644); err != nil {
		t.Fatal(err)
	}
	off := logOffset(path)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("gc 2 @0.2s 1%: 0.5+1+0.5 ms clock, x\n")
	f.Close()
	h, err := gcPauses(path, off)
	if err != nil {
		t.Fatal(err)
	}
	if s := h.gcSummary(); s.Count != 1 || !within(s.Max, 1) {
		t.Fatalf("window %+v, want only the 1 ms pause after the offset", s)
	}
	if _, err := gcPauses(filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		t.Fatal("missing log accepted")
	}
}

func TestLadder(t *testing.T) {
	l := ladder{start: 500, factor: 1.5, max: 4000, p99LimitMS: 50}
	if err := l.validate(); err != nil {
		t.Fatal(err)
	}
	want := []float64{500, 750, 1125, 1688, 2531, 3797}
	if got := l.rates(); !reflect.DeepEqual(got, want) {
		t.Fatalf("rates = %v, want %v", got, want)
	}
	if n := len((ladder{start: 1, factor: 1.01, max: maxRate, p99LimitMS: 1}).rates()); n != maxLadderSteps {
		t.Fatalf("a long ladder has %d steps, want the bound %d", n, maxLadderSteps)
	}
	ok := RateStep{Offered: 500, Achieved: 499, LatencyMS: LatencyMS{P99: 10}}
	slow := RateStep{Offered: 750, Achieved: 750, LatencyMS: LatencyMS{P99: 60}}
	short := RateStep{Offered: 750, Achieved: 600, LatencyMS: LatencyMS{P99: 10}}
	lost := RateStep{Offered: 750, Achieved: 750, LatencyMS: LatencyMS{P99: 10}, Missing: 3}
	if r := l.stopReason(ok); r != "" {
		t.Errorf("ok step stops: %s", r)
	}
	for name, s := range map[string]RateStep{"slow": slow, "short": short, "lost": lost} {
		if l.stopReason(s) == "" {
			t.Errorf("%s step does not stop the ladder", name)
		}
	}
	if got := l.sustainable([]RateStep{ok, slow}); got != 500 {
		t.Errorf("sustainable = %v, want 500", got)
	}
	if got := l.sustainable([]RateStep{slow}); got != 0 {
		t.Errorf("sustainable of a failed first step = %v, want 0", got)
	}
	if headlineStep(nil, 0) != -1 || headlineStep([]RateStep{slow}, 0) != 0 || headlineStep([]RateStep{ok, slow}, 500) != 0 {
		t.Error("headlineStep")
	}
	for _, bad := range []ladder{
		{start: 0, factor: 2, max: 10, p99LimitMS: 1}, {start: 10, factor: 1, max: 100, p99LimitMS: 1},
		{start: 10, factor: 2, max: 5, p99LimitMS: 1}, {start: 10, factor: 2, max: 100, p99LimitMS: 0},
	} {
		if bad.validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// The fields the issue names are part of the JSON contract.
func TestResultSchema(t *testing.T) {
	r := &Result{Schema: resultSchema, Scenario: "unicast", Engine: "std", Transport: "http",
		Date: time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC), Git: "abc", Loadavg: Loadavg{"1 2 3", "4 5 6"},
		LatencyMS: LatencyMS{P50: 1, P99: 2, P999: 3, Max: 4}, GCPauseMS: GCPauseMS{P99: 0.5, Max: 1}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "scenario", "engine", "conns", "rss_bytes_per_conn", "heap_bytes_per_conn",
		"accept_auth_per_s", "deliveries_per_s", "latency_ms", "gc_pause_ms", "errors", "loadavg", "git_commit",
		"transport", "missing"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result JSON lacks %q", k)
		}
	}
	lat := m["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p99", "p999", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_ms lacks %q", k)
		}
	}
	gc := m["gc_pause_ms"].(map[string]any)
	for _, k := range []string{"p99", "max"} {
		if _, ok := gc[k]; !ok {
			t.Errorf("gc_pause_ms lacks %q", k)
		}
	}
}

// Every top-level JSON field is documented in loadtest/README.md.
func TestResultFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(Result{}), reflect.TypeOf(RateStep{})} {
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if !documented[name] {
				t.Errorf("%s field %q is not documented in loadtest/README.md", typ.Name(), name)
			}
		}
	}
}

func TestWriteResult(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results", "2026-12-01")
	r := &Result{Schema: resultSchema, Scenario: "connect", Mode: "cluster", Engine: "gnet",
		Date: time.Date(2026, 12, 1, 16, 5, 9, 0, time.UTC), Conns: 18000, RSSBytesPerConn: 1024.5,
		ErrorKinds: map[string]int64{"connect_timeout": 2}, Errors: 2}
	path, err := writeResult(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "connect-cluster-gnet-160509.json" {
		t.Fatalf("file name %s", filepath.Base(path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Fatalf("read back %+v, want %+v", back, *r)
	}
	u := &Result{Scenario: "unicast", Transport: "http", Engine: "std", Date: r.Date}
	if u.fileName() != "unicast-http-std-160509.json" {
		t.Fatalf("unicast file name %s", u.fileName())
	}
	// A directory that cannot be created is an error, not a silent skip.
	if _, err := writeResult(filepath.Join(path, "sub"), r); err == nil {
		t.Fatal("writeResult under a file succeeded")
	}
}

func TestProgressLines(t *testing.T) {
	if ok, failed, is := parseProgress("pushload-progress 1500 3"); !is || ok != 1500 || failed != 3 {
		t.Fatalf("parsed %d %d %v", ok, failed, is)
	}
	for _, bad := range []string{"pushload-ready", "pushload-progress x 1", "pushload-progress 1", "some log line"} {
		if _, _, is := parseProgress(bad); is {
			t.Errorf("%q taken for progress", bad)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	f, err := parseBenchFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.scenario != "idle" || f.conns != 18000 || f.boxTarget != 200000 || f.memLimitGiB != 24 || f.p99Limit != 50*time.Millisecond {
		t.Fatalf("defaults %+v", f)
	}
	for _, bad := range [][]string{
		{"-scenario", "soak"}, {"-engines", "std,epoll"}, {"-engines", ","},
		{"-scenario", "churn", "-conns", "19000"}, {"-conns", "25000"}, {"-box-target", "0"},
		{"-scenario", "unicast", "-rate-factor", "1"}, {"-limit", "5h"}, {"-settle", "-1s"},
	} {
		if _, err := parseBenchFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if got, _ := parseEngines("gnet, std,gnet"); !reflect.DeepEqual(got, []string{"gnet", "std"}) {
		t.Errorf("engines = %v", got)
	}
	if procsFor(18000) != 2 || procsFor(200000) != 14 || procsFor(1) != 1 {
		t.Errorf("procsFor: %d %d %d", procsFor(18000), procsFor(200000), procsFor(1))
	}
}

func TestEngineFlagInHelp(t *testing.T) {
	with := "Usage of room:\n  -admin string\n    \tadmin listener\n  -engine string\n    \tgnet or std (default \"gnet\")\n"
	without := "Usage of room:\n  -admin string\n    \tsays -engine in a description\n"
	if !hasEngineFlag(with) || hasEngineFlag(without) {
		t.Fatal("hasEngineFlag misreads room -h")
	}
}

// roomEngines on the real room binary agrees with the room's source:
// skipped before the gnet engine is merged, detected after.
func TestRoomEnginesOnRealRoom(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "room")
	out, err := exec.Command("go", "build", "-o", bin, "../../../services/room").CombinedOutput()
	if err != nil {
		t.Fatalf("build room: %v\n%s", err, out)
	}
	got, err := roomEngines(bin)
	if err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Glob("../../../services/room/*.go")
	if err != nil {
		t.Fatal(err)
	}
	want := false
	for _, f := range src {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), `"engine",`) {
			want = true
		}
	}
	if got != want {
		t.Fatalf("roomEngines = %v, but the room source defines -engine: %v", got, want)
	}
}

// connectCPU leaves out a process it has no start sample of and divides
// by the logins.
func TestConnectCPU(t *testing.T) {
	secs, per := connectCPU(map[string]float64{"room": 1.0, "saver": 2.0},
		map[string]float64{"room": 1.5, "saver": 2.25, "redis": 9}, 0.5, 1000)
	want := map[string]float64{"room": 0.5, "saver": 0.25, "generators": 0.5}
	if !reflect.DeepEqual(secs, want) {
		t.Errorf("seconds %v, want %v", secs, want)
	}
	if per["room"] != 500 || per["saver"] != 250 || per["generators"] != 500 || len(per) != 3 {
		t.Errorf("per login %v", per)
	}
	if _, per := connectCPU(nil, nil, 1, 0); per != nil {
		t.Errorf("no logins: per login %v, want none", per)
	}
}

// A dial from a chosen source address arrives from it (bindNoPort leaves
// the port to connect()).
func TestDialFromSourceAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src, err := checkSourceIPs(genSourceList())
	if err != nil || len(src) != genSources {
		t.Fatalf("sources %v: %v", src, err)
	}
	nd := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src[6]}, Control: bindNoPort}
	c, err := nd.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if got := sc.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.1.7" {
		t.Errorf("accepted from %s, want 127.0.1.7", got)
	}
	// And the option that keeps bind from taking the port is set.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "probe")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := bindNoPort("tcp4", "", rc); err != nil {
		t.Fatal(err)
	}
	if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT); err != nil || v != 1 {
		t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d (%v), want 1", v, err)
	}
}
