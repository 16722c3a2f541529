package discovery

import (
	"encoding/json"
	"fmt"
)

// Drain marks: an operator (center's admin API, `pushctl room drain`) asks
// a room to drain by writing a DrainMark under DrainKey. The room watches
// its own key, publishes Draining in its instance (which the dispatcher
// already leaves out) and redirects its clients at the mark's pace. The
// key is separate from the instance key because that one belongs to the
// room's lease and the room rewrites it every few seconds.

// Bounds of a drain mark's settings.
const (
	// MaxDrainRate bounds clients redirected per second (a faster drain
	// is a reconnect storm, what pacing exists to avoid).
	MaxDrainRate = 100_000
	// MaxDrainDeadlineSec bounds how long a drain may run: one day.
	MaxDrainDeadlineSec = 86_400
)

// DrainMark is the value under DrainKey. Zero fields take the room's
// flag defaults (-drain-rate, -drain-deadline).
type DrainMark struct {
	// Rate is clients redirected per second.
	Rate int `json:"rate,omitempty"`
	// DeadlineSec is how long the room keeps pacing from when it sees the
	// mark; at the deadline the clients still connected are redirected at
	// once and the room exits.
	DeadlineSec int `json:"deadline_sec,omitempty"`
	// RequestedMS is when the mark was written (Unix ms), for operators.
	RequestedMS int64 `json:"requested_ms,omitempty"`
}

// DrainPrefix is the prefix of every room's drain mark in cluster.
func DrainPrefix(cluster string) string { return "/pushgw/" + cluster + "/drain/room/" }

// DrainKey is the drain mark of one room instance.
func DrainKey(cluster, roomID string) string { return DrainPrefix(cluster) + roomID }

// Validate checks the mark's bounds.
func (m DrainMark) Validate() error {
	if m.Rate < 0 || m.Rate > MaxDrainRate {
		return fmt.Errorf("drain rate %d: want 0 (room default)..%d clients/s", m.Rate, MaxDrainRate)
	}
	if m.DeadlineSec < 0 || m.DeadlineSec > MaxDrainDeadlineSec {
		return fmt.Errorf("drain deadline %d s: want 0 (room default)..%d", m.DeadlineSec, MaxDrainDeadlineSec)
	}
	return nil
}

// ParseDrainMark decodes and checks a mark.
func ParseDrainMark(raw []byte) (DrainMark, error) {
	var m DrainMark
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("drain mark: %w", err)
	}
	return m, m.Validate()
}
