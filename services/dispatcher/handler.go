package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/limits"
)

// Limits on the query.
const (
	maxUserBytes   = limits.MaxUserLen
	maxDeviceBytes = limits.MaxDeviceLen
	maxFailed      = 32 // failed endpoints a client may report
	maxQueryBytes  = 4096
)

type server struct {
	rooms    *roomTable
	idc      string
	requests *prometheus.CounterVec
	// overload: rooms at or above this load are offered last (0: off).
	overload int64
	peers    *peerSet   // nil without -peers
	limiter  *ipLimiter // nil without a rate limit
	// limitLoopback also limits 127.0.0.1/::1, which tests, benchmarks and
	// make run share; off by default.
	limitLoopback bool
}

type endpointsResponse struct {
	Endpoints []string `json:"endpoints"`
	// Version is the etcd revision of the local room list and EtcdCluster
	// the etcd it came from: the SDK keeps the newer of two answers, and
	// compares versions only between answers of the same etcd cluster.
	Version     int64  `json:"version"`
	EtcdCluster string `json:"etcd_cluster,omitempty"`
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/endpoints", s.serveEndpoints)
	mux.HandleFunc("/v1/rooms", s.serveRooms)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.requests.WithLabelValues(CodeNotFound).Inc()
		writeError(w, &apiError{Code: CodeNotFound, Message: "no such route; use GET /v1/endpoints?app=&user="})
	})
	return s.limit(mux)
}

// limit answers 429 RATE_LIMITED to a client IP over its token bucket.
func (s *server) limit(next http.Handler) http.Handler {
	if s.limiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		if !s.limitLoopback {
			if a := net.ParseIP(ip); a != nil && a.IsLoopback() {
				next.ServeHTTP(w, r)
				return
			}
		}
		if ok, wait := s.limiter.allow(ip, time.Now()); !ok {
			secs := retryAfterSeconds(wait)
			s.requests.WithLabelValues(CodeRateLimited).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, &apiError{Code: CodeRateLimited, Message: fmt.Sprintf("too many requests from %s; retry after %d s", ip, secs)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveRooms lists this IDC's rooms for peer dispatchers. Rooms of other
// IDCs are left out so that peers never pass rooms on to each other.
func (s *server) serveRooms(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.requests.WithLabelValues(CodeMethodNotAllowed).Inc()
		writeError(w, &apiError{Code: CodeMethodNotAllowed, Message: "use GET /v1/rooms"})
		return
	}
	set := s.rooms.snapshot()
	resp := roomsResponse{IDC: s.idc, Version: set.version, Rooms: []roomInfo{}}
	for _, e := range set.rooms {
		if s.idc == "" || e.IDC == s.idc {
			resp.Rooms = append(resp.Rooms, roomInfo{ID: e.ID, Endpoint: e.Endpoint, IDC: e.IDC, Load: e.Load})
		}
	}
	s.requests.WithLabelValues(codeOK).Inc()
	writeJSON(w, http.StatusOK, resp)
}

func (s *server) serveEndpoints(w http.ResponseWriter, r *http.Request) {
	resp, e := s.endpoints(r)
	if e != nil {
		if e.Code == CodeMethodNotAllowed {
			w.Header().Set("Allow", http.MethodGet)
		}
		s.requests.WithLabelValues(e.Code).Inc()
		writeError(w, e)
		return
	}
	s.requests.WithLabelValues(codeOK).Inc()
	writeJSON(w, http.StatusOK, resp)
}

func (s *server) endpoints(r *http.Request) (*endpointsResponse, *apiError) {
	if r.Method != http.MethodGet {
		return nil, &apiError{Code: CodeMethodNotAllowed, Message: "use GET /v1/endpoints"}
	}
	if len(r.URL.RawQuery) > maxQueryBytes {
		return nil, &apiError{Code: CodeInvalidArgument, Message: fmt.Sprintf("query is over %d bytes", maxQueryBytes)}
	}
	q := r.URL.Query()
	app, user, device := q.Get("app"), q.Get("user"), q.Get("device")
	switch {
	case app == "":
		return nil, &apiError{Code: CodeInvalidArgument, Field: "app", Message: "app is required"}
	case !appconfig.ValidName(app):
		return nil, &apiError{Code: CodeInvalidArgument, Field: "app", Message: "app must be 1-64 of [a-zA-Z0-9_.-]"}
	case user == "":
		return nil, &apiError{Code: CodeInvalidArgument, Field: "user", Message: "user is required"}
	case len(user) > maxUserBytes:
		return nil, &apiError{Code: CodeInvalidArgument, Field: "user", Message: fmt.Sprintf("user is over %d bytes", maxUserBytes)}
	case len(device) > maxDeviceBytes:
		return nil, &apiError{Code: CodeInvalidArgument, Field: "device", Message: fmt.Sprintf("device is over %d bytes", maxDeviceBytes)}
	}
	failed, e := parseFailed(q["failed"])
	if e != nil {
		return nil, e
	}
	set := s.rooms.snapshot()
	rooms := withPeers(set.rooms, s.peers.rooms(time.Now()))
	if len(rooms) == 0 {
		return nil, &apiError{Code: CodeNoRooms, Message: "no room is accepting connections; retry with backoff"}
	}
	resp := &endpointsResponse{
		Endpoints: rankWith(rooms, userKey(app, user), rankPolicy{localIDC: s.idc, failed: failed, overload: s.overload}),
		Version:   set.version,
	}
	if set.etcdID != 0 {
		resp.EtcdCluster = strconv.FormatUint(set.etcdID, 16)
	}
	return resp, nil
}

// withPeers appends the peers' rooms whose endpoint is not already a local
// room's (two IDCs sharing an etcd would otherwise list a room twice).
func withPeers(local, peer []roomEntry) []roomEntry {
	if len(peer) == 0 {
		return local
	}
	seen := make(map[string]bool, len(local)+len(peer))
	out := make([]roomEntry, 0, len(local)+len(peer))
	for _, e := range local {
		seen[e.Endpoint] = true
		out = append(out, e)
	}
	for _, e := range peer {
		if !seen[e.Endpoint] {
			seen[e.Endpoint] = true
			out = append(out, e)
		}
	}
	return out
}

// parseFailed reads failed=host:port,host:port (the parameter may also be
// repeated).
func parseFailed(values []string) (map[string]bool, *apiError) {
	failed := map[string]bool{}
	for _, v := range values {
		for _, ep := range strings.Split(v, ",") {
			ep = strings.TrimSpace(ep)
			if ep == "" {
				continue
			}
			failed[ep] = true
			if len(failed) > maxFailed {
				return nil, &apiError{Code: CodeInvalidArgument, Field: "failed", Message: fmt.Sprintf("failed lists more than %d endpoints", maxFailed)}
			}
		}
	}
	return failed, nil
}
