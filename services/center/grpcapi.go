package main

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/apipb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// grpcAPI serves proto/pushgw/api/v1/api.proto (docs/GRPC.md) with the
// same validation, storage and delivery as the HTTP API.
type grpcAPI struct {
	apipb.UnimplementedPushAPIServer
	s *Server
}

// grpcCodeOf maps the HTTP API's code names to gRPC status codes; the name
// itself travels in the status message and details.
var grpcCodeOf = map[string]codes.Code{
	CodeInvalidArgument:      codes.InvalidArgument,
	CodeUnauthenticated:      codes.Unauthenticated,
	CodeForbidden:            codes.PermissionDenied,
	CodeNotFound:             codes.NotFound,
	CodeMethodNotAllowed:     codes.Unimplemented,
	CodePayloadTooLarge:      codes.InvalidArgument,
	CodeUnsupportedMediaType: codes.InvalidArgument,
	CodeInternal:             codes.Internal,
	CodeUnavailable:          codes.Unavailable,
	// Both mean "retry later"; Error.retry_after_s says when.
	CodeRateLimited:     codes.ResourceExhausted,
	CodeTooManyInFlight: codes.ResourceExhausted,
}

// grpcError turns an API error into a status: "CODE: message", with an
// apipb.Error in the details.
func grpcError(e *apiError) error {
	c, ok := grpcCodeOf[e.Code]
	if !ok {
		c = codes.Internal
	}
	st := status.New(c, e.Code+": "+e.Message)
	if d, err := st.WithDetails(apiErrorPB(e)); err == nil {
		st = d
	}
	return st.Err()
}

func apiErrorPB(e *apiError) *apipb.Error {
	return &apipb.Error{Code: e.Code, Message: e.Message, Field: e.Field, RetryAfterS: int32(e.retryAfter)}
}

type appKey struct{}

// grpcRouteMulti is PushMulti's route label (grpcRoute of its method).
const grpcRouteMulti = "grpc_pushmulti"

// authenticateGRPC finds the app by the "authorization: Bearer <key>"
// metadata, with the HTTP API's messages.
func (s *Server) authenticateGRPC(ctx context.Context) (appconfig.App, *apiError) {
	md, _ := metadata.FromIncomingContext(ctx)
	var h string
	if v := md.Get("authorization"); len(v) > 0 {
		h = v[0]
	}
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return appconfig.App{}, errorf(CodeUnauthenticated, "send the app's API key as metadata 'authorization: Bearer <api key>'")
	}
	app, ok := s.apps.ByAPIKey(strings.TrimSpace(h[len(prefix):]))
	if !ok {
		return appconfig.App{}, errorf(CodeUnauthenticated, "API key is unknown, revoked, or its app is disabled")
	}
	return app, nil
}

// unaryAuth authenticates, bounds the call by the request timeout and
// counts it like an HTTP request (route "grpc_<method>").
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	route := grpcRoute(info.FullMethod)
	app, e := s.authenticateGRPC(ctx)
	if e != nil {
		s.m.requests.WithLabelValues(route, e.Code).Inc()
		return nil, grpcError(e)
	}
	timeout := s.timeout
	if route == grpcRouteMulti {
		// As the HTTP route: one StoreMulti of 100,000 rows takes seconds.
		timeout = max(timeout, multiRequestTimeout)
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, appKey{}, app), timeout)
	defer cancel()
	resp, err := h(ctx, req)
	code := codeOK
	if err != nil {
		code = CodeInternal
		if d := status.Convert(err).Details(); len(d) > 0 {
			if pe, ok := d[0].(*apipb.Error); ok {
				code = pe.GetCode()
			}
		}
	}
	s.m.requests.WithLabelValues(route, code).Inc()
	return resp, err
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	app, e := s.authenticateGRPC(ss.Context())
	if e != nil {
		s.m.requests.WithLabelValues(grpcRoute(info.FullMethod), e.Code).Inc()
		return grpcError(e)
	}
	return h(srv, &appStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), appKey{}, app)})
}

type appStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *appStream) Context() context.Context { return a.ctx }

func grpcRoute(fullMethod string) string {
	return "grpc_" + strings.ToLower(fullMethod[strings.LastIndexByte(fullMethod, '/')+1:])
}

func appOf(ctx context.Context) appconfig.App {
	app, _ := ctx.Value(appKey{}).(appconfig.App)
	return app
}

// pushRequestOf is the HTTP body a gRPC push stands for, so it goes
// through the same validation.
func pushRequestOf(r *apipb.PushRequest) pushRequest {
	payload := string(r.GetPayload())
	q := pushRequest{App: r.GetApp(), User: r.GetUser(), Device: r.GetDevice(), Payload: &payload,
		TTL: r.Ttl, IdempotencyKey: r.GetIdempotencyKey(), CollapseKey: r.GetCollapseKey(), Priority: r.Priority,
		Receipt: r.GetReceipt()}
	if r.Qos != nil {
		qos := int(r.GetQos())
		q.QoS = &qos
	}
	return q
}

// push is POST /v1/push for one gRPC push (Push and each PushStream
// push): the same per-app limit, validation, collapse key and priority.
func (s *Server) pushGRPC(ctx context.Context, app appconfig.App, r *apipb.PushRequest) (*apipb.PushReply, *apiError) {
	// Before validating, as HTTP does before decoding.
	if e := s.limits.allowOne(ctx, app.Name, apiPush, app.Push()); e != nil {
		return nil, e
	}
	req := pushRequestOf(r)
	d, e := req.validate(app.Name)
	if e != nil {
		return nil, e
	}
	msgs, e := s.newMessages(app.Name, []string{req.User}, req.Device, d)
	if e != nil {
		return nil, e
	}
	msgs[0].IdempotencyKey = req.IdempotencyKey
	if e := applyReceipt(app, req.Receipt, d, msgs); e != nil {
		return nil, e
	}
	delivered, replaced, e := s.send(ctx, msgs)
	if e != nil {
		return nil, e
	}
	out := &apipb.PushReply{Id: msgs[0].GetId(), Qos: d.qos}
	if delivered != nil {
		n := int32(*delivered)
		out.Delivered = &n
	}
	if first, ok := replaced[msgs[0].GetId()]; ok {
		out.Id, out.Replayed = first, true
	}
	return out, nil
}

func (g *grpcAPI) Push(ctx context.Context, r *apipb.PushRequest) (*apipb.PushReply, error) {
	out, e := g.s.pushGRPC(ctx, appOf(ctx), r)
	if e != nil {
		return nil, grpcError(e)
	}
	return out, nil
}

// multiRequestOf is the HTTP body a gRPC multicast stands for.
func multiRequestOf(r *apipb.PushMultiRequest) multiPushRequest {
	payload := string(r.GetPayload())
	q := multiPushRequest{App: r.GetApp(), Users: r.GetUsers(), Payload: &payload, TTL: r.Ttl,
		IdempotencyKey: r.GetIdempotencyKey(), CollapseKey: r.GetCollapseKey(), Priority: r.Priority,
		Receipt: r.GetReceipt()}
	if r.Qos != nil {
		qos := int(r.GetQos())
		q.QoS = &qos
	}
	return q
}

// PushMulti is POST /v1/push/multi: the same validation, per-app
// recipient limit and multicast path (one StoreMulti, paced fan-out).
func (g *grpcAPI) PushMulti(ctx context.Context, r *apipb.PushMultiRequest) (*apipb.PushMultiReply, error) {
	req := multiRequestOf(r)
	out, e := g.s.pushMulti(ctx, appOf(ctx), &req)
	if e != nil {
		return nil, grpcError(e)
	}
	rep := &apipb.PushMultiReply{Ids: make(map[string]uint64, len(out.IDs)), Qos: out.QoS, Replayed: out.Replayed}
	for u, id := range out.IDs {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return nil, grpcError(errorf(CodeInternal, "message id "+id+" of user "+u+" is not a number"))
		}
		rep.Ids[u] = n
	}
	if out.MulticastID != "" {
		rep.MulticastId, _ = strconv.ParseUint(out.MulticastID, 10, 64)
	}
	if out.Delivered != nil {
		n := int32(*out.Delivered)
		rep.Delivered = &n
	}
	return rep, nil
}

func (g *grpcAPI) Status(ctx context.Context, r *apipb.StatusRequest) (*apipb.StatusReply, error) {
	app, id := appOf(ctx), r.GetId()
	if id == 0 {
		return nil, grpcError(fieldError("id", "message id must be the id returned by Push, got 0"))
	}
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	defer cancel()
	resp, err := g.s.saver.Status(cctx, &internalpb.StatusRequest{App: app.Name, Id: id})
	if err != nil {
		g.s.log.Warn("center: status failed", "id", id, "err", err)
		return nil, grpcError(errorf(CodeUnavailable, "message store is unavailable; retry shortly"))
	}
	m := resp.GetMessage()
	if !resp.GetFound() || m == nil || (m.GetApp() != "" && m.GetApp() != app.Name) {
		return nil, grpcError(errorf(CodeNotFound, "no message "+strconv.FormatUint(id, 10)+" for app "+app.Name+" (QoS 0 messages are never stored)"))
	}
	return &apipb.StatusReply{Id: id, State: stateName(m.GetState()), DeliveryCount: m.GetDeliveryCount(),
		CreatedMs: m.GetCreatedMs(), ExpiresMs: m.GetExpiresMs()}, nil
}
