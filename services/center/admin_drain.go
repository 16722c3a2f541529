package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// Admin API: operator calls under /v1/admin/, authenticated with center's
// admin key (-admin-key), never an app's API key.
const (
	// defaultAdminKey lets `make run` and pushctl work out of the box;
	// center warns at start when it is in use (docs/OPERATIONS.md).
	defaultAdminKey = "dev-admin-key"
	// drainPublishWait bounds how long POST .../drain waits to see the
	// room publish draining (the dispatcher's signal) before answering.
	drainPublishWait = 5 * time.Second
	drainPublishPoll = 20 * time.Millisecond
	// drainMarkGrace is kept beyond a drain's deadline before the mark's
	// lease ends it, so a mark never outlives its purpose by long even if
	// the room dies mid-drain (a room deletes its mark when done).
	drainMarkGrace = 5 * time.Minute
	maxRoomIDLen   = 256
)

// adminAPI serves /v1/admin/.
type adminAPI struct {
	s *Server
	// keySum is the SHA-256 of the admin key: comparing fixed-size digests
	// in constant time leaks neither content nor length; nil disables the
	// admin API.
	keySum  []byte
	etcd    *clientv3.Client
	cluster string
	rooms   *discovery.Watcher
}

func newAdminAPI(s *Server, key string, etcd *clientv3.Client, cluster string, rooms *discovery.Watcher) *adminAPI {
	a := &adminAPI{s: s, etcd: etcd, cluster: cluster, rooms: rooms}
	if key != "" {
		sum := sha256.Sum256([]byte(key))
		a.keySum = sum[:]
	}
	return a
}

// adminHandler is one admin route; no app is involved.
type adminHandler func(w http.ResponseWriter, r *http.Request) (any, *apiError)

// routes adds the admin routes to mux.
func (a *adminAPI) routes(mux *http.ServeMux) {
	mux.Handle("/v1/admin/rooms", a.route("admin_rooms", map[string]adminHandler{http.MethodGet: a.handleRooms}))
	mux.Handle("/v1/admin/rooms/{id}/drain", a.route("admin_drain", map[string]adminHandler{
		http.MethodPost:   a.handleDrain,
		http.MethodDelete: a.handleUndrain,
	}))
}

func (a *adminAPI) route(name string, byMethod map[string]adminHandler) http.Handler {
	allow := make([]string, 0, len(byMethod))
	for m := range byMethod {
		allow = append(allow, m)
	}
	sort.Strings(allow)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				a.s.log.Error("center: admin handler panic", "route", name, "panic", p)
				a.s.m.requests.WithLabelValues(name, CodeInternal).Inc()
				writeError(w, errorf(CodeInternal, "internal error; the request may not have been processed"))
			}
		}()
		body, e := a.serve(w, r, byMethod, allow)
		code := codeOK
		if e != nil {
			code = e.Code
			writeError(w, e)
		} else {
			writeJSON(w, http.StatusOK, body)
		}
		a.s.m.requests.WithLabelValues(name, code).Inc()
	})
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request, byMethod map[string]adminHandler, allow []string) (any, *apiError) {
	h, ok := byMethod[r.Method]
	if !ok {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return nil, errorf(CodeMethodNotAllowed, "use "+strings.Join(allow, " or ")+" for "+r.URL.Path)
	}
	if e := a.authenticate(r); e != nil {
		return nil, e
	}
	ctx, cancel := context.WithTimeout(r.Context(), max(a.s.timeout, drainPublishWait+time.Second))
	defer cancel()
	return h(w, r.WithContext(ctx))
}

// authenticate checks Authorization: Bearer <admin key>.
func (a *adminAPI) authenticate(r *http.Request) *apiError {
	if a.keySum == nil {
		return errorf(CodeForbidden, "the admin API is off: center runs with an empty -admin-key")
	}
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return errorf(CodeUnauthenticated, "send center's admin key as 'Authorization: Bearer <admin key>'")
	}
	given := strings.TrimSpace(h[len(prefix):])
	sum := sha256.Sum256([]byte(given))
	if subtle.ConstantTimeCompare(sum[:], a.keySum) == 1 {
		return nil
	}
	if _, isApp := a.s.apps.ByAPIKey(given); isApp {
		return errorf(CodeForbidden, "an app's API key cannot call admin routes; use center's admin key (-admin-key)")
	}
	return errorf(CodeUnauthenticated, "admin key is wrong")
}

// drainRequest is the optional body of POST /v1/admin/rooms/{id}/drain.
type drainRequest struct {
	// Rate is clients redirected per second; 0 or absent: the room's
	// -drain-rate.
	Rate int `json:"rate"`
	// DeadlineSeconds bounds the drain; 0 or absent: the room's
	// -drain-deadline.
	DeadlineSeconds int `json:"deadline_seconds"`
}

// roomView is one room in the admin listing and drain answers.
type roomView struct {
	ID       string `json:"id"`
	IDC      string `json:"idc,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Load     int64  `json:"load"`
	// Draining is what the room publishes (the dispatcher's signal).
	Draining bool `json:"draining"`
	// Drain is the pending drain request, if any.
	Drain *discovery.DrainMark `json:"drain,omitempty"`
}

type roomsResponse struct {
	Rooms []roomView `json:"rooms"`
}

func (a *adminAPI) roomID(r *http.Request) (string, *apiError) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxRoomIDLen || strings.ContainsAny(id, "/\x00") {
		return "", fieldError("id", fmt.Sprintf("room id must be 1..%d bytes without '/'; GET /v1/admin/rooms lists them", maxRoomIDLen))
	}
	return id, nil
}

func (a *adminAPI) handleDrain(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	id, e := a.roomID(r)
	if e != nil {
		return nil, e
	}
	var req drainRequest
	// The body is optional: `curl -X POST` with none takes the defaults.
	if r.ContentLength != 0 {
		if e := decodeBody(w, r, &req); e != nil {
			return nil, e
		}
	}
	mark := discovery.DrainMark{Rate: req.Rate, DeadlineSec: req.DeadlineSeconds, RequestedMS: time.Now().UnixMilli()}
	if req.Rate < 0 || req.Rate > discovery.MaxDrainRate {
		return nil, fieldError("rate", fmt.Sprintf("rate is clients per second: 1..%d, or 0 for the room's -drain-rate", discovery.MaxDrainRate))
	}
	if req.DeadlineSeconds < 0 || req.DeadlineSeconds > discovery.MaxDrainDeadlineSec {
		return nil, fieldError("deadline_seconds", fmt.Sprintf("deadline_seconds: 1..%d, or 0 for the room's -drain-deadline", discovery.MaxDrainDeadlineSec))
	}
	if _, ok := a.rooms.Get(id); !ok {
		return nil, errorf(CodeNotFound, "no live room instance "+id+"; GET /v1/admin/rooms lists them (the sessions API's room_id)")
	}
	raw, _ := json.Marshal(mark)
	ctx := r.Context()
	ttl := time.Duration(discovery.MaxDrainDeadlineSec) * time.Second
	if mark.DeadlineSec > 0 {
		ttl = time.Duration(mark.DeadlineSec) * time.Second
	}
	lease, err := a.etcd.Grant(ctx, int64((ttl+drainMarkGrace)/time.Second))
	if err != nil {
		a.s.log.Warn("center: drain mark lease", "room", id, "err", err)
		return nil, errorf(CodeUnavailable, "etcd did not answer; retry the drain")
	}
	if _, err := a.etcd.Put(ctx, discovery.DrainKey(a.cluster, id), string(raw), clientv3.WithLease(lease.ID)); err != nil {
		a.s.log.Warn("center: drain mark put", "room", id, "err", err)
		return nil, errorf(CodeUnavailable, "etcd did not answer; retry the drain")
	}
	a.s.log.Info("center: room drain requested", "room", id, "rate", mark.Rate, "deadline_sec", mark.DeadlineSec)
	// Answer once the room publishes draining, so when the call returns
	// the dispatcher has stopped offering it (or say it has not yet).
	wctx, cancel := context.WithTimeout(ctx, drainPublishWait)
	defer cancel()
	for {
		in, ok := a.rooms.Get(id)
		if !ok || in.Draining {
			v := a.view(in, &mark)
			if !ok {
				v.ID = id
			}
			return v, nil
		}
		select {
		case <-wctx.Done():
			v := a.view(in, &mark)
			return v, nil
		case <-time.After(drainPublishPoll):
		}
	}
}

func (a *adminAPI) handleUndrain(_ http.ResponseWriter, r *http.Request) (any, *apiError) {
	id, e := a.roomID(r)
	if e != nil {
		return nil, e
	}
	resp, err := a.etcd.Delete(r.Context(), discovery.DrainKey(a.cluster, id))
	if err != nil {
		a.s.log.Warn("center: drain mark delete", "room", id, "err", err)
		return nil, errorf(CodeUnavailable, "etcd did not answer; retry")
	}
	if resp.Deleted == 0 {
		return nil, errorf(CodeNotFound, "room "+id+" has no drain request (a finished drain removes its own)")
	}
	a.s.log.Info("center: room drain cancelled", "room", id)
	in, ok := a.rooms.Get(id)
	if !ok {
		return roomView{ID: id}, nil
	}
	return a.view(in, nil), nil
}

func (a *adminAPI) handleRooms(_ http.ResponseWriter, r *http.Request) (any, *apiError) {
	resp, err := a.etcd.Get(r.Context(), discovery.DrainPrefix(a.cluster), clientv3.WithPrefix())
	if err != nil {
		return nil, errorf(CodeUnavailable, "etcd did not answer; retry")
	}
	marks := make(map[string]*discovery.DrainMark, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if m, err := discovery.ParseDrainMark(kv.Value); err == nil {
			marks[strings.TrimPrefix(string(kv.Key), discovery.DrainPrefix(a.cluster))] = &m
		}
	}
	list := a.rooms.Instances()
	out := roomsResponse{Rooms: make([]roomView, 0, len(list))}
	for _, in := range list {
		out.Rooms = append(out.Rooms, a.view(in, marks[in.ID]))
	}
	sort.Slice(out.Rooms, func(i, j int) bool { return out.Rooms[i].ID < out.Rooms[j].ID })
	return out, nil
}

func (a *adminAPI) view(in discovery.Instance, mark *discovery.DrainMark) roomView {
	return roomView{ID: in.ID, IDC: in.IDC, Endpoint: in.Endpoints["tcp"], Load: in.Load, Draining: in.Draining, Drain: mark}
}
