package appconfig

import "fmt"

// Limits are an app's rate limits and pacing, enforced by every center
// together (GCRA in Redis, so N centers admit what one would). Zero means
// unlimited, which is the default. They live in the app's etcd config
// beside its other settings and apply live: the Store watches etcd.
type Limits struct {
	// PushRate is POST /v1/push requests per second; PushBurst how many
	// may come at once (default PushRate).
	PushRate  int `json:"push_rate,omitempty"`
	PushBurst int `json:"push_burst,omitempty"`
	// MultiRate is recipients per second over POST /v1/push/multi (a
	// request of 1,000 users costs 1,000); MultiBurst (default MultiRate)
	// is also the most recipients one request may name.
	MultiRate  int `json:"multi_rate,omitempty"`
	MultiBurst int `json:"multi_burst,omitempty"`
	// BroadcastRate is POST /v1/broadcast requests per second.
	BroadcastRate  int `json:"broadcast_rate,omitempty"`
	BroadcastBurst int `json:"broadcast_burst,omitempty"`
	// DeliveriesPerSecond paces large sends (a multicast's messages, a
	// broadcast's connections) across the cluster, so replies and
	// callbacks they trigger cannot stampede the business's servers.
	DeliveriesPerSecond int `json:"deliveries_per_second,omitempty"`
}

// MaxLimit bounds every rate, burst and pace: far above what a cluster
// serves, low enough that GCRA's float arithmetic in Redis stays exact.
const MaxLimit = 10_000_000

// Validate checks that every setting is within 0..MaxLimit.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"push_rate", l.PushRate}, {"push_burst", l.PushBurst}, {"multi_rate", l.MultiRate}, {"multi_burst", l.MultiBurst},
		{"broadcast_rate", l.BroadcastRate}, {"broadcast_burst", l.BroadcastBurst}, {"deliveries_per_second", l.DeliveriesPerSecond},
	} {
		if f.v < 0 || f.v > MaxLimit {
			return fmt.Errorf("appconfig: %s is %d; want 0 (unlimited) to %d", f.name, f.v, MaxLimit)
		}
	}
	return nil
}

// Rate is one limit as center applies it: Rate events per second, at
// most Burst at once. Rate 0 is unlimited.
type Rate struct{ Rate, Burst int }

func rate(r, burst int) Rate {
	if burst <= 0 {
		burst = r
	}
	return Rate{Rate: r, Burst: burst}
}

// Push is the limit of POST /v1/push requests.
func (l Limits) Push() Rate { return rate(l.PushRate, l.PushBurst) }

// Multi is the limit of multicast recipients.
func (l Limits) Multi() Rate { return rate(l.MultiRate, l.MultiBurst) }

// Broadcast is the limit of POST /v1/broadcast requests.
func (l Limits) Broadcast() Rate { return rate(l.BroadcastRate, l.BroadcastBurst) }
