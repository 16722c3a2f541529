package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/ids"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Server is center's HTTP API.
type Server struct {
	apps     *appconfig.Store
	ids      *ids.Generator
	saver    internalpb.SaverClient
	saverTx  internalpb.SaverTxClient
	txm      *txMetrics
	register internalpb.RegisterClient
	rooms    *roomSet
	pool     *ants.Pool
	batch    *deliveryBatcher
	stores   *storeBatcher
	retry    *retrier
	routes   *routeCache
	bcast    *broadcastSender
	m        *metrics
	log      *slog.Logger
	timeout  time.Duration

	// Per-app limits, pacing and multicast progress (useRedis); nil
	// without Redis: unlimited, unpaced, no progress.
	limits *rateLimiter
	pacer  *Pacer
	rdb    redis.UniversalClient
	// fanoutSlots holds one token per multicast delivery running here;
	// stop ends them at shutdown (their messages stay stored).
	fanoutSlots chan struct{}
	fanoutUsers atomic.Int64 // messages held by running fan-outs
	stop        context.Context
	stopFanouts context.CancelFunc

	// admin serves /v1/admin/ (admin_drain.go); nil: no admin routes.
	admin *adminAPI
}

func newServer(apps *appconfig.Store, gen *ids.Generator, saver, register grpc.ClientConnInterface, rooms *roomSet,
	pool *ants.Pool, m *metrics, log *slog.Logger, timeout time.Duration) *Server {
	s := &Server{
		apps: apps, ids: gen, saver: internalpb.NewSaverClient(saver), register: internalpb.NewRegisterClient(register),
		rooms: rooms, pool: pool, m: m, log: log, timeout: timeout,
	}
	s.saverTx = internalpb.NewSaverTxClient(saver)
	s.fanoutSlots = make(chan struct{}, maxFanouts)
	s.stop, s.stopFanouts = context.WithCancel(context.Background())
	s.batch = newDeliveryBatcher(s.deliver, m, log)
	s.retry = newRetrier(s.deliverOnce, s.saverStates, m, log)
	s.bcast = newBroadcastSender(s, nil)
	s.stores = newStoreBatcher(s.saver, m.storeBatch, log)
	return s
}

// useRedis turns on the per-app rate limits, pacing and multicast
// progress, kept in rdb and shared by every center.
func (s *Server) useRedis(rdb redis.UniversalClient) {
	s.rdb = rdb
	s.limits = newRateLimiter(rdb, s.m, s.log)
	s.pacer = NewPacer(rdb, s.m, s.log)
}

// handler serves one authenticated route. It returns the 200 body or an
// error; the wrapper writes either and records the metric. w is only for
// decodeBody (http.MaxBytesReader closes the connection through it).
type handler func(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError)

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Methods are checked in route, not in the patterns, so a wrong method
	// gets a JSON error like every other failure.
	mux.Handle("/v1/push", s.route("push", http.MethodPost, s.handlePush))
	mux.Handle("/v1/push/multi", s.routeTimeout("push_multi", http.MethodPost, s.handleMultiPush, max(s.timeout, multiRequestTimeout)))
	mux.Handle("/v1/multicasts/{id}", s.route("multicast_status", http.MethodGet, s.handleMulticast))
	mux.Handle("/v1/messages/{id}", s.route("message_status", http.MethodGet, s.handleStatus))
	mux.Handle("/v1/apps/{app}/users/{user}/sessions", s.route("sessions", http.MethodGet, s.handleSessions))
	mux.Handle("/v1/kick", s.route("kick", http.MethodPost, s.handleKick))
	mux.Handle("/v1/apps/{app}/tags/{tag}/users", s.tagUsersRoutes())
	mux.Handle("/v1/apps/{app}/users/{user}/tags", s.route("user_tags", http.MethodGet, s.handleUserTags))
	mux.Handle("/v1/broadcast", s.route("broadcast", http.MethodPost, s.handleBroadcast))
	mux.Handle("/v1/tx", s.route("tx_prepare", http.MethodPost, s.handleTxPrepare))
	mux.Handle("/v1/tx/{id}", s.route("tx_status", http.MethodGet, s.handleTxGet))
	mux.Handle("/v1/tx/{id}/commit", s.route("tx_commit", http.MethodPost, s.handleTxCommit))
	mux.Handle("/v1/tx/{id}/rollback", s.route("tx_rollback", http.MethodPost, s.handleTxRollback))
	if s.admin != nil {
		s.admin.routes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.m.requests.WithLabelValues("unknown", CodeNotFound).Inc()
		writeError(w, errorf(CodeNotFound, "no such route: "+r.Method+" "+r.URL.Path+"; see docs/openapi.yaml"))
	})
	return mux
}

func (s *Server) route(name, method string, h handler) http.Handler {
	return s.routeTimeout(name, method, h, s.timeout)
}

// routeTimeout is route with its own request deadline.
func (s *Server) routeTimeout(name, method string, h handler, timeout time.Duration) http.Handler {
	requests := newRequestCounters(s.m.requests, name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A bug in one handler answers 500 INTERNAL in JSON instead of
		// dropping the connection, and is logged with its route.
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("center: handler panic", "route", name, "panic", p)
				requests.inc(CodeInternal)
				writeError(w, errorf(CodeInternal, "internal error; the request may not have been processed"))
			}
		}()
		body, e := s.serve(r, method, h, w, timeout)
		code := codeOK
		if e != nil {
			code = e.Code
			writeError(w, e)
		} else {
			writeJSON(w, http.StatusOK, body)
		}
		requests.inc(code)
	})
}

func (s *Server) serve(r *http.Request, method string, h handler, w http.ResponseWriter, timeout time.Duration) (any, *apiError) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		return nil, errorf(CodeMethodNotAllowed, "use "+method+" for "+r.URL.Path)
	}
	app, e := s.authenticate(r)
	if e != nil {
		return nil, e
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	return h(w, r.WithContext(ctx), app)
}

// authenticate finds the app by its API key (Authorization: Bearer <key>).
func (s *Server) authenticate(r *http.Request) (appconfig.App, *apiError) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return appconfig.App{}, errorf(CodeUnauthenticated, "send the app's API key as 'Authorization: Bearer <api key>'")
	}
	app, ok := s.apps.ByAPIKey(strings.TrimSpace(h[len(prefix):]))
	if !ok {
		return appconfig.App{}, errorf(CodeUnauthenticated, "API key is unknown, revoked, or its app is disabled")
	}
	return app, nil
}
