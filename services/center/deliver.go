package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// lookup returns the live sessions of users of app, in batches of
// registerLookupCh users per call.
func (s *Server) lookup(ctx context.Context, app string, users []string) ([]*internalpb.Session, error) {
	var out []*internalpb.Session
	for start := 0; start < len(users); start += registerLookupCh {
		end := min(start+registerLookupCh, len(users))
		keys := make([]*internalpb.UserKey, 0, end-start)
		for _, u := range users[start:end] {
			keys = append(keys, &internalpb.UserKey{App: app, User: u})
		}
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		resp, err := s.register.Lookup(cctx, &internalpb.LookupSessionsRequest{Users: keys})
		cancel()
		if err != nil {
			s.m.deliveryFails.WithLabelValues("lookup").Inc()
			return nil, fmt.Errorf("register: lookup %d users of %s: %w", len(keys), app, err)
		}
		for _, ss := range resp.GetSessions() {
			// Register answers by (app, user); guard against a record of
			// another app ever reaching this app's messages.
			if ss.GetApp() == app {
				out = append(out, ss)
			}
		}
	}
	return out, nil
}

// matches reports whether session ss should get a message for device
// (empty: every device of the user).
func matches(ss *internalpb.Session, user, device string) bool {
	return ss.GetUser() == user && (device == "" || ss.GetDevice() == device)
}

func target(ss *internalpb.Session) *internalpb.Target {
	return &internalpb.Target{ConnId: ss.GetConnId(), App: ss.GetApp(), User: ss.GetUser(), Device: ss.GetDevice()}
}

// roomPush is one Room.Push call.
type roomPush struct {
	msg     *internalpb.Message
	targets []*internalpb.Target
}

// deliver pushes each message (one per user) to its user's live sessions
// and returns how many connections accepted a copy. Only the lookup failing
// is an error: a room that does not answer loses nothing, since QoS 1
// messages are stored and QoS 0 ones were never promised.
func (s *Server) deliver(ctx context.Context, msgs []*internalpb.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	app := msgs[0].GetApp()
	users := make([]string, len(msgs))
	for i, m := range msgs {
		users[i] = m.GetUser()
	}
	sessions, err := s.lookup(ctx, app, users)
	if err != nil {
		return 0, err
	}
	byUser := make(map[string][]*internalpb.Session, len(sessions))
	for _, ss := range sessions {
		byUser[ss.GetUser()] = append(byUser[ss.GetUser()], ss)
	}
	perRoom := map[string][]roomPush{}
	for _, m := range msgs {
		byAddr := map[string][]*internalpb.Target{}
		for _, ss := range byUser[m.GetUser()] {
			if matches(ss, m.GetUser(), m.GetDevice()) {
				byAddr[ss.GetRoomAddr()] = append(byAddr[ss.GetRoomAddr()], target(ss))
			}
		}
		for addr, ts := range byAddr {
			perRoom[addr] = append(perRoom[addr], roomPush{msg: m, targets: ts})
		}
	}
	// One goroutine per room holding targets: bounded by the number of
	// rooms, and a slow room does not hold up the others.
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for addr, pushes := range perRoom {
		wg.Add(1)
		go func() {
			defer wg.Done()
			delivered.Add(int64(s.pushRoom(ctx, addr, pushes)))
		}()
	}
	wg.Wait()
	n := int(delivered.Load())
	s.m.delivered.Add(float64(n))
	return n, nil
}

func (s *Server) pushRoom(ctx context.Context, addr string, pushes []roomPush) int {
	rc, err := s.rooms.client(addr)
	if err != nil {
		s.m.deliveryFails.WithLabelValues("room").Inc()
		s.log.Debug("center: skipping room", "room", addr, "err", err)
		return 0
	}
	n := 0
	for _, p := range pushes {
		if ctx.Err() != nil {
			return n
		}
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		resp, err := rc.Push(cctx, &internalpb.RoomPushRequest{Message: p.msg, Targets: p.targets})
		cancel()
		if err != nil {
			s.m.deliveryFails.WithLabelValues("room").Inc()
			s.log.Warn("center: room push failed", "room", addr, "id", p.msg.GetId(), "err", err)
			continue
		}
		for _, r := range resp.GetResults() {
			if r.GetCode() == internalpb.ResultCode_RESULT_CODE_OK {
				n++
			}
		}
	}
	return n
}

// deliverAsync hands stored messages to the bounded delivery pool. When
// the pool is full the request delivers them itself before answering:
// the caller waits a little longer (back-pressure on the business), but an
// online user is not left without a message until their next reconnect.
// Either way the messages are already durable.
func (s *Server) deliverAsync(ctx context.Context, msgs []*internalpb.Message) {
	run := func(ctx context.Context) {
		if _, err := s.deliver(ctx, msgs); err != nil {
			s.log.Warn("center: delivery failed; messages stay stored", "count", len(msgs), "err", err)
		}
	}
	err := s.pool.Submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), asyncDeliveryTimeout)
		defer cancel()
		run(ctx)
	})
	if err != nil {
		s.m.inline.Add(float64(len(msgs)))
		run(ctx)
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
