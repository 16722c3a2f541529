package main

import (
	"fmt"
	"net/http"
	"strings"

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
}

type endpointsResponse struct {
	Endpoints []string `json:"endpoints"`
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/endpoints", s.serveEndpoints)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.requests.WithLabelValues(CodeNotFound).Inc()
		writeError(w, &apiError{Code: CodeNotFound, Message: "no such route; use GET /v1/endpoints?app=&user="})
	})
	return mux
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
	rooms := s.rooms.snapshot()
	if len(rooms) == 0 {
		return nil, &apiError{Code: CodeNoRooms, Message: "no room is accepting connections; retry with backoff"}
	}
	return &endpointsResponse{Endpoints: rank(rooms, userKey(app, user), s.idc, failed)}, nil
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
