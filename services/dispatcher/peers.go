package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits on what a peer dispatcher's answer may hold.
const (
	maxPeerBody   = 1 << 20
	maxPeerRooms  = 1024
	maxRoomIDLen  = 128
	maxEndpointLn = 256
)

// roomsResponse is GET /v1/rooms: this dispatcher's own IDC's rooms, for
// the dispatchers of other IDCs.
type roomsResponse struct {
	IDC     string     `json:"idc"`
	Version int64      `json:"version"`
	Rooms   []roomInfo `json:"rooms"`
}

type roomInfo struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	IDC      string `json:"idc,omitempty"`
	Load     int64  `json:"load"`
}

// parsePeerRooms checks a peer's answer like any other network input. A
// bad entry spoils the whole answer: a half-read list would hide the fault.
func parsePeerRooms(body []byte) ([]roomEntry, error) {
	var resp roomsResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if len(resp.Rooms) > maxPeerRooms {
		return nil, fmt.Errorf("%d rooms, over %d", len(resp.Rooms), maxPeerRooms)
	}
	out := make([]roomEntry, 0, len(resp.Rooms))
	for i, r := range resp.Rooms {
		if r.ID == "" || len(r.ID) > maxRoomIDLen {
			return nil, fmt.Errorf("room %d: id must be 1-%d bytes", i, maxRoomIDLen)
		}
		if len(r.Endpoint) > maxEndpointLn {
			return nil, fmt.Errorf("room %s: endpoint over %d bytes", r.ID, maxEndpointLn)
		}
		if host, port, err := net.SplitHostPort(r.Endpoint); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("room %s: endpoint %q is not host:port", r.ID, r.Endpoint)
		}
		out = append(out, roomEntry{ID: r.ID, Endpoint: r.Endpoint, IDC: r.IDC, Load: r.Load, Peer: true})
	}
	return out, nil
}

// peerRooms is one peer's last good answer.
type peerRooms struct {
	rooms   []roomEntry
	fetched time.Time
}

// peerSet polls the dispatchers of peer IDCs in the background, so a slow
// or dead peer never delays an answer: requests read the cache, and a
// peer's rooms are dropped once its answer is older than maxStale.
type peerSet struct {
	urls     []string
	client   *http.Client
	timeout  time.Duration
	every    time.Duration
	maxStale time.Duration
	log      *slog.Logger
	fetches  *prometheus.CounterVec
	last     []atomic.Pointer[peerRooms] // by index of urls
}

func newPeerSet(urls []string, timeout, every, maxStale time.Duration, log *slog.Logger, fetches *prometheus.CounterVec) *peerSet {
	return &peerSet{
		urls: urls, client: &http.Client{Timeout: timeout}, timeout: timeout, every: every,
		maxStale: maxStale, log: log, fetches: fetches, last: make([]atomic.Pointer[peerRooms], len(urls)),
	}
}

// run refreshes every peer each period until ctx ends.
func (p *peerSet) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh fetches all peers at once; each call is bounded by p.timeout.
func (p *peerSet) refresh(ctx context.Context) {
	var wg sync.WaitGroup
	for i, u := range p.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rooms, err := p.fetch(ctx, u)
			if err != nil {
				p.fetches.WithLabelValues(u, "error").Inc()
				if ctx.Err() == nil {
					p.log.Warn("dispatcher: peer fetch failed; keeping its last answer until stale", "peer", u, "err", err)
				}
				return
			}
			p.fetches.WithLabelValues(u, "ok").Inc()
			p.last[i].Store(&peerRooms{rooms: rooms, fetched: time.Now()})
		}()
	}
	wg.Wait()
}

func (p *peerSet) fetch(ctx context.Context, base string) ([]roomEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/rooms", nil)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: peer %s: %w", base, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: peer %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerBody+1))
	if err != nil {
		return nil, fmt.Errorf("dispatcher: peer %s: read: %w", base, err)
	}
	if len(body) > maxPeerBody {
		return nil, fmt.Errorf("dispatcher: peer %s: answer over %d bytes", base, maxPeerBody)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("dispatcher: peer %s: HTTP %d: %.200s", base, resp.StatusCode, body)
	}
	rooms, err := parsePeerRooms(body)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: peer %s: %w", base, err)
	}
	return rooms, nil
}

// rooms returns the rooms of every peer whose last answer is fresh enough.
func (p *peerSet) rooms(now time.Time) []roomEntry {
	if p == nil {
		return nil
	}
	var out []roomEntry
	for i := range p.last {
		if pr := p.last[i].Load(); pr != nil && now.Sub(pr.fetched) <= p.maxStale {
			out = append(out, pr.rooms...)
		}
	}
	return out
}
