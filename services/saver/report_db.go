package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// The statements of a Report (acks and deliveries of a room's flush
// window) check each ref's app and user in SQL rather than in Go after a
// read, which saves a round trip each:
//
//   - acks: START TRANSACTION, DELETE … RETURNING, INSERT outcomes, COMMIT
//     (plus the receipts INSERT when a row asked for one) instead of a
//     SELECT … FOR UPDATE ahead of the DELETE;
//   - deliveries: one autocommitted UPDATE instead of a SELECT, then an
//     UPDATE in its own transaction.
//
// Both filter with "id IN (…) AND (id + 0, app, `user`) IN ((…),…)": the
// id list reads and locks the rows by primary key, in id order, and the
// tuple list drops a ref naming another app's or user's message. The
// "+ 0" keeps the tuple from being a range on idx_messages_user (app,
// user, id), which MariaDB otherwise picks for a few users' rows: that
// plan takes next-key locks in the users' index, blocking their Stores
// until the commit (single-table DELETE takes no index hint; the plan is
// checked by TestReportStatementsUsePrimaryKey). app and user are
// VARBINARY, so the comparison is exact bytes, as it was in Go.

// ownedRows returns the WHERE condition, with its arguments, that matches
// exactly the rows of refs (one ref per id) whose stored app and user are
// the ref's. Ids go in sorted, as everywhere rows are locked.
func ownedRows(refs []msgRef) (cond string, args []any) {
	refs = append([]msgRef(nil), refs...)
	sort.Slice(refs, func(i, j int) bool { return refs[i].id < refs[j].id })
	args = make([]any, 0, 4*len(refs))
	var b strings.Builder
	b.WriteString("id IN (")
	b.WriteString(placeholders(len(refs)))
	b.WriteString(") AND (id + 0, app, `user`) IN (")
	for i, r := range refs {
		args = append(args, r.id)
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?)")
	}
	b.WriteByte(')')
	for _, r := range refs {
		args = append(args, r.id, r.app, r.user)
	}
	return b.String(), args
}

// firstPerID keeps the first ref of each id, in order.
func firstPerID(refs []msgRef) []msgRef {
	seen := make(map[uint64]bool, len(refs))
	out := make([]msgRef, 0, len(refs))
	for _, r := range refs {
		if !seen[r.id] {
			seen[r.id] = true
			out = append(out, r)
		}
	}
	return out
}

// markOwnedDelivered counts one more delivery of each ref's message that
// still exists and belongs to the ref's app and user (the first ref of an
// id decides: one app can never touch another app's message). It returns
// how many rows it counted. One autocommitted UPDATE is atomic on its own.
func (d *msgDB) markOwnedDelivered(ctx context.Context, refs []msgRef, now time.Time) (int64, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	refs = firstPerID(refs)
	cond, args := ownedRows(refs)
	return d.countDelivery(ctx, cond, args, len(refs), now)
}

// finishOwned moves the messages of refs (one ref per id) whose stored
// app and user are the ref's from messages to message_outcomes with
// outcome, in one transaction, and returns them; a ref naming another
// app's or user's message leaves that row stored. adjust (may be nil)
// edits each row before its outcome is recorded.
//
// The DELETE locks the rows it reads, so concurrent finishers (an ack
// racing the expiry sweeper or another saver) serialize on them and each
// row is finished exactly once: the loser's DELETE no longer finds it and
// returns nothing for it.
func (d *msgDB) finishOwned(ctx context.Context, outcome internalpb.MessageState, refs []msgRef, now time.Time, adjust func(*finishedRow)) ([]msgRef, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	cond, args := ownedRows(refs)
	var done []msgRef
	err := d.retry.inTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		taken, err := deleteReturning(ctx, tx, cond, args)
		if err != nil {
			return err
		}
		done = done[:0]
		for i := range taken {
			if adjust != nil {
				adjust(&taken[i])
			}
			done = append(done, taken[i].msgRef)
		}
		return recordOutcomes(ctx, tx, taken, outcome, now)
	})
	if err != nil {
		return nil, fmt.Errorf("saver: finish %d messages as %s: %w", len(refs), outcome, err)
	}
	return done, nil
}

// deleteReturning deletes the messages rows matching cond inside tx and
// returns them.
func deleteReturning(ctx context.Context, tx *sql.Tx, cond string, args []any) ([]finishedRow, error) {
	rows, err := tx.QueryContext(ctx, "DELETE FROM messages WHERE "+cond+
		" RETURNING id, app, `user`, delivery_count, created_ms, expires_ms, multicast_id, receipt", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []finishedRow
	for rows.Next() {
		var r finishedRow
		if err := rows.Scan(&r.id, &r.app, &r.user, &r.deliveryCount, &r.createdMs, &r.expiresMs, &r.multicastID, &r.receipt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
