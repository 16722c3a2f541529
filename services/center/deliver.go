package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// lookup returns the live sessions of users of app, in batches of
// registerLookupCh users per call.
func (s *Server) lookup(ctx context.Context, app string, users []string) ([]*internalpb.Session, error) {
	keys := make([]*internalpb.UserKey, len(users))
	for i, u := range users {
		keys[i] = &internalpb.UserKey{App: app, User: u}
	}
	sessions, _, err := s.lookupKeys(ctx, keys)
	return sessions, err
}

// lookupKeys returns the live sessions of the given (app, user) pairs, in
// batches of registerLookupCh pairs per call. Only sessions of a requested
// pair are returned: Register answers by (app, user), and a record of
// another app must never reach this app's messages. settling reports an answer register gave while its store was refilling
// after a data loss (LookupSessionsReply.settling): a user with no session
// in it may be online.
func (s *Server) lookupKeys(ctx context.Context, keys []*internalpb.UserKey) (_ []*internalpb.Session, settling bool, _ error) {
	want := make(map[userKey]bool, len(keys))
	for _, k := range keys {
		want[userKey{k.GetApp(), k.GetUser()}] = true
	}
	var out []*internalpb.Session
	for start := 0; start < len(keys); start += registerLookupCh {
		end := min(start+registerLookupCh, len(keys))
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		resp, err := s.register.Lookup(cctx, &internalpb.LookupSessionsRequest{Users: keys[start:end]})
		cancel()
		if err != nil {
			s.m.deliveryFails.WithLabelValues("lookup").Inc()
			return nil, false, fmt.Errorf("register: lookup %d users of %s: %w", end-start, keys[start].GetApp(), err)
		}
		settling = settling || resp.GetSettling()
		for _, ss := range resp.GetSessions() {
			if want[userKey{ss.GetApp(), ss.GetUser()}] {
				out = append(out, ss)
			}
		}
	}
	return out, settling, nil
}

type userKey struct{ app, user string }

// matches reports whether session ss should get a message for device
// (empty: every device of the user).
func matches(ss *internalpb.Session, user, device string) bool {
	return ss.GetUser() == user && (device == "" || ss.GetDevice() == device)
}

func target(ss *internalpb.Session) *internalpb.Target {
	return &internalpb.Target{ConnId: ss.GetConnId(), App: ss.GetApp(), User: ss.GetUser(), Device: ss.GetDevice()}
}

// deliver pushes each message to its user's live sessions and returns how
// many connections accepted a copy. The messages may come from many
// requests and apps: one Register lookup covers all their users, and each
// room gets one PushBatch call per roomBatchPushes messages. Only the
// lookup failing is an error: a room that does not answer loses nothing,
// since QoS 1 messages are stored and QoS 0 ones were never promised.
// Stored messages whose delivery failed for a reason that may pass in a
// moment go to the retrier.
func (s *Server) deliver(ctx context.Context, msgs []*internalpb.Message) (int, error) {
	n, missed, err := s.deliverOnce(ctx, msgs)
	if len(missed) > 0 && s.retry != nil {
		s.retry.add(missed, 0)
	}
	return n, err
}

// deliverOnce is one delivery attempt. missed are the QoS 1 messages that
// reached none of their user's connections because a downstream failed:
// the lookup, a room call, a room not (or no longer) listed in etcd, or a
// connection that had just gone (the user is reconnecting elsewhere).
func (s *Server) deliverOnce(ctx context.Context, msgs []*internalpb.Message) (int, []*internalpb.Message, error) {
	if len(msgs) == 0 {
		return 0, nil, nil
	}
	keys := make([]*internalpb.UserKey, 0, len(msgs))
	seen := make(map[userKey]bool, len(msgs))
	for _, m := range msgs {
		k := userKey{m.GetApp(), m.GetUser()}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, &internalpb.UserKey{App: k.app, User: k.user})
		}
	}
	sessions, settling, err := s.lookupKeys(ctx, keys)
	var unrouted []*internalpb.Message
	switch {
	case err != nil:
		// Register cannot answer: deliver to where the users were at its
		// last answer (routes.go); the others wait for the retrier.
		var unknown []*internalpb.UserKey
		sessions, unknown = s.routes.recall(keys, time.Now())
		s.m.routeFallback.WithLabelValues("hit").Add(float64(len(keys) - len(unknown)))
		s.m.routeFallback.WithLabelValues("miss").Add(float64(len(unknown)))
		if len(sessions) == 0 {
			return 0, stored(msgs), err
		}
		unrouted = messagesOf(msgs, unknown)
		s.log.Debug("center: register lookup failed; delivering by the last answer", "users", len(keys), "unknown", len(unknown), "err", err)
	case settling:
		// Register lost its data moments ago and rooms are putting their
		// sessions back: a user it did not find may be online. Deliver to
		// where the last answer had them, and retry the rest shortly
		// rather than leave them to the sweep. What it did find is fresh.
		placed := usersOf(sessions)
		var absent []*internalpb.UserKey
		for _, k := range keys {
			if !placed[userKey{k.GetApp(), k.GetUser()}] {
				absent = append(absent, k)
			}
		}
		s.routes.remember(keysOf(placed), sessions, time.Now())
		recalled, unknown := s.routes.recall(absent, time.Now())
		s.m.routeFallback.WithLabelValues("hit").Add(float64(len(absent) - len(unknown)))
		s.m.routeFallback.WithLabelValues("miss").Add(float64(len(unknown)))
		sessions = append(sessions, recalled...)
		unrouted = messagesOf(msgs, unknown)
	default:
		s.routes.remember(keys, sessions, time.Now())
	}
	if len(sessions) == 0 {
		return 0, unrouted, nil
	}
	byUser := make(map[userKey][]*internalpb.Session, len(sessions))
	for _, ss := range sessions {
		k := userKey{ss.GetApp(), ss.GetUser()}
		byUser[k] = append(byUser[k], ss)
	}
	perRoom := map[string][]*internalpb.RoomPushRequest{}
	for _, m := range msgs {
		var byAddr map[string][]*internalpb.Target
		for _, ss := range byUser[userKey{m.GetApp(), m.GetUser()}] {
			if matches(ss, m.GetUser(), m.GetDevice()) {
				if byAddr == nil {
					byAddr = map[string][]*internalpb.Target{}
				}
				byAddr[ss.GetRoomAddr()] = append(byAddr[ss.GetRoomAddr()], target(ss))
			}
		}
		for addr, ts := range byAddr {
			perRoom[addr] = append(perRoom[addr], &internalpb.RoomPushRequest{Message: m, Targets: ts})
		}
	}
	n, failed := s.pushRooms(ctx, perRoom)
	s.m.delivered.Add(float64(n))
	return n, append(missedOf(failed), unrouted...), nil
}

// usersOf is the set of users that have one of sessions.
func usersOf(sessions []*internalpb.Session) map[userKey]bool {
	out := make(map[userKey]bool, len(sessions))
	for _, ss := range sessions {
		out[userKey{ss.GetApp(), ss.GetUser()}] = true
	}
	return out
}

// keysOf lists the users of set.
func keysOf(set map[userKey]bool) []*internalpb.UserKey {
	out := make([]*internalpb.UserKey, 0, len(set))
	for k := range set {
		out = append(out, &internalpb.UserKey{App: k.app, User: k.user})
	}
	return out
}

// messagesOf returns the stored messages addressed to one of keys.
func messagesOf(msgs []*internalpb.Message, keys []*internalpb.UserKey) []*internalpb.Message {
	if len(keys) == 0 {
		return nil
	}
	want := make(map[userKey]bool, len(keys))
	for _, k := range keys {
		want[userKey{k.GetApp(), k.GetUser()}] = true
	}
	var out []*internalpb.Message
	for _, m := range msgs {
		if m.GetQos() >= 1 && want[userKey{m.GetApp(), m.GetUser()}] {
			out = append(out, m)
		}
	}
	return out
}

// stored keeps the QoS 1 messages: only they are worth retrying, QoS 0
// promises at most once and its caller already has its answer.
func stored(msgs []*internalpb.Message) []*internalpb.Message {
	var out []*internalpb.Message
	for _, m := range msgs {
		if m.GetQos() >= 1 {
			out = append(out, m)
		}
	}
	return out
}

// missedOf lists the stored messages of the failed pushes, each once (a
// user on two rooms gives one push per room).
func missedOf(failed []*internalpb.RoomPushRequest) []*internalpb.Message {
	if len(failed) == 0 {
		return nil
	}
	seen := make(map[uint64]bool, len(failed))
	var out []*internalpb.Message
	for _, p := range failed {
		m := p.GetMessage()
		if m.GetQos() >= 1 && !seen[m.GetId()] {
			seen[m.GetId()] = true
			out = append(out, m)
		}
	}
	return out
}

// pushRooms calls the rooms in parallel on the delivery pool, so a slow
// room does not hold up the others; when the pool is busy the call runs
// here instead. It returns the copies accepted and the pushes that failed.
func (s *Server) pushRooms(ctx context.Context, perRoom map[string][]*internalpb.RoomPushRequest) (int, []*internalpb.RoomPushRequest) {
	var delivered atomic.Int64
	var mu sync.Mutex
	var failed []*internalpb.RoomPushRequest
	var wg sync.WaitGroup
	for addr, pushes := range perRoom {
		wg.Add(1)
		call := func() {
			defer wg.Done()
			n, f := s.pushRoom(ctx, addr, pushes)
			delivered.Add(int64(n))
			if len(f) > 0 {
				mu.Lock()
				failed = append(failed, f...)
				mu.Unlock()
			}
		}
		if len(perRoom) == 1 || s.pool.Submit(call) != nil {
			call()
		}
	}
	wg.Wait()
	return int(delivered.Load()), failed
}

// pushRoom sends pushes to one room in PushBatch calls within the room's
// bounds and returns how many targets took their message and which pushes
// failed.
func (s *Server) pushRoom(ctx context.Context, addr string, pushes []*internalpb.RoomPushRequest) (int, []*internalpb.RoomPushRequest) {
	rc, err := s.rooms.client(addr)
	if err != nil {
		// Not listed in etcd: dead, or hung long enough to lose its lease
		// and not yet back. Its users reconnect elsewhere or it returns.
		s.m.deliveryFails.WithLabelValues("room").Inc()
		s.log.Debug("center: skipping room", "room", addr, "err", err)
		return 0, pushes
	}
	n := 0
	var failed []*internalpb.RoomPushRequest
	for len(pushes) > 0 {
		if ctx.Err() != nil {
			return n, append(failed, pushes...)
		}
		size, targets := 0, 0
		for size < len(pushes) && size < roomBatchPushes && targets+len(pushes[size].GetTargets()) <= roomBatchTargets {
			targets += len(pushes[size].GetTargets())
			size++
		}
		// A single push over the target bound still goes alone; the room
		// answers it with InvalidArgument, as Push always has.
		size = max(size, 1)
		k, f := s.pushBatch(ctx, rc, addr, pushes[:size])
		n += k
		failed = append(failed, f...)
		pushes = pushes[size:]
	}
	return n, failed
}

func (s *Server) pushBatch(ctx context.Context, rc internalpb.RoomClient, addr string, pushes []*internalpb.RoomPushRequest) (int, []*internalpb.RoomPushRequest) {
	s.m.roomBatch.Observe(float64(len(pushes)))
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	resp, err := rc.PushBatch(cctx, &internalpb.RoomPushBatchRequest{Pushes: pushes})
	cancel()
	if status.Code(err) == codes.Unimplemented {
		// A room not yet upgraded during a rolling deploy.
		return s.pushEach(ctx, rc, addr, pushes)
	}
	if err != nil {
		s.m.deliveryFails.WithLabelValues("room").Inc()
		s.log.Warn("center: room push batch failed; messages stay stored", "room", addr, "pushes", len(pushes),
			"first_id", pushes[0].GetMessage().GetId(), "err", err)
		return 0, pushes
	}
	n := 0
	var failed []*internalpb.RoomPushRequest
	for i, r := range resp.GetReplies() {
		k := okResults(r.GetResults())
		n += k
		if k == 0 && i < len(pushes) && gone(r.GetResults()) {
			failed = append(failed, pushes[i])
		}
	}
	return n, failed
}

func (s *Server) pushEach(ctx context.Context, rc internalpb.RoomClient, addr string, pushes []*internalpb.RoomPushRequest) (int, []*internalpb.RoomPushRequest) {
	n := 0
	var failed []*internalpb.RoomPushRequest
	for i, p := range pushes {
		if ctx.Err() != nil {
			return n, append(failed, pushes[i:]...)
		}
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		resp, err := rc.Push(cctx, p)
		cancel()
		if err != nil {
			s.m.deliveryFails.WithLabelValues("room").Inc()
			s.log.Warn("center: room push failed", "room", addr, "id", p.GetMessage().GetId(), "err", err)
			failed = append(failed, p)
			continue
		}
		k := okResults(resp.GetResults())
		n += k
		if k == 0 && gone(resp.GetResults()) {
			failed = append(failed, p)
		}
	}
	return n, failed
}

// gone reports whether a target's connection had just ended (NOT_FOUND or
// CLOSED): the session Register gave is stale, and a moment later the
// user's new session will be there. QUEUE_FULL is not retried: that
// connection was closed for not reading, and the stored copy waits for it.
func gone(rs []*internalpb.TargetResult) bool {
	for _, r := range rs {
		switch r.GetCode() {
		case internalpb.ResultCode_RESULT_CODE_NOT_FOUND, internalpb.ResultCode_RESULT_CODE_CLOSED:
			return true
		}
	}
	return false
}

func okResults(rs []*internalpb.TargetResult) int {
	n := 0
	for _, r := range rs {
		if r.GetCode() == internalpb.ResultCode_RESULT_CODE_OK {
			n++
		}
	}
	return n
}

// deliverAsync hands stored messages to the delivery batcher. What does not
// fit in its queue the request delivers itself before answering: the
// caller waits a little longer (back-pressure on the business), but an
// online user is not left without a message until their next reconnect.
// Either way the messages are already durable.
func (s *Server) deliverAsync(ctx context.Context, msgs []*internalpb.Message) {
	rest := s.batch.enqueue(msgs)
	if len(rest) == 0 {
		return
	}
	s.m.inline.Add(float64(len(rest)))
	if _, err := s.deliver(ctx, rest); err != nil {
		s.log.Warn("center: delivery failed; messages stay stored", "count", len(rest), "err", err)
	}
}

// kick closes the matching connections and returns how many were closed.
func (s *Server) kick(ctx context.Context, app, user, device, reason string) (int, error) {
	sessions, err := s.lookup(ctx, app, []string{user})
	if err != nil {
		return 0, err
	}
	byAddr := map[string][]*internalpb.Target{}
	for _, ss := range sessions {
		if matches(ss, user, device) {
			byAddr[ss.GetRoomAddr()] = append(byAddr[ss.GetRoomAddr()], target(ss))
		}
	}
	var kicked atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, ts := range byAddr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.kickRoom(ctx, addr, ts, reason)
			kicked.Add(int64(n))
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if kicked.Load() == 0 && firstErr != nil {
		return 0, firstErr
	}
	return int(kicked.Load()), nil
}

func (s *Server) kickRoom(ctx context.Context, addr string, ts []*internalpb.Target, reason string) (int, error) {
	rc, err := s.rooms.client(addr)
	if err != nil {
		// The room is gone, and with it the connection.
		return 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	defer cancel()
	resp, err := rc.Kick(cctx, &internalpb.RoomKickRequest{Targets: ts, Reason: reason})
	if err != nil {
		s.m.deliveryFails.WithLabelValues("room").Inc()
		return 0, fmt.Errorf("room %s: kick %d connections: %w", addr, len(ts), err)
	}
	n := 0
	for _, r := range resp.GetResults() {
		if r.GetCode() == internalpb.ResultCode_RESULT_CODE_OK {
			n++
		}
	}
	return n, nil
}
