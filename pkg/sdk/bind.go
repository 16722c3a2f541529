package sdk

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Several apps on one connection (docs/protocol.md §4.2): Bind adds an app
// of the same vendor to the Client's connection; its pushes reach the same
// Handler, told apart by Message.App. Bound apps are bound again after
// every reconnect, until Unbind or until the server ends the binding;
// after a flash reconnect, those the resumed session kept
// (AuthReply.resumed_apps) need no BIND and get none.

// binds are the apps bound besides Config.App, by app, with their tokens.
type binds struct {
	mu     sync.Mutex
	tokens map[string]string
}

func (b *binds) set(app, tok string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens == nil {
		b.tokens = map[string]string{}
	}
	b.tokens[app] = tok
}

func (b *binds) drop(app string) {
	b.mu.Lock()
	delete(b.tokens, app)
	b.mu.Unlock()
}

func (b *binds) snapshot() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.tokens))
	for a, t := range b.tokens {
		out[a] = t
	}
	return out
}

// Bound returns the apps bound to the connection besides Config.App.
func (c *Client) Bound() []string {
	var out []string
	for app := range c.binds.snapshot() {
		out = append(out, app)
	}
	return out
}

// Bind adds app to the connection with tok, a client token of that app
// (minted by its business backend). It waits for the server's answer
// (DefaultUplinkTimeout without a deadline on ctx); a refusal is a
// *ServerError with the code (BIND_VENDOR, BIND_LIMIT, TOKEN_INVALID…), and
// the connection stays up either way. Once bound, the app is bound again
// after each reconnect.
func (c *Client) Bind(ctx context.Context, app, tok string) error {
	s := c.current()
	if s == nil {
		return ErrNotConnected
	}
	rep, err := s.bind(ctx, app, tok)
	if err != nil {
		return err
	}
	if rep.GetCode() != 0 {
		return &ServerError{Op: protocol.OpBindReply, Code: protocol.Code(rep.GetCode()), Message: rep.GetMessage()}
	}
	if rep.GetApp() != app {
		// Bound, but not what the caller named: undo it rather than keep
		// an app the caller does not know it has.
		_, _ = s.request(ctx, protocol.OpUnbind, &clientpb.Unbind{App: rep.GetApp()})
		return fmt.Errorf("sdk: bind %s: the token is for app %q", app, rep.GetApp())
	}
	c.binds.set(app, tok)
	return nil
}

// Unbind stops delivery of app on the connection and forgets it for
// reconnects. Unbinding an app that is not bound is not an error.
func (c *Client) Unbind(ctx context.Context, app string) error {
	c.binds.drop(app)
	s := c.current()
	if s == nil {
		return nil // nothing is bound without a connection
	}
	m, err := s.request(ctx, protocol.OpUnbind, &clientpb.Unbind{App: app})
	if err != nil {
		return err
	}
	rep := m.(*clientpb.UnbindReply)
	if code := protocol.Code(rep.GetCode()); code != protocol.CodeOK && code != protocol.CodeNotBound {
		return &ServerError{Op: protocol.OpUnbindReply, Code: code, Message: rep.GetMessage()}
	}
	return nil
}

// rebind binds apps (app → token, remembered before this connection) on
// it, but for kept: the apps a resumed login says are bound already
// (AuthReply.resumed_apps, docs/protocol.md §4.4). Refusals that a retry
// cannot fix forget the app; others are logged and retried at the next
// reconnect.
func (s *session) rebind(ctx context.Context, apps map[string]string, kept []string) {
	for app, tok := range apps {
		if slices.Contains(kept, app) {
			s.c.stats.rebindsSkipped.Add(1)
			continue
		}
		rep, err := s.bind(ctx, app, tok)
		if err != nil {
			s.c.log.Warn("sdk: rebind failed", "app", app, "err", err)
			continue
		}
		switch code := protocol.Code(rep.GetCode()); code {
		case protocol.CodeOK, protocol.CodeAlreadyBound:
		case protocol.CodeTokenInvalid, protocol.CodeAppUnknown, protocol.CodeBindVendor, protocol.CodeTokenExpired:
			s.c.log.Warn("sdk: app no longer bound", "app", app, "code", code, "message", rep.GetMessage())
			s.c.binds.drop(app)
			s.c.notifyUnbound(app, code, rep.GetMessage())
		default:
			s.c.log.Warn("sdk: rebind refused", "app", app, "code", code, "message", rep.GetMessage())
		}
	}
}

// serverUnbind handles an UNBIND the server sent: the binding is over.
func (s *session) serverUnbind(u *clientpb.Unbind) {
	s.c.log.Info("sdk: app unbound by the server", "app", u.GetApp(), "code", protocol.Code(u.GetCode()), "reason", u.GetReason())
	s.c.binds.drop(u.GetApp())
	s.c.notifyUnbound(u.GetApp(), protocol.Code(u.GetCode()), u.GetReason())
}

func (c *Client) notifyUnbound(app string, code protocol.Code, reason string) {
	if c.cfg.OnUnbind != nil {
		c.cfg.OnUnbind(app, code, reason)
	}
}

// bind sends BIND of app with the broadcast seqs of app handled so far,
// for its catch-up.
func (s *session) bind(ctx context.Context, app, tok string) (*clientpb.BindReply, error) {
	last, gaps := s.c.bcast.bind(app)
	m, err := s.request(ctx, protocol.OpBind, &clientpb.Bind{Token: tok, LastBroadcastSeq: last, BroadcastGaps: gaps})
	if err != nil {
		return nil, err
	}
	return m.(*clientpb.BindReply), nil
}

// replies are the BIND and UNBIND requests awaiting their reply, by seq.
type replies struct {
	mu sync.Mutex
	m  map[uint32]chan proto.Message
}

// request sends op with body and waits for the reply carrying its seq.
func (s *session) request(ctx context.Context, op protocol.Op, body proto.Message) (proto.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultUplinkTimeout)
		defer cancel()
	}
	seq := s.c.nextSeq()
	frame, err := protocol.AppendMessage(nil, op, seq, body)
	if err != nil {
		return nil, err
	}
	ch := make(chan proto.Message, 1)
	s.replies.mu.Lock()
	if len(s.replies.m) >= MaxPendingUplinks {
		s.replies.mu.Unlock()
		return nil, ErrTooManyUplinks
	}
	if s.replies.m == nil {
		s.replies.m = map[uint32]chan proto.Message{}
	}
	s.replies.m[seq] = ch
	s.replies.mu.Unlock()
	defer func() {
		s.replies.mu.Lock()
		delete(s.replies.m, seq)
		s.replies.mu.Unlock()
	}()
	select {
	case s.out <- frame:
	case <-ctx.Done():
		return nil, fmt.Errorf("sdk: %s: %w", op, ctx.Err())
	case <-s.done:
		return nil, fmt.Errorf("sdk: %s: %w", op, ErrNotConnected)
	}
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sdk: %s: no reply: %w", op, ctx.Err())
	case <-s.done:
		return nil, fmt.Errorf("sdk: %s: connection lost before the reply: %w", op, ErrNotConnected)
	}
}

// deliverReply hands a BIND_REPLY or UNBIND_REPLY to its waiter.
func (s *session) deliverReply(seq uint32, m proto.Message) {
	s.replies.mu.Lock()
	ch := s.replies.m[seq]
	delete(s.replies.m, seq)
	s.replies.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}
