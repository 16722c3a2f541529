package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

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
	return s.lookupKeys(ctx, keys)
}

// lookupKeys returns the live sessions of the given (app, user) pairs, in
// batches of registerLookupCh pairs per call. Only sessions of a requested
// pair are returned: Register answers by (app, user), and a record of
// another app must never reach this app's messages.
func (s *Server) lookupKeys(ctx context.Context, keys []*internalpb.UserKey) ([]*internalpb.Session, error) {
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
			return nil, fmt.Errorf("register: lookup %d users of %s: %w", end-start, keys[start].GetApp(), err)
		}
		for _, ss := range resp.GetSessions() {
			if want[userKey{ss.GetApp(), ss.GetUser()}] {
				out = append(out, ss)
			}
		}
	}
	return out, nil
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
func (s *Server) deliver(ctx context.Context, msgs []*internalpb.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
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
	sessions, err := s.lookupKeys(ctx, keys)
	if err != nil {
		return 0, err
	}
	if len(sessions) == 0 {
		return 0, nil
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
	n := s.pushRooms(ctx, perRoom)
	s.m.delivered.Add(float64(n))
	return n, nil
}

// pushRooms calls the rooms in parallel on the delivery pool, so a slow
// room does not hold up the others; when the pool is busy the call runs
// here instead.
func (s *Server) pushRooms(ctx context.Context, perRoom map[string][]*internalpb.RoomPushRequest) int {
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for addr, pushes := range perRoom {
		wg.Add(1)
		call := func() {
			defer wg.Done()
			delivered.Add(int64(s.pushRoom(ctx, addr, pushes)))
		}
		if len(perRoom) == 1 || s.pool.Submit(call) != nil {
			call()
		}
	}
	wg.Wait()
	return int(delivered.Load())
}

// pushRoom sends pushes to one room in PushBatch calls within the room's
// bounds and returns how many targets took their message.
func (s *Server) pushRoom(ctx context.Context, addr string, pushes []*internalpb.RoomPushRequest) int {
	rc, err := s.rooms.client(addr)
	if err != nil {
		s.m.deliveryFails.WithLabelValues("room").Inc()
		s.log.Debug("center: skipping room", "room", addr, "err", err)
		return 0
	}
	n := 0
	for len(pushes) > 0 && ctx.Err() == nil {
		size, targets := 0, 0
		for size < len(pushes) && size < roomBatchPushes && targets+len(pushes[size].GetTargets()) <= roomBatchTargets {
			targets += len(pushes[size].GetTargets())
			size++
		}
		// A single push over the target bound still goes alone; the room
		// answers it with InvalidArgument, as Push always has.
		size = max(size, 1)
		n += s.pushBatch(ctx, rc, addr, pushes[:size])
		pushes = pushes[size:]
	}
	return n
}

func (s *Server) pushBatch(ctx context.Context, rc internalpb.RoomClient, addr string, pushes []*internalpb.RoomPushRequest) int {
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
		return 0
	}
	n := 0
	for _, r := range resp.GetReplies() {
		n += okResults(r.GetResults())
	}
	return n
}

func (s *Server) pushEach(ctx context.Context, rc internalpb.RoomClient, addr string, pushes []*internalpb.RoomPushRequest) int {
	n := 0
	for _, p := range pushes {
		if ctx.Err() != nil {
			return n
		}
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		resp, err := rc.Push(cctx, p)
		cancel()
		if err != nil {
			s.m.deliveryFails.WithLabelValues("room").Inc()
			s.log.Warn("center: room push failed", "room", addr, "id", p.GetMessage().GetId(), "err", err)
			continue
		}
		n += okResults(resp.GetResults())
	}
	return n
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
