package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Bounds of the redelivery sweep: a message no room reported delivered is
// handed out again at most maxRedeliveries times, each claim pushing the
// next one back by a longer step, so a user who is simply offline costs a
// few cheap lookups and then nothing until they connect.
const (
	claimMaxLimit   = 500
	maxRedeliveries = 3
)

// redeliverBackoff is the wait after the n-th claim (0-based).
var redeliverBackoff = [maxRedeliveries]time.Duration{10 * time.Second, 60 * time.Second, 300 * time.Second}

// backoffCase is the SQL form of redeliverBackoff, keyed on redeliveries.
func backoffCase() string {
	var b strings.Builder
	b.WriteString("CASE redeliveries")
	for i, d := range redeliverBackoff[:maxRedeliveries-1] {
		fmt.Fprintf(&b, " WHEN %d THEN %d", i, d.Milliseconds())
	}
	fmt.Fprintf(&b, " ELSE %d END", redeliverBackoff[maxRedeliveries-1].Milliseconds())
	return b.String()
}

// claimUndelivered selects up to limit messages stored at least minAge ago
// that no room reported delivered, and claims them in the same transaction.
// SKIP LOCKED lets concurrent claimers (several centers, several savers)
// take disjoint rows instead of waiting for each other, and READ COMMITTED
// keeps the locking read from taking gap locks that would stall Store's
// inserts, which land in the very range scanned.
func (d *msgDB) claimUndelivered(ctx context.Context, limit int, minAge time.Duration, now time.Time) ([]*internalpb.Message, error) {
	var out []*internalpb.Message
	nowMs := now.UnixMilli()
	err := d.retry.inTx(ctx, d.db, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, "SELECT id, app, `user`, device, payload, qos, created_ms, expires_ms FROM messages "+
			"WHERE delivery_count = 0 AND redeliver_at_ms <= ? AND redeliveries < ? AND created_ms <= ? AND (expires_ms = 0 OR expires_ms > ?) "+
			"ORDER BY redeliver_at_ms LIMIT ? FOR UPDATE SKIP LOCKED",
			nowMs, maxRedeliveries, now.Add(-minAge).UnixMilli(), nowMs, limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			m := &internalpb.Message{State: internalpb.MessageState_MESSAGE_STATE_STORED}
			if err := rows.Scan(&m.Id, &m.App, &m.User, &m.Device, &m.Payload, &m.Qos, &m.CreatedMs, &m.ExpiresMs); err != nil {
				rows.Close()
				return err
			}
			out = append(out, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		ids := make([]uint64, len(out))
		for i, m := range out {
			ids[i] = m.GetId()
		}
		// MySQL assigns left to right: redeliver_at_ms must read the old
		// redeliveries.
		_, err = tx.ExecContext(ctx, "UPDATE messages SET redeliver_at_ms = ? + "+backoffCase()+", redeliveries = redeliveries + 1 WHERE id IN ("+
			placeholders(len(ids))+")", append([]any{nowMs}, idArgs(sortedIDs(ids))...)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("saver: claim undelivered: %w", err)
	}
	return out, nil
}

func (s *server) ClaimUndelivered(ctx context.Context, req *internalpb.ClaimUndeliveredRequest) (*internalpb.ClaimUndeliveredReply, error) {
	if req.GetMinAgeMs() < 0 {
		return nil, invalid("min_age_ms %d is negative", req.GetMinAgeMs())
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > claimMaxLimit {
		limit = claimMaxLimit
	}
	msgs, err := s.db.claimUndelivered(ctx, limit, time.Duration(req.GetMinAgeMs())*time.Millisecond, time.Now())
	if err != nil {
		return nil, s.fail(ctx, "claim", err)
	}
	s.metrics.claimed.Add(float64(len(msgs)))
	return &internalpb.ClaimUndeliveredReply{Messages: msgs}, nil
}
