package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// A multicast is one unit: its messages (one per user, each with its own
// id so acks and status stay per user) are committed in one MySQL
// transaction, in multi-row statements bounded like the group commit's, so
// a failure anywhere leaves none of them; only then are they added to the
// Redis inboxes, in pipelines of multiInboxChunk. It does not go through
// the group-commit queue: it is a batch already, and one of 100,000 rows
// would hold every small Store queued behind it.
const (
	// maxMultiUsers bounds one StoreMulti (center's limit too).
	maxMultiUsers = 100_000
	// maxMultiBytes bounds users x payload of one multicast. Each
	// recipient's row carries its own copy of the payload (as every
	// unicast row does), which keeps acks, expiry, redelivery and the
	// inbox per user and unchanged; the cap keeps one call's MySQL and
	// Redis footprint bounded (64 MiB: 100,000 users at 671 bytes each).
	// Content that large for that many users is what broadcast (stored
	// once) is for.
	maxMultiBytes = 64 << 20
	// multiSlots bounds StoreMulti calls committing at once per saver.
	multiSlots = 2
	// multiInsertRows is the rows per INSERT of a multicast: larger than
	// the group commit's, as one transaction of 100,000 rows is
	// round-trip bound (200-row statements: 2.9 s here for 100,000).
	multiInsertRows = 1000
	// multiInboxChunk is the messages per Redis pipeline after the commit,
	// multiInboxWriters pipelines run at once.
	multiInboxChunk   = 1000
	multiInboxWriters = 4
	// multiPostCommitRedis bounds the inbox writes after a multicast's
	// commit, as postCommitRedis does for Store, scaled for 100,000 rows.
	multiPostCommitRedis = 2 * time.Second
	// pacedSweepMargin is center's live delivery deadline (10 s, the
	// sweep's minimum age): how long after its turn a paced message may
	// still be on its way.
	pacedSweepMargin = 10 * time.Second
)

func checkMulti(req *internalpb.StoreMultiRequest) error {
	t := req.GetMessage()
	users, ids := req.GetUsers(), req.GetIds()
	switch {
	case t == nil:
		return invalid("multicast without a message")
	case len(users) == 0 || len(users) > maxMultiUsers:
		return invalid("multicast of %d users: want 1..%d", len(users), maxMultiUsers)
	case len(ids) != len(users):
		return invalid("multicast of %d users carries %d ids", len(users), len(ids))
	case len(t.GetPayload())*len(users) > maxMultiBytes:
		return invalid("multicast of %d users x %d payload bytes exceeds %d bytes", len(users), len(t.GetPayload()), maxMultiBytes)
	case t.GetUser() != "" || t.GetDevice() != "":
		return invalid("multicast template names a user or device")
	}
	// The template is checked as a message of the first user; users and
	// ids one by one below.
	probe := proto.Clone(t).(*internalpb.Message)
	probe.User, probe.Id = users[0], ids[0]
	if err := checkMessages([]*internalpb.Message{probe}); err != nil {
		return err
	}
	seenUser := make(map[string]bool, len(users))
	seenID := make(map[uint64]bool, len(ids))
	for i, u := range users {
		if err := checkUser(t.GetApp(), u); err != nil {
			return invalid("user %d: %v", i, err)
		}
		if seenUser[u] || seenID[ids[i]] || ids[i] == 0 {
			return invalid("user %d: duplicate user or id, or id 0", i)
		}
		seenUser[u], seenID[ids[i]] = true, true
	}
	return nil
}

// StoreMulti stores a multicast, all or nothing.
func (s *server) StoreMulti(ctx context.Context, req *internalpb.StoreMultiRequest) (*internalpb.StoreMultiReply, error) {
	if err := checkMulti(req); err != nil {
		return nil, err
	}
	select {
	case s.multi <- struct{}{}:
		defer func() { <-s.multi }()
	case <-ctx.Done():
		return nil, status.Error(codes.ResourceExhausted, "saver: too many multicasts committing; retry later")
	}
	t := req.GetMessage()
	now := time.Now()
	if t.GetCreatedMs() == 0 {
		t.CreatedMs = now.UnixMilli()
	}
	mcast := req.GetIds()[0]
	msgs := make([]*internalpb.Message, len(req.GetUsers()))
	pace := float64(req.GetPacedPerSecond())
	for i, u := range req.GetUsers() {
		msgs[i] = &internalpb.Message{
			Id: req.GetIds()[i], App: t.GetApp(), User: u, Payload: t.GetPayload(), Qos: t.GetQos(),
			CreatedMs: t.GetCreatedMs(), ExpiresMs: t.GetExpiresMs(), CollapseKey: t.GetCollapseKey(),
			Priority: t.GetPriority(), MulticastId: mcast,
			// Each recipient's row asks for its own receipt (events.go).
			Receipt: t.GetReceipt(),
		}
		if pace > 0 {
			// The sweep waits for this message's turn in the pacing plus
			// the time live delivery gets, so a paced message still
			// waiting for its turn is never swept ahead of the pace.
			msgs[i].RedeliverAtMs = now.Add(pacedSweepMargin).UnixMilli() + int64(float64(i)/pace*1000)
		}
	}
	start := time.Now()
	kept, collapsed, first, err := s.db.insertMulti(ctx, t.GetApp(), t.GetIdempotencyKey(), mcast, msgs, now)
	s.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, s.fail(ctx, "store_multi", fmt.Errorf("saver: store multicast %d of %d users: %w", mcast, len(msgs), err))
	}
	if first != 0 {
		users, ids, err := s.db.multicastIDs(ctx, t.GetApp(), first)
		if err != nil {
			return nil, s.fail(ctx, "store_multi", err)
		}
		return &internalpb.StoreMultiReply{Replayed: true, MulticastId: first, Users: users, Ids: ids}, nil
	}
	s.metrics.stored.Add(float64(len(kept)))
	s.metrics.outcomes.WithLabelValues("collapsed").Add(float64(len(msgs) - len(kept) + len(collapsed)))
	// Committed: Redis is only the fast path from here (see committer).
	rctx, cancel := context.WithTimeout(context.Background(), multiPostCommitRedis)
	defer cancel()
	if len(collapsed) > 0 {
		if err := s.inbox.remove(rctx, collapsed); err != nil {
			s.redisFailed("store_multi", err)
		}
	}
	s.fillInboxes(rctx, kept)
	return &internalpb.StoreMultiReply{MulticastId: mcast, Users: req.GetUsers(), Ids: req.GetIds()}, nil
}

// insertMulti commits a multicast in one transaction. With an idempotency
// key already used it stores nothing and returns the multicast id the key
// names as first.
func (d *msgDB) insertMulti(ctx context.Context, app, ikey string, mcast uint64, msgs []*internalpb.Message, now time.Time) (kept []*internalpb.Message, collapsed []msgRef, first uint64, err error) {
	err = d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		first = 0
		if ikey != "" {
			replaced, err := claimKeys(ctx, tx, []*internalpb.Message{{Id: mcast, App: app, IdempotencyKey: ikey}}, now)
			if err != nil {
				return err
			}
			if to, ok := replaced[mcast]; ok {
				first = to
				return nil
			}
		}
		var err error
		if kept, collapsed, err = collapse(ctx, tx, msgs, now); err != nil {
			return err
		}
		if err := insertAll(ctx, tx, kept, now, multiInsertRows); err != nil {
			return err
		}
		if ikey == "" {
			return nil
		}
		return insertMembers(ctx, tx, mcast, msgs)
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return kept, collapsed, first, nil
}

// insertMembers records every (id, user) of a multicast stored with an
// idempotency key, collapsed ones included, for multicastIDs.
func insertMembers(ctx context.Context, tx *sql.Tx, mcast uint64, msgs []*internalpb.Message) error {
	for start := 0; start < len(msgs); start += multiInsertRows {
		chunk := msgs[start:min(start+multiInsertRows, len(msgs))]
		args := make([]any, 0, 3*len(chunk))
		for _, m := range chunk {
			args = append(args, mcast, m.GetId(), m.GetUser())
		}
		q := "INSERT IGNORE INTO multicast_members (multicast_id, id, `user`) VALUES " + rowPlaceholders(len(chunk), 3)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("multicast %d: record %d members: %w", mcast, len(chunk), err)
		}
	}
	return nil
}

// multicastIDs lists the (user, id) pairs of a multicast stored with an
// idempotency key, waiting or finished; they live as long as the key.
func (d *msgDB) multicastIDs(ctx context.Context, app string, mcast uint64) ([]string, []uint64, error) {
	users, ids, err := d.queryMembers(ctx, mcast, "SELECT `user`, id FROM multicast_members WHERE multicast_id = ? ORDER BY id", mcast)
	if err != nil || len(ids) > 0 {
		return users, ids, err
	}
	// No members: a saver of the previous release stored it during the
	// rollout, before migration 0011 backfilled them and dropped these
	// indexes (after it, every multicast with a key has members).
	return d.queryMembers(ctx, mcast, "SELECT `user`, id FROM messages WHERE multicast_id = ? AND app = ? "+
		"UNION ALL SELECT `user`, id FROM message_outcomes WHERE multicast_id = ? AND app = ?", mcast, app, mcast, app)
}

func (d *msgDB) queryMembers(ctx context.Context, mcast uint64, q string, args ...any) ([]string, []uint64, error) {
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("saver: ids of multicast %d: %w", mcast, err)
	}
	defer rows.Close()
	var users []string
	var ids []uint64
	for rows.Next() {
		var u string
		var id uint64
		if err := rows.Scan(&u, &id); err != nil {
			return nil, nil, fmt.Errorf("saver: ids of multicast %d: %w", mcast, err)
		}
		users, ids = append(users, u), append(ids, id)
	}
	return users, ids, rows.Err()
}

// fillInboxes adds a committed multicast to the inboxes, multiInboxWriters
// pipelines at a time; a failure leaves the rest to MySQL (see committer).
func (s *server) fillInboxes(ctx context.Context, msgs []*internalpb.Message) {
	// The first failure stops the rest: Redis is down or too slow, and one
	// log line says so.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []*internalpb.Message)
	var wg sync.WaitGroup
	for range multiInboxWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				if ctx.Err() != nil {
					continue
				}
				if err := s.inbox.add(ctx, c); err != nil && ctx.Err() == nil {
					cancel()
					s.redisFailed("store_multi", err)
				}
			}
		}()
	}
	for start := 0; start < len(msgs); start += multiInboxChunk {
		chunks <- msgs[start:min(start+multiInboxChunk, len(msgs))]
	}
	close(chunks)
	wg.Wait()
}
