package main

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pushgw/pushgw/pkg/service"
)

const (
	serviceName      = "dispatcher"
	defaultHTTPAddr  = "127.0.0.1:7080"
	defaultAdminAddr = "127.0.0.1:7081"

	// defaultOverload is 80% of a room's default -max-conns: such a room
	// still takes clients, but only those whose other choices failed.
	defaultOverload    = 80000
	defaultPeerTimeout = time.Second
	defaultPeerRefresh = 2 * time.Second
	defaultPeerStale   = 30 * time.Second
	defaultIPRate      = 10
	defaultIPBurst     = 20
	defaultIPMax       = 100000
	maxPeers           = 16
)

// Config is the dispatcher's command line.
type Config struct {
	Common   service.Common
	HTTPAddr string

	Overload      int64
	Peers         []string
	PeerTimeout   time.Duration
	PeerRefresh   time.Duration
	PeerStale     time.Duration
	IPRate        float64
	IPBurst       int
	IPMax         int
	LimitLoopback bool
}

func parseConfig(args []string) (Config, error) {
	var c Config
	var peers string
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.Common.Bind(fs, serviceName, defaultAdminAddr)
	fs.StringVar(&c.HTTPAddr, "http", service.Env("DISPATCHER_HTTP", defaultHTTPAddr), "client-facing HTTP listen address (PUSHGW_DISPATCHER_HTTP)")
	fs.Int64Var(&c.Overload, "overload", defaultOverload, "room load (live connections) at or above which a room is offered after the others of its IDC; 0 turns it off")
	fs.StringVar(&peers, "peers", service.Env("DISPATCHER_PEERS", ""), "comma-separated base URLs of the dispatchers of peer IDCs, whose rooms are offered after the local ones (PUSHGW_DISPATCHER_PEERS)")
	fs.DurationVar(&c.PeerTimeout, "peer-timeout", defaultPeerTimeout, "deadline of one fetch of a peer's rooms")
	fs.DurationVar(&c.PeerRefresh, "peer-refresh", defaultPeerRefresh, "how often peers' rooms are fetched")
	fs.DurationVar(&c.PeerStale, "peer-max-stale", defaultPeerStale, "a peer's rooms are no longer offered once its last good answer is this old")
	fs.Float64Var(&c.IPRate, "ip-rate", defaultIPRate, "requests a second per client IP (token bucket); 0 turns the limit off")
	fs.IntVar(&c.IPBurst, "ip-burst", defaultIPBurst, "burst of the per-IP token bucket")
	fs.IntVar(&c.IPMax, "ip-max", defaultIPMax, "client IPs tracked by the rate limit; the least recently seen is forgotten beyond it")
	fs.BoolVar(&c.LimitLoopback, "ip-limit-loopback", false, "rate-limit loopback clients too (off: tests and benchmarks connect many clients from 127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, p := range strings.Split(peers, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("-peers: %q is not an http(s) URL such as http://dispatcher.idc2:7080", p)
		}
		if u.User != nil {
			// The URL is a metric label and appears in logs.
			return c, fmt.Errorf("-peers: %q carries credentials; peers are polled without any", u.Redacted())
		}
		c.Peers = append(c.Peers, p)
	}
	switch {
	case len(c.Peers) > maxPeers:
		return c, fmt.Errorf("-peers: %d peers, at most %d", len(c.Peers), maxPeers)
	case c.Overload < 0:
		return c, fmt.Errorf("-overload %d: must be >= 0", c.Overload)
	case c.PeerTimeout <= 0 || c.PeerRefresh <= 0 || c.PeerStale <= 0:
		return c, fmt.Errorf("-peer-timeout, -peer-refresh and -peer-max-stale must be > 0")
	case c.IPRate < 0:
		return c, fmt.Errorf("-ip-rate %v: must be >= 0", c.IPRate)
	case c.IPRate > 0 && (c.IPBurst < 1 || c.IPMax < 1):
		return c, fmt.Errorf("-ip-burst and -ip-max must be >= 1 with -ip-rate > 0")
	}
	return c, nil
}
