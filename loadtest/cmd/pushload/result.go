package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// resultSchema is bumped when a field of Result changes meaning or goes
// away; adding fields keeps it (loadtest/README.md).
const resultSchema = 1

// Result is the JSON of one bench run: one scenario, one engine (one
// mode or transport where the scenario has several). Field names are a
// stable contract, documented in loadtest/README.md.
type Result struct {
	Schema    int       `json:"schema"`
	Scenario  string    `json:"scenario"`
	Engine    string    `json:"engine"`
	Mode      string    `json:"mode,omitempty"`
	Transport string    `json:"transport,omitempty"`
	Skipped   string    `json:"skipped,omitempty"`
	Date      time.Time `json:"date"`
	Git       string    `json:"git_commit"`
	Loadavg   Loadavg   `json:"loadavg"`
	Seconds   float64   `json:"seconds"`

	Rooms          int `json:"rooms"`
	GeneratorProcs int `json:"generator_procs"`
	Requested      int `json:"requested_conns"`
	Conns          int `json:"conns"`

	RSSBytesPerConn  float64          `json:"rss_bytes_per_conn"`
	HeapBytesPerConn float64          `json:"heap_bytes_per_conn"`
	AcceptAuthPerS   float64          `json:"accept_auth_per_s"`
	DeliveriesPerS   float64          `json:"deliveries_per_s"`
	LatencyMS        LatencyMS        `json:"latency_ms"`
	GCPauseMS        GCPauseMS        `json:"gc_pause_ms"`
	Errors           int64            `json:"errors"`
	ErrorKinds       map[string]int64 `json:"error_kinds,omitempty"`
	Missing          int64            `json:"missing"`
	Duplicates       int64            `json:"duplicates"`

	RoomCPUMicrosPerDelivery float64 `json:"room_cpu_us_per_delivery,omitempty"`
	RoomCPUMicrosPerAuth     float64 `json:"room_cpu_us_per_auth,omitempty"`
	SustainableRate          float64 `json:"sustainable_rate"`
	KernelBytesPerConn       float64 `json:"kernel_bytes_per_conn,omitempty"`
	RSSAfterBytes            int64   `json:"room_rss_after_bytes,omitempty"`
	RSSBeforeBytes           int64   `json:"room_rss_before_bytes,omitempty"`
	RSSHeldBytes             int64   `json:"room_rss_held_bytes,omitempty"`
	RoomRestarted            bool    `json:"room_restarted,omitempty"`

	// Broadcast holds the broadcast scenario's figures.
	Broadcast *BroadcastFigures `json:"broadcast,omitempty"`

	// Unicast: the headline step's hops, service histograms and CPU per
	// process (RateStep has the same per step).
	HopsMS            map[string]LatencyMS `json:"hops_ms,omitempty"`
	ServiceHistograms map[string]HistFig   `json:"service_histograms,omitempty"`
	CPUSeconds        map[string]float64   `json:"cpu_seconds,omitempty"`
	CPUMicrosPerPush  map[string]float64   `json:"cpu_us_per_delivery,omitempty"`
	CPUMicrosPerAuth  map[string]float64   `json:"cpu_us_per_auth,omitempty"`

	Steps    []RateStep  `json:"steps,omitempty"`
	Series   []ConnPoint `json:"rss_series,omitempty"`
	Profiles []string    `json:"profiles,omitempty"`
	Notes    []string    `json:"notes,omitempty"`
}

// Loadavg is /proc/loadavg's three averages at the start and end.
type Loadavg struct {
	Before string `json:"before"`
	After  string `json:"after"`
}

// GCPauseMS summarises the room's stop-the-world pauses in the measured
// window (from gctrace, gcpause.go).
type GCPauseMS struct {
	Count int64   `json:"count"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// RateStep is one offered rate of the unicast ladder.
type RateStep struct {
	Offered        float64   `json:"offered_per_s"`
	Achieved       float64   `json:"achieved_per_s"`
	DeliveriesPerS float64   `json:"deliveries_per_s"`
	LatencyMS      LatencyMS `json:"latency_ms"`
	GCPauseMS      GCPauseMS `json:"gc_pause_ms"`
	Accepted       int64     `json:"accepted"`
	Delivered      int64     `json:"delivered"`
	Missing        int64     `json:"missing"`
	Errors         int64     `json:"errors"`
	RoomCPUMicros  float64   `json:"room_cpu_us_per_delivery"`

	// HopsMS: accepted, stored, delivered, acked from the request start
	// (hops.go).
	HopsMS map[string]LatencyMS `json:"hops_ms,omitempty"`
	// ServiceHistograms: center's and saver's own histograms over the
	// step (unicastHists).
	ServiceHistograms map[string]HistFig `json:"service_histograms,omitempty"`
	// SaverAcked is the growth of saver's acked outcomes over the step
	// and its drain: the step's ACKs saver recorded.
	SaverAcked int64 `json:"saver_acked"`
	// CPUSeconds per process (room, center, saver, register, redis, …,
	// pushload itself, mariadb) over the step and its drain, and the same
	// per delivered push in µs.
	CPUSeconds       map[string]float64 `json:"cpu_seconds,omitempty"`
	CPUMicrosPerPush map[string]float64 `json:"cpu_us_per_delivery,omitempty"`
	// Outcomes counts the answers by HTTP status or API code.
	Outcomes map[string]int `json:"outcomes,omitempty"`
}

// ConnPoint is one sample of memory against connections held.
type ConnPoint struct {
	Conns    float64 `json:"conns"`
	RSSBytes int64   `json:"rss_bytes"`
	Heap     float64 `json:"heap_inuse_bytes"`
}

// fileName is where a result goes: <scenario>[-<mode>]-<engine>-<hhmmss>.json.
func (r *Result) fileName() string {
	parts := []string{r.Scenario}
	if r.Mode != "" {
		parts = append(parts, r.Mode)
	}
	if r.Transport != "" {
		parts = append(parts, r.Transport)
	}
	parts = append(parts, r.Engine, r.Date.UTC().Format("150405"))
	return strings.Join(parts, "-") + ".json"
}

// writeResult writes r into dir and returns the path.
func writeResult(dir string, r *Result) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("result: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("result: encode: %w", err)
	}
	path := filepath.Join(dir, r.fileName())
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("result: %w", err)
	}
	return path, nil
}

// gitCommit names the checked-out commit ("+dirty" with local changes),
// or "unknown" outside a git tree.
func gitCommit() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		commit += "+dirty"
	}
	return commit
}
