package sdk

import (
	"context"
	"fmt"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Uplink sends payload to the app's business backend (through the room and
// the coordinator's webhook for route) and waits for the reply. Without a
// deadline on ctx it waits at most DefaultUplinkTimeout. A non-zero reply
// code is returned as a *ServerError.
func (c *Client) Uplink(ctx context.Context, route string, payload []byte) ([]byte, error) {
	s := c.current()
	if s == nil {
		return nil, ErrNotConnected
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultUplinkTimeout)
		defer cancel()
	}
	seq := c.nextSeq()
	frame, err := protocol.AppendMessage(nil, protocol.OpUplink, seq, &clientpb.Uplink{Route: route, Payload: payload})
	if err != nil {
		return nil, err
	}
	if len(frame)-protocol.HeaderSize > c.cfg.MaxFrame {
		return nil, fmt.Errorf("sdk: uplink of %d bytes exceeds the %d-byte frame limit", len(frame)-protocol.HeaderSize, c.cfg.MaxFrame)
	}
	ch, err := s.await(seq)
	if err != nil {
		return nil, err
	}
	defer s.forget(seq)

	select {
	case s.out <- frame:
	case <-ctx.Done():
		return nil, fmt.Errorf("sdk: uplink %s: %w", route, ctx.Err())
	case <-s.done:
		return nil, fmt.Errorf("sdk: uplink %s: %w", route, ErrNotConnected)
	}
	select {
	case r := <-ch:
		if r.Code != 0 {
			return r.Payload, &ServerError{Op: protocol.OpUplinkReply, Code: protocol.Code(r.Code), Message: r.Message}
		}
		return r.Payload, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sdk: uplink %s: no reply: %w", route, ctx.Err())
	case <-s.done:
		return nil, fmt.Errorf("sdk: uplink %s: connection lost before the reply: %w", route, ErrNotConnected)
	}
}

func (s *session) await(seq uint32) (chan *clientpb.UplinkReply, error) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if len(s.waiters) >= MaxPendingUplinks {
		return nil, ErrTooManyUplinks
	}
	ch := make(chan *clientpb.UplinkReply, 1)
	s.waiters[seq] = ch
	return ch, nil
}

func (s *session) forget(seq uint32) {
	s.waitMu.Lock()
	delete(s.waiters, seq)
	s.waitMu.Unlock()
}

// deliver hands a reply to its waiter; a reply nobody waits for (timed out)
// is dropped.
func (s *session) deliver(seq uint32, r *clientpb.UplinkReply) {
	s.waitMu.Lock()
	ch := s.waiters[seq]
	delete(s.waiters, seq)
	s.waitMu.Unlock()
	if ch != nil {
		ch <- r
	}
}
