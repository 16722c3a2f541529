package main

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Admission bounds.
const (
	// maxAdmissionPrefixes bounds each of the allow and deny lists.
	maxAdmissionPrefixes = 4096
	// maxConnectRate bounds connect_rate (connects per second per IP).
	maxConnectRate = 1_000_000
	// admissionShards spreads the per-IP connect state over locks.
	admissionShards = 64
	// maxTrackedIPs bounds the addresses whose connect rate is tracked;
	// beyond it, addresses whose bucket has refilled are forgotten first.
	maxTrackedIPs = 1 << 16
)

// admissionConfig is the JSON at <cluster config prefix>/room/admission.
type admissionConfig struct {
	// Allow, when not empty, admits only these CIDRs.
	Allow []string `json:"allow,omitempty"`
	// Deny refuses these CIDRs (checked before Allow).
	Deny []string `json:"deny,omitempty"`
	// ConnectRate is new connections per second one IP may open on average
	// (0: unlimited), with bursts of ConnectBurst (default: ConnectRate).
	ConnectRate  int `json:"connect_rate,omitempty"`
	ConnectBurst int `json:"connect_burst,omitempty"`
}

// admissionRules are parsed, validated rules; immutable once built.
type admissionRules struct {
	allow, deny []netip.Prefix
	rate        frameRate
}

// parseAdmission validates raw JSON into rules; nothing of a bad config is
// applied.
func parseAdmission(raw []byte) (*admissionRules, error) {
	var c admissionConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("room: admission config: %w", err)
	}
	if len(c.Allow) > maxAdmissionPrefixes || len(c.Deny) > maxAdmissionPrefixes {
		return nil, fmt.Errorf("room: admission config: at most %d prefixes per list", maxAdmissionPrefixes)
	}
	if c.ConnectRate < 0 || c.ConnectRate > maxConnectRate || c.ConnectBurst < 0 {
		return nil, fmt.Errorf("room: admission config: connect_rate %d, connect_burst %d: want 0..%d and >= 0", c.ConnectRate, c.ConnectBurst, maxConnectRate)
	}
	r := &admissionRules{}
	var err error
	if r.allow, err = parsePrefixes("allow", c.Allow); err != nil {
		return nil, err
	}
	if r.deny, err = parsePrefixes("deny", c.Deny); err != nil {
		return nil, err
	}
	burst := c.ConnectBurst
	if burst == 0 {
		burst = max(c.ConnectRate, 1)
	}
	r.rate = newFrameRate(float64(c.ConnectRate), burst)
	return r, nil
}

func parsePrefixes(list string, in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address is a /32 (or /128).
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("room: admission config: %s %q: want a CIDR like 10.0.0.0/8 or an address", list, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// verdict is admission's answer for one new connection.
type verdict uint8

const (
	admitted verdict = iota
	deniedIP
	rateLimitedIP
)

// admission checks new connections against the live rules and keeps the
// per-IP connect rate (GCRA: one int64 per address).
type admission struct {
	rules  atomic.Pointer[admissionRules]
	seed   maphash.Seed
	shards [admissionShards]ipShard
}

type ipShard struct {
	mu  sync.Mutex
	tat map[netip.Addr]int64
}

func newAdmission() *admission {
	a := &admission{seed: maphash.MakeSeed()}
	a.rules.Store(&admissionRules{})
	for i := range a.shards {
		a.shards[i].tat = map[netip.Addr]int64{}
	}
	return a
}

// set replaces the rules; the rate state of addresses is kept.
func (a *admission) set(r *admissionRules) { a.rules.Store(r) }

// check decides for a connection from ip at now (monoNanos).
func (a *admission) check(ip netip.Addr, now int64) verdict {
	r := a.rules.Load()
	ip = ip.Unmap()
	if containsAddr(r.deny, ip) || (len(r.allow) > 0 && !containsAddr(r.allow, ip)) {
		return deniedIP
	}
	if r.rate.interval == 0 {
		return admitted
	}
	sh := &a.shards[maphash.Comparable(a.seed, ip)%admissionShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := frameLimiter{tat: sh.tat[ip]}
	if !r.rate.allow(&l, now) {
		return rateLimitedIP
	}
	if _, ok := sh.tat[ip]; !ok && len(sh.tat) >= maxTrackedIPs/admissionShards {
		// An address whose bucket has refilled is the same as one never
		// seen: forget those to make room.
		for k, t := range sh.tat {
			if t <= now {
				delete(sh.tat, k)
			}
		}
		if len(sh.tat) >= maxTrackedIPs/admissionShards {
			return admitted // every tracked address is busy: admit untracked
		}
	}
	sh.tat[ip] = l.tat
	return admitted
}
