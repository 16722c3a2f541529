package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	scrapeTimeout = 10 * time.Second
	// clockTicks is USER_HZ, 100 on every Linux this runs on.
	clockTicks = 100
	// maxScrapeBytes bounds a /metrics or heap profile body.
	maxScrapeBytes = 64 << 20
)

// probe samples one room process: memory and CPU from /proc, runtime and
// room figures from its admin listener. Either half may be absent.
type probe struct {
	pid   int
	admin string // host:port of the admin listener, validated loopback
	http  *http.Client
}

// Sample is one observation of the room.
type Sample struct {
	At          time.Time          `json:"at"`
	RSSBytes    int64              `json:"rss_bytes,omitempty"`
	Threads     int64              `json:"threads,omitempty"`
	CPUSeconds  float64            `json:"cpu_seconds,omitempty"`
	HeapInuse   float64            `json:"heap_inuse_bytes,omitempty"`
	StackInuse  float64            `json:"stack_inuse_bytes,omitempty"`
	GoSys       float64            `json:"go_sys_bytes,omitempty"`
	Goroutines  float64            `json:"goroutines,omitempty"`
	Connections float64            `json:"connections,omitempty"`
	GCCount     float64            `json:"gc_count,omitempty"`
	GCPauseSum  float64            `json:"gc_pause_seconds_sum,omitempty"`
	GCQuantiles map[string]float64 `json:"gc_pause_quantiles_seconds,omitempty"`
	Pushes      float64            `json:"pushes_written,omitempty"`
	AuthsOK     float64            `json:"auths_ok,omitempty"`
	LoadAvg     string             `json:"loadavg,omitempty"`
}

func newProbe(pid int, admin string) (*probe, error) {
	if admin != "" {
		if _, err := checkTCPAddrs(admin); err != nil {
			return nil, fmt.Errorf("-room-admin: %w", err)
		}
	}
	if pid == 0 && admin == "" {
		return nil, nil
	}
	return &probe{pid: pid, admin: admin, http: &http.Client{Timeout: scrapeTimeout}}, nil
}

func (p *probe) Sample() (Sample, error) {
	s := Sample{At: time.Now().UTC(), LoadAvg: loadAvg()}
	if p == nil {
		return s, nil
	}
	if p.pid > 0 {
		if err := p.readProc(&s); err != nil {
			return s, err
		}
	}
	if p.admin != "" {
		m, err := p.scrape()
		if err != nil {
			return s, err
		}
		s.HeapInuse = m["go_memstats_heap_inuse_bytes"]
		s.StackInuse = m["go_memstats_stack_inuse_bytes"]
		s.GoSys = m["go_memstats_sys_bytes"]
		s.Goroutines = m["go_goroutines"]
		s.Connections = m["pushgw_room_connections"]
		s.GCCount = m["go_gc_duration_seconds_count"]
		s.GCPauseSum = m["go_gc_duration_seconds_sum"]
		s.Pushes = m["pushgw_room_pushes_written_total"]
		s.AuthsOK = m[`pushgw_room_auths_total{result="ok"}`]
		s.GCQuantiles = map[string]float64{}
		for k, v := range m {
			if q, ok := strings.CutPrefix(k, `go_gc_duration_seconds{quantile="`); ok {
				s.GCQuantiles[strings.TrimSuffix(q, `"}`)] = v
			}
		}
	}
	return s, nil
}

func (p *probe) readProc(s *Sample) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return fmt.Errorf("probe: room pid %d: %w", p.pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSSBytes = n << 10
		case "Threads":
			s.Threads = n
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return fmt.Errorf("probe: room pid %d: %w", p.pid, err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) > 12 {
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		s.CPUSeconds = (ut + st) / clockTicks
	}
	return nil
}

// scrape reads the Prometheus text format into "name{labels}" -> value.
func (p *probe) scrape() (map[string]float64, error) {
	body, err := p.get("/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(strings.NewReader(string(body))), nil
}

func parseMetrics(r io.Reader) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// heapProfile forces a GC in the room (pprof's gc=1) and returns the heap
// profile, so a following sample sees live memory rather than garbage.
func (p *probe) heapProfile() ([]byte, error) {
	if p == nil || p.admin == "" {
		return nil, nil
	}
	return p.get("/debug/pprof/heap?gc=1")
}

func (p *probe) get(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("probe: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxScrapeBytes))
	if err != nil {
		return nil, fmt.Errorf("probe: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("probe: GET %s: %s", path, resp.Status)
	}
	return b, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// parseCPUPIDs parses "name=pid,name=pid".
func parseCPUPIDs(list string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range strings.Split(list, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		name, pid, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(pid)
		if !ok || name == "" || err != nil || n <= 0 {
			return nil, fmt.Errorf("-cpu-pids %q: want name=pid", kv)
		}
		out[name] = n
	}
	return out, nil
}

// cpuOf reads the CPU seconds used so far by each process (absent when it
// cannot be read).
func cpuOf(pids map[string]int) map[string]float64 {
	out := make(map[string]float64, len(pids))
	for name, pid := range pids {
		var s Sample
		if err := (&probe{pid: pid}).readProc(&s); err == nil {
			out[name] = s.CPUSeconds
		}
	}
	return out
}
