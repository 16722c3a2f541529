package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Tag broadcast fan-out: the room keeps no tags per connection; it walks
// its connections of the app as for an app-wide broadcast and asks saver
// which of their users are members of the tag, tagCheckUsers distinct
// users per Saver.TagMembership call, then gives the frame to the members'
// connections only. The work is bounded by the room's connections of the
// app (at 18,000 connections: 18 calls), whatever the tag's size, and
// memory by one batch. docs/BROADCAST.md weighs this against center paging
// the tag's members.
const (
	// tagCheckUsers is the most distinct users per membership call:
	// saver's limit per call (-tag-check-batch may lower it).
	tagCheckUsers = limits.MaxTagUsersPerCall
	// tagSessionsPerUser bounds the connections held in one batch, per
	// user of the batch (a user has several devices).
	tagSessionsPerUser = 4
	// tagFanOutTimeout bounds one tag fan-out's membership calls in all;
	// past it the fan-out fails and center's sweep sends it again (the
	// connections already given it are skipped then).
	tagFanOutTimeout = 30 * time.Second
)

// tagBatch is the connections of one membership call.
type tagBatch struct {
	sessions []*session
	users    map[string]struct{}
}

// fanOutTag gives e (a tag broadcast) once to each connection of its app
// whose user is a member of its tag. An error means some connections were
// not checked; the caller answers it so the room stays pending.
func (bc *broadcaster) fanOutTag(e *bcEntry) (reached, deferred uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), tagFanOutTimeout)
	defer cancel()
	app := e.b.GetApp()
	perCall := bc.r.cfg.tagCheckBatch
	if perCall <= 0 {
		perCall = defaultTagCheckBatch
	}
	batch := tagBatch{users: make(map[string]struct{}, perCall)}
	flush := func() error {
		if len(batch.sessions) == 0 {
			return nil
		}
		r, d, err := bc.giveMembers(ctx, e, &batch)
		reached += r
		deferred += d
		batch.sessions = batch.sessions[:0]
		clear(batch.users)
		return err
	}
	var buf []*session
	h := bc.r.hub
	for i := range h.byID {
		is := &h.byID[i]
		is.mu.RLock()
		buf = buf[:0]
		for _, s := range is.m {
			if s.isAuthed() && s.key.app == app {
				buf = append(buf, s)
			}
		}
		is.mu.RUnlock()
		for _, s := range buf {
			if s.has(flagClosed) {
				continue
			}
			batch.sessions = append(batch.sessions, s)
			batch.users[s.key.user] = struct{}{}
			if len(batch.users) >= perCall || len(batch.sessions) >= tagSessionsPerUser*perCall {
				if err := flush(); err != nil {
					return reached, deferred, err
				}
			}
		}
	}
	return reached, deferred, flush()
}

// giveMembers asks saver which users of batch are members of e's tag and
// gives e to their connections.
func (bc *broadcaster) giveMembers(ctx context.Context, e *bcEntry, batch *tagBatch) (reached, deferred uint64, err error) {
	users := make([]string, 0, len(batch.users))
	for u := range batch.users {
		users = append(users, u)
	}
	cctx, cancel := context.WithTimeout(ctx, grpcconn.DefaultCallTimeout)
	rep, err := bc.r.saver.TagMembership(cctx, &internalpb.TagMembershipRequest{App: e.b.GetApp(), Tag: e.b.GetTag(), Users: users})
	cancel()
	if err != nil {
		bc.r.m.peerErrors.WithLabelValues("Saver.TagMembership").Inc()
		return 0, 0, fmt.Errorf("room: broadcast %d: members of tag %q among %d users: %w", e.b.GetId(), e.b.GetTag(), len(users), err)
	}
	members := make(map[string]struct{}, len(rep.GetMembers()))
	for _, u := range rep.GetMembers() {
		members[u] = struct{}{}
	}
	seq := e.b.GetSeq()
	for _, s := range batch.sessions {
		if _, ok := members[s.key.user]; !ok || s.has(flagClosed) {
			continue
		}
		send, def := bc.seen.claim(s, seq, true)
		if def {
			deferred++
		}
		if send && s.send(protocol.OpPush, e.frame) == nil {
			reached++
		}
	}
	bc.r.m.pushes.Add(float64(reached))
	return reached, deferred, nil
}
