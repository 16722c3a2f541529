package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Bounds of one PendingBatch.
const (
	// maxPendingBatch is the most requests in one call (a room sends at
	// most its register batch, 500).
	maxPendingBatch = 1000
	// pendingBatchParallel bounds the users of one call served by the
	// single-user path (Pending) at once: those with something in their
	// inbox, or whose inbox could not be probed.
	pendingBatchParallel = 8
	// pendingBatchReplyBytes is the reply size after which users still
	// waiting for the single-user path are answered deferred (ask again)
	// instead: a reply must stay under gRPC's 16 MiB receive limit, and
	// one user's page adds at most a send window of payloads to it.
	pendingBatchReplyBytes = 4 << 20
)

// Answers counted by pushgw_saver_pending_batch_users_total.
const (
	batchRedisEmpty = "redis_empty" // marked inbox, nothing pending: no MySQL
	batchMySQLEmpty = "mysql_empty" // one batched MySQL read found nothing
	batchSingle     = "single"      // served by the single-user path
	batchDeferred   = "deferred"    // reply full: asked to come again
	batchFailed     = "failed"
)

// PendingBatch answers many Pending requests at once: see saver.proto.
func (s *server) PendingBatch(ctx context.Context, req *internalpb.PendingBatchRequest) (*internalpb.PendingBatchReply, error) {
	reqs := req.GetRequests()
	if len(reqs) > maxPendingBatch {
		return nil, invalid("%d requests, at most %d per batch", len(reqs), maxPendingBatch)
	}
	for i, r := range reqs {
		if err := checkUser(r.GetApp(), r.GetUser()); err != nil {
			return nil, invalid("request %d: %v", i, err)
		}
		if len(r.GetDevice()) > maxDeviceLen {
			return nil, invalid("request %d: device longer than %d bytes", i, maxDeviceLen)
		}
	}
	rep := &internalpb.PendingBatchReply{Replies: make([]*internalpb.PendingBatchEntry, len(reqs))}
	if len(reqs) == 0 {
		return rep, nil
	}
	now := time.Now()
	ps := make([]probe, len(reqs))
	for i, r := range reqs {
		ps[i] = probe{u: userRef{r.GetApp(), r.GetUser()}, after: r.GetAfterId()}
	}
	// single lists the requests left to the single-user path.
	var single []int
	if err := s.inbox.probeAll(ctx, ps, now); err != nil {
		// Redis is down or slow: Pending copes per user (MySQL).
		s.redisFailed("pending_batch", err)
		for i := range reqs {
			single = append(single, i)
		}
	} else {
		single = s.answerProbed(ctx, reqs, ps, rep, now)
	}
	s.serveSingle(ctx, reqs, single, rep)
	return rep, nil
}

// answerProbed answers the users whose inbox is marked and empty, and
// those MySQL finds empty; it returns the indexes of the others.
func (s *server) answerProbed(ctx context.Context, reqs []*internalpb.PendingRequest, ps []probe, rep *internalpb.PendingBatchReply, now time.Time) (single []int) {
	byApp := map[string][]int{}
	for i, p := range ps {
		switch p.state {
		case probeEmpty:
			rep.Replies[i] = &internalpb.PendingBatchEntry{}
			s.metrics.pendingBatch.WithLabelValues(batchRedisEmpty).Inc()
		case probeHasEntries:
			single = append(single, i)
		default:
			byApp[p.u.app] = append(byApp[p.u.app], i)
		}
	}
	var empty []probe
	for app, idx := range byApp {
		users := make([]string, len(idx))
		for j, i := range idx {
			users[j] = ps[i].u.user
		}
		has, err := s.db.usersWithMessages(ctx, app, users, now)
		if err != nil {
			s.log.Warn("batched emptiness check failed; serving one by one", "app", app, "users", len(users), "err", err)
			single = append(single, idx...)
			continue
		}
		s.metrics.pendingBatchQueries.Inc()
		for _, i := range idx {
			if has[ps[i].u.user] {
				single = append(single, i)
				continue
			}
			rep.Replies[i] = &internalpb.PendingBatchEntry{}
			s.metrics.pendingBatch.WithLabelValues(batchMySQLEmpty).Inc()
			empty = append(empty, ps[i])
		}
	}
	marked, err := s.inbox.markEmpty(ctx, empty, now)
	if err != nil {
		// The answers stand (MySQL gave them); the next login reads
		// MySQL again.
		s.redisFailed("mark_empty", err)
	}
	s.metrics.inboxMarks.WithLabelValues(markResultDone).Add(float64(marked))
	if err == nil {
		s.metrics.inboxMarks.WithLabelValues(markResultRaced).Add(float64(len(empty) - marked))
	}
	return single
}

// serveSingle runs Pending for the requests at idx, a few at a time,
// until the reply holds pendingBatchReplyBytes; the rest are deferred.
func (s *server) serveSingle(ctx context.Context, reqs []*internalpb.PendingRequest, idx []int, rep *internalpb.PendingBatchReply) {
	if len(idx) == 0 {
		return
	}
	var (
		mu    sync.Mutex
		bytes int
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, pendingBatchParallel)
	for _, i := range idx {
		sem <- struct{}{}
		mu.Lock()
		full := bytes >= pendingBatchReplyBytes
		mu.Unlock()
		if full || ctx.Err() != nil {
			<-sem
			rep.Replies[i] = &internalpb.PendingBatchEntry{Failed: true, Deferred: true, Error: "batch reply full; ask again"}
			s.metrics.pendingBatch.WithLabelValues(batchDeferred).Inc()
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := s.Pending(ctx, reqs[i])
			if err != nil {
				rep.Replies[i] = &internalpb.PendingBatchEntry{Failed: true, Error: status.Convert(err).Message()}
				s.metrics.pendingBatch.WithLabelValues(batchFailed).Inc()
				return
			}
			rep.Replies[i] = &internalpb.PendingBatchEntry{Messages: r.GetMessages()}
			s.metrics.pendingBatch.WithLabelValues(batchSingle).Inc()
			mu.Lock()
			bytes += proto.Size(r)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
}

// usersWithMessages returns which of app's users have an unexpired message
// in MySQL, in one query (idx_messages_user serves it). user is
// VARBINARY: the match and DISTINCT are exact bytes, so "Bob" never
// answers for "bob".
func (d *msgDB) usersWithMessages(ctx context.Context, app string, users []string, now time.Time) (map[string]bool, error) {
	args := make([]any, 0, len(users)+2)
	args = append(args, app)
	for _, u := range users {
		args = append(args, u)
	}
	args = append(args, now.UnixMilli())
	q := "SELECT DISTINCT `user` FROM messages WHERE app = ? AND `user` IN (" + placeholders(len(users)) +
		") AND (expires_ms = 0 OR expires_ms > ?)"
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("saver: users with messages in %s (%d asked): %w", app, len(users), err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("saver: users with messages in %s: %w", app, err)
		}
		out[u] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saver: users with messages in %s: %w", app, err)
	}
	return out, nil
}
