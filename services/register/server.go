package main

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// server implements internalpb.RegisterServer on top of store.
type server struct {
	internalpb.UnimplementedRegisterServer
	store   *store
	epochs  *epochs
	metrics *metrics
	log     *slog.Logger
}

// unavailable hides Redis details from callers behind a retryable code;
// the detail goes to the log.
func (s *server) unavailable(method string, err error) error {
	s.log.Error("redis call failed", "method", method, "err", err)
	return status.Errorf(codes.Unavailable, "register: %s: session store unavailable", method)
}

func (s *server) Put(ctx context.Context, req *internalpb.PutSessionsRequest) (*internalpb.PutSessionsReply, error) {
	if err := checkSessions(req.GetSessions()); err != nil {
		return nil, err
	}
	if len(req.GetSessions()) == 0 {
		return &internalpb.PutSessionsReply{}, nil
	}
	if err := s.store.put(ctx, req.GetSessions()); err != nil {
		return nil, s.unavailable("put", err)
	}
	s.metrics.sessions.WithLabelValues("put").Add(float64(len(req.GetSessions())))
	return &internalpb.PutSessionsReply{}, nil
}

func (s *server) Refresh(ctx context.Context, req *internalpb.RefreshSessionsRequest) (*internalpb.RefreshSessionsReply, error) {
	if err := checkSessions(req.GetSessions()); err != nil {
		return nil, err
	}
	if len(req.GetSessions()) == 0 {
		return &internalpb.RefreshSessionsReply{}, nil
	}
	missing, superseded, err := s.store.refresh(ctx, req.GetSessions())
	if err != nil {
		return nil, s.unavailable("refresh", err)
	}
	s.metrics.sessions.WithLabelValues("refresh").Add(float64(len(req.GetSessions())))
	s.metrics.sessions.WithLabelValues("refresh_missing").Add(float64(len(missing)))
	s.metrics.sessions.WithLabelValues("refresh_superseded").Add(float64(superseded))
	if len(missing) > 0 {
		// Many at once usually means Redis lost its data; rooms re-put them.
		s.log.Info("refresh found missing sessions", "missing", len(missing), "batch", len(req.GetSessions()))
	}
	return &internalpb.RefreshSessionsReply{Missing: missing}, nil
}

func (s *server) Delete(ctx context.Context, req *internalpb.DeleteSessionsRequest) (*internalpb.DeleteSessionsReply, error) {
	if err := checkSessions(req.GetSessions()); err != nil {
		return nil, err
	}
	if len(req.GetSessions()) == 0 {
		return &internalpb.DeleteSessionsReply{}, nil
	}
	n, err := s.store.del(ctx, req.GetSessions())
	if err != nil {
		return nil, s.unavailable("delete", err)
	}
	s.metrics.sessions.WithLabelValues("delete").Add(float64(n))
	s.metrics.sessions.WithLabelValues("delete_kept").Add(float64(len(req.GetSessions()) - n))
	return &internalpb.DeleteSessionsReply{}, nil
}

func (s *server) Lookup(ctx context.Context, req *internalpb.LookupSessionsRequest) (*internalpb.LookupSessionsReply, error) {
	if err := checkUsers(req.GetUsers()); err != nil {
		return nil, err
	}
	if len(req.GetUsers()) == 0 {
		return &internalpb.LookupSessionsReply{}, nil
	}
	out, err := s.store.lookup(ctx, req.GetUsers())
	if err != nil {
		return nil, s.unavailable("lookup", err)
	}
	s.metrics.lookupUsers.Add(float64(len(req.GetUsers())))
	s.metrics.sessions.WithLabelValues("lookup_found").Add(float64(len(out)))
	// Read after the lookup: a loss between the two is then seen too.
	return &internalpb.LookupSessionsReply{Sessions: out, Settling: s.epochs.settling(ctx)}, nil
}
