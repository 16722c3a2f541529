// Package pushclient is a small Go client of center's gRPC API
// (proto/pushgw/api/v1/api.proto, docs/GRPC.md) for business backends.
package pushclient

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/apipb"
)

// Flow-control windows of the connection to center: larger than any burst
// of answers a stream gets (center keeps at most 256 pushes in flight per
// stream).
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// Client calls one center's -grpc-api address with one app's API key.
// It is safe for concurrent use.
type Client struct {
	cc  *grpc.ClientConn
	api apipb.PushAPIClient
	key string
}

// Dial connects lazily to addr ("host:port"). Without opts the
// connection is plaintext, fit for loopback or a private network; pass
// grpc.WithTransportCredentials for TLS.
func Dial(addr, apiKey string, opts ...grpc.DialOption) (*Client, error) {
	if apiKey == "" {
		return nil, errors.New("pushclient: empty API key")
	}
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// Static windows first, so a caller's own window options still win:
	// gRPC's dynamic windows ping the peer after nearly every reply when
	// traffic is light, two more writes and wake-ups per push.
	opts = append([]grpc.DialOption{
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
	}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("pushclient: dial %s: %w", addr, err)
	}
	return &Client{cc: cc, api: apipb.NewPushAPIClient(cc), key: apiKey}, nil
}

// Close closes the connection; open streams end.
func (c *Client) Close() error { return c.cc.Close() }

func (c *Client) auth(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.key)
}

// Push sends one message to one user; for QoS 1 it returns once the
// message is durable. Set ctx's deadline: it bounds the call.
func (c *Client) Push(ctx context.Context, req *apipb.PushRequest) (*apipb.PushReply, error) {
	return c.api.Push(c.auth(ctx), req)
}

// PushMulti sends one message to many users.
func (c *Client) PushMulti(ctx context.Context, req *apipb.PushMultiRequest) (*apipb.PushMultiReply, error) {
	return c.api.PushMulti(c.auth(ctx), req)
}

// Status answers the state of a stored message.
func (c *Client) Status(ctx context.Context, id uint64) (*apipb.StatusReply, error) {
	return c.api.Status(c.auth(ctx), &apipb.StatusRequest{Id: id})
}

// Stream is one PushStream: Send pushes from one goroutine, Recv replies
// from another. Center keeps at most 256 pushes of a stream in flight;
// beyond that Send blocks until replies are read.
type Stream struct {
	s apipb.PushAPI_PushStreamClient
}

// Stream opens a PushStream that lives until ctx ends or CloseSend and
// the last reply.
func (c *Client) Stream(ctx context.Context) (*Stream, error) {
	s, err := c.api.PushStream(c.auth(ctx))
	if err != nil {
		return nil, err
	}
	return &Stream{s: s}, nil
}

// Send queues one push; ref comes back in its reply.
func (s *Stream) Send(ref uint64, req *apipb.PushRequest) error {
	return s.s.Send(&apipb.StreamPush{Ref: ref, Push: req})
}

// Recv returns the next reply, in completion order; io.EOF after the
// last one once CloseSend was called.
func (s *Stream) Recv() (*apipb.StreamPushReply, error) { return s.s.Recv() }

// CloseSend tells center no more pushes follow.
func (s *Stream) CloseSend() error { return s.s.CloseSend() }

// ErrorOf returns the API error (code name, message, field) a call
// failed with, or nil when err carries none (e.g. a transport error).
func ErrorOf(err error) *apipb.Error {
	for _, d := range status.Convert(err).Details() {
		if e, ok := d.(*apipb.Error); ok {
			return e
		}
	}
	return nil
}
