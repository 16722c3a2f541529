package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Half-records (migration 0008). Every state change is a single UPDATE
// whose WHERE clause holds the expected state, so of any number of racing
// commits, rollbacks, check-back answers and expiries exactly one changes
// the row; a commit inserts the messages in the same transaction, so the
// fan-out exists if and only if the state says committed.
const (
	txStatePrepared   = uint8(internalpb.TxState_TX_STATE_PREPARED)
	txStateCommitted  = uint8(internalpb.TxState_TX_STATE_COMMITTED)
	txStateRolledBack = uint8(internalpb.TxState_TX_STATE_ROLLED_BACK)
	txStateExpired    = uint8(internalpb.TxState_TX_STATE_EXPIRED)
	txByExpiry        = uint8(internalpb.TxDecider_TX_DECIDER_EXPIRY)

	errDupKey = 1062

	txColumns = "id, app, target_kind, recipients, device, payload, qos, ttl_ms, ikey, state, decided_by, created_ms, decided_ms, checks, next_check_ms"
)

// txKindName is a target kind as stored in tx_messages.target_kind:
// words, so the tag and broadcast kinds need no schema change.
func txKindName(k internalpb.TxTargetKind) string {
	switch k {
	case internalpb.TxTargetKind_TX_TARGET_KIND_USER:
		return "user"
	case internalpb.TxTargetKind_TX_TARGET_KIND_USERS:
		return "users"
	case internalpb.TxTargetKind_TX_TARGET_KIND_TAG:
		return "tag"
	case internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST:
		return "broadcast"
	}
	return ""
}

func txKindOf(name string) internalpb.TxTargetKind {
	for k := range internalpb.TxTargetKind_name {
		if kind := internalpb.TxTargetKind(k); name != "" && txKindName(kind) == name {
			return kind
		}
	}
	return internalpb.TxTargetKind_TX_TARGET_KIND_UNSPECIFIED
}

// txRecipientJSON is one element of tx_messages.recipients.
// A broadcast record has one element: user "", message_id the broadcast
// id fixed at prepare, and online_only (kept here so the broadcast kind
// needed no migration).
type txRecipientJSON struct {
	User       string `json:"user"`
	MessageID  uint64 `json:"message_id,string"`
	OnlineOnly bool   `json:"online_only,omitempty"`
	// Tag is the target of a TAG record (a broadcast to its members).
	Tag string `json:"tag,omitempty"`
	// Receipt (USER and USERS records, on the first recipient): the
	// committed messages ask for delivery receipts. Kept here, as
	// online_only is, so the record needs no new column.
	Receipt bool `json:"receipt,omitempty"`
}

type txDB struct {
	db *sql.DB
}

// readCommitted is the isolation of the tx statements: InnoDB then locks
// only the rows it changes, no gaps, so claims never block prepares.
func readCommitted() *sql.TxOptions { return &sql.TxOptions{Isolation: sql.LevelReadCommitted} }

// prepare inserts a half-record. If the app already used the record's
// idempotency key it returns that record and replayed = true.
func (d *txDB) prepare(ctx context.Context, r *internalpb.TxRecord) (*internalpb.TxRecord, bool, error) {
	recips := make([]txRecipientJSON, len(r.GetRecipients()))
	for i, p := range r.GetRecipients() {
		recips[i] = txRecipientJSON{User: p.GetUser(), MessageID: p.GetMessageId()}
	}
	if isTxBroadcast(r.GetTargetKind()) && len(recips) == 1 {
		recips[0].OnlineOnly, recips[0].Tag = r.GetOnlineOnly(), r.GetTag()
	}
	if !isTxBroadcast(r.GetTargetKind()) && len(recips) > 0 {
		recips[0].Receipt = r.GetReceipt()
	}
	rj, err := json.Marshal(recips)
	if err != nil {
		return nil, false, fmt.Errorf("saver: prepare tx %d: recipients: %w", r.GetId(), err)
	}
	var ikey any
	if r.GetIdempotencyKey() != "" {
		ikey = r.GetIdempotencyKey()
	}
	payload := r.GetPayload()
	if payload == nil {
		payload = []byte{}
	}
	_, err = d.db.ExecContext(ctx, "INSERT INTO tx_messages (id, app, target_kind, recipients, device, payload, qos, ttl_ms, ikey, state, created_ms, next_check_ms) "+
		"VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
		r.GetId(), r.GetApp(), txKindName(r.GetTargetKind()), rj, r.GetDevice(), payload, r.GetQos(), r.GetTtlMs(), ikey,
		txStatePrepared, r.GetCreatedMs(), r.GetNextCheckMs())
	var me *mysql.MySQLError
	switch {
	case err == nil:
		// The row is what was inserted: no read back (one round trip).
		out := proto.Clone(r).(*internalpb.TxRecord)
		out.State, out.DecidedBy, out.DecidedMs, out.Checks = internalpb.TxState_TX_STATE_PREPARED, 0, 0, 0
		return out, false, nil
	case errors.As(err, &me) && me.Number == errDupKey && ikey != nil:
		row := d.db.QueryRowContext(ctx, "SELECT "+txColumns+" FROM tx_messages WHERE app = ? AND ikey = ?", r.GetApp(), ikey)
		prev, err := scanTx(row)
		if errors.Is(err, sql.ErrNoRows) {
			// The key's owner was pruned between our insert and this read:
			// the caller retries and stores a fresh record.
			return nil, false, fmt.Errorf("saver: prepare tx %d: idempotency key owner vanished, retry", r.GetId())
		}
		if err != nil {
			return nil, false, fmt.Errorf("saver: prepare tx %d: read key owner: %w", r.GetId(), err)
		}
		return prev, true, nil
	default:
		return nil, false, fmt.Errorf("saver: prepare tx %d: %w", r.GetId(), err)
	}
}

type rowScanner interface{ Scan(dest ...any) error }

func scanTx(row rowScanner) (*internalpb.TxRecord, error) {
	r := &internalpb.TxRecord{}
	var kind string
	var recips []byte
	var ikey sql.NullString
	var state, by uint8
	if err := row.Scan(&r.Id, &r.App, &kind, &recips, &r.Device, &r.Payload, &r.Qos, &r.TtlMs, &ikey, &state, &by,
		&r.CreatedMs, &r.DecidedMs, &r.Checks, &r.NextCheckMs); err != nil {
		return nil, err
	}
	r.TargetKind = txKindOf(kind)
	r.IdempotencyKey = ikey.String
	r.State = internalpb.TxState(state)
	r.DecidedBy = internalpb.TxDecider(by)
	var list []txRecipientJSON
	if err := json.Unmarshal(recips, &list); err != nil {
		return nil, fmt.Errorf("tx %d: recipients column: %w", r.Id, err)
	}
	r.Recipients = make([]*internalpb.TxRecipient, len(list))
	for i, p := range list {
		r.Recipients[i] = &internalpb.TxRecipient{User: p.User, MessageId: p.MessageID}
	}
	if isTxBroadcast(r.TargetKind) && len(list) == 1 {
		r.OnlineOnly, r.Tag = list[0].OnlineOnly, list[0].Tag
	}
	if !isTxBroadcast(r.TargetKind) && len(list) > 0 {
		r.Receipt = list[0].Receipt
	}
	return r, nil
}

// get reads one record of app.
func (d *txDB) get(ctx context.Context, app string, id uint64) (*internalpb.TxRecord, bool, error) {
	r, err := scanTx(d.db.QueryRowContext(ctx, "SELECT "+txColumns+" FROM tx_messages WHERE id = ? AND app = ?", id, app))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("saver: get tx %d: %w", id, err)
	}
	return r, true, nil
}

// decide moves a prepared record to COMMITTED or ROLLED_BACK. The UPDATE
// is the compare-and-set; only when it changed the row does a commit read
// the record (locked by that UPDATE) and insert its messages, or its
// broadcast (with seq and a progress row per room of rooms), in the same
// transaction. A token from ClaimTxChecks counts the deciding check.
// applied is false when the record was already decided (or is unknown):
// the record is returned as it is, with the broadcast a commit stored.
func (d *txDB) decide(ctx context.Context, app string, id uint64, to uint8, by uint8, token uint64, rooms []string, now time.Time) (rec *internalpb.TxRecord, applied bool, msgs []*internalpb.Message, bc *internalpb.Broadcast, err error) {
	err = inTxOpts(ctx, d.db, readCommitted(), func(tx *sql.Tx) error {
		applied, msgs, bc = false, nil, nil
		res, err := tx.ExecContext(ctx, "UPDATE tx_messages SET state = ?, decided_by = ?, decided_ms = ?, "+
			"checks = checks + IF(? <> 0 AND claim_token = ?, 1, 0), lease_until_ms = 0, claim_token = 0 "+
			"WHERE id = ? AND app = ? AND state = ?", to, by, now.UnixMilli(), token, token, id, app, txStatePrepared)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		rec, err = scanTx(tx.QueryRowContext(ctx, "SELECT "+txColumns+" FROM tx_messages WHERE id = ? AND app = ?", id, app))
		if errors.Is(err, sql.ErrNoRows) {
			rec = nil
			return nil
		}
		if err != nil {
			return err
		}
		isBroadcast := isTxBroadcast(rec.GetTargetKind())
		if n != 1 {
			if isBroadcast && rec.GetState() == internalpb.TxState_TX_STATE_COMMITTED {
				bc, err = readTxBroadcast(ctx, tx, rec)
			}
			return err
		}
		applied = true
		if to != txStateCommitted {
			return nil
		}
		if isBroadcast {
			bc, err = txBroadcast(rec, now)
			if err != nil {
				return err
			}
			bc.Seq, bc.CreatedMs, err = insertBroadcast(ctx, tx, bc, rooms, now)
			return err
		}
		msgs = txMessages(rec, now)
		for start := 0; start < len(msgs); start += insertMaxRows {
			if err := insertRows(ctx, tx, msgs[start:min(start+insertMaxRows, len(msgs))], now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, nil, nil, fmt.Errorf("saver: decide tx %d -> %d: %w", id, to, err)
	}
	return rec, applied, msgs, bc, nil
}

// txBroadcast builds the broadcast a committed BROADCAST record turns
// into; like txMessages, its life starts at the commit.
func txBroadcast(r *internalpb.TxRecord, now time.Time) (*internalpb.Broadcast, error) {
	if len(r.GetRecipients()) != 1 || r.GetRecipients()[0].GetMessageId() == 0 {
		return nil, fmt.Errorf("broadcast record %d has %d recipients, want one naming the broadcast id", r.GetId(), len(r.GetRecipients()))
	}
	var expires int64
	if r.GetTtlMs() > 0 {
		expires = now.UnixMilli() + r.GetTtlMs()
	}
	return &internalpb.Broadcast{
		Id: r.GetRecipients()[0].GetMessageId(), App: r.GetApp(), Payload: r.GetPayload(), Qos: r.GetQos(),
		OnlineOnly: r.GetOnlineOnly(), CreatedMs: now.UnixMilli(), ExpiresMs: expires, Tag: r.GetTag(),
	}, nil
}

// readTxBroadcast reads the broadcast an earlier commit of r stored; nil
// once it was pruned.
func readTxBroadcast(ctx context.Context, tx *sql.Tx, r *internalpb.TxRecord) (*internalpb.Broadcast, error) {
	if len(r.GetRecipients()) != 1 {
		return nil, nil
	}
	b, err := scanBroadcast(tx.QueryRowContext(ctx, "SELECT "+broadcastCols+" FROM broadcasts WHERE id = ? AND app = ?", r.GetRecipients()[0].GetMessageId(), r.GetApp()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// txMessages builds the messages a committed record turns into. Their
// life starts at the commit: a record prepared long ago still gets its
// whole TTL.
func txMessages(r *internalpb.TxRecord, now time.Time) []*internalpb.Message {
	var expires int64
	if r.GetTtlMs() > 0 {
		expires = now.UnixMilli() + r.GetTtlMs()
	}
	out := make([]*internalpb.Message, len(r.GetRecipients()))
	for i, p := range r.GetRecipients() {
		out[i] = &internalpb.Message{
			Id: p.GetMessageId(), App: r.GetApp(), User: p.GetUser(), Device: r.GetDevice(), Payload: r.GetPayload(),
			Qos: r.GetQos(), CreatedMs: now.UnixMilli(), ExpiresMs: expires, State: internalpb.MessageState_MESSAGE_STATE_STORED,
			Receipt: r.GetReceipt(),
		}
	}
	return out
}

// newClaimToken returns a random non-zero token naming one claim.
func newClaimToken() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		// 63 bits: the column is unsigned, but drivers and JSON handle
		// these without surprises.
		if t := binary.BigEndian.Uint64(b[:]) >> 1; t != 0 {
			return t, nil
		}
	}
}

// claim leases up to limit due prepared records. The locking read skips
// rows another claimer (or a commit) holds, so concurrent claimers never
// wait on each other nor take the same row; the lease moves next_check_ms
// past now, so the row is not due again until the lease ends, and the
// claim commits at once: no lock is held while the check-back runs.
func (d *txDB) claim(ctx context.Context, limit int, lease time.Duration, now time.Time) ([]*internalpb.TxClaim, error) {
	token, err := newClaimToken()
	if err != nil {
		return nil, fmt.Errorf("saver: claim tx checks: token: %w", err)
	}
	var out []*internalpb.TxClaim
	err = inTxOpts(ctx, d.db, readCommitted(), func(tx *sql.Tx) error {
		out = out[:0]
		idset, err := queryIDs(ctx, tx, "SELECT id FROM tx_messages WHERE state = ? AND next_check_ms <= ? ORDER BY next_check_ms LIMIT ? FOR UPDATE SKIP LOCKED",
			txStatePrepared, now.UnixMilli(), limit)
		if err != nil {
			return err
		}
		if len(idset) == 0 {
			return nil
		}
		ids := make([]uint64, 0, len(idset))
		for id := range idset {
			ids = append(ids, id)
		}
		ids = sortedIDs(ids)
		until := now.Add(lease).UnixMilli()
		if _, err := tx.ExecContext(ctx, "UPDATE tx_messages SET next_check_ms = ?, lease_until_ms = ?, claim_token = ? WHERE id IN ("+placeholders(len(ids))+")",
			append([]any{until, until, token}, idArgs(ids)...)...); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+txColumns+" FROM tx_messages WHERE id IN ("+placeholders(len(ids))+") ORDER BY id", idArgs(ids)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanTx(rows)
			if err != nil {
				return err
			}
			out = append(out, &internalpb.TxClaim{Tx: r, ClaimToken: token})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("saver: claim tx checks: %w", err)
	}
	return out, nil
}

// reportCheck counts one undecided check (UNKNOWN, or the call failed) of
// a record still claimed with token: it schedules the next check, or, when
// this was check number maxChecks, expires the record (rolled back) in the
// same statement. checks is assigned last so the IFs read the old value
// whether or not the server evaluates SET left to right.
func (d *txDB) reportCheck(ctx context.Context, id, token uint64, nextIn time.Duration, maxChecks uint32, now time.Time) (*internalpb.TxRecord, bool, error) {
	res, err := d.db.ExecContext(ctx, "UPDATE tx_messages SET "+
		"state = IF(checks + 1 >= ?, ?, state), decided_by = IF(checks + 1 >= ?, ?, decided_by), decided_ms = IF(checks + 1 >= ?, ?, decided_ms), "+
		"next_check_ms = ?, lease_until_ms = 0, claim_token = 0, checks = checks + 1 "+
		"WHERE id = ? AND state = ? AND claim_token = ?",
		maxChecks, txStateExpired, maxChecks, txByExpiry, maxChecks, now.UnixMilli(),
		now.Add(nextIn).UnixMilli(), id, txStatePrepared, token)
	if err != nil {
		return nil, false, fmt.Errorf("saver: report check of tx %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, false, fmt.Errorf("saver: report check of tx %d: %w", id, err)
	}
	r, err := scanTx(d.db.QueryRowContext(ctx, "SELECT "+txColumns+" FROM tx_messages WHERE id = ?", id))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, false, fmt.Errorf("saver: report check of tx %d: read: %w", id, err)
	}
	return r, n == 1, nil
}

// pruneDecided deletes up to limit records decided before before.
func (d *txDB) pruneDecided(ctx context.Context, before time.Time, limit int) (int64, error) {
	res, err := d.db.ExecContext(ctx, "DELETE FROM tx_messages WHERE state IN (?,?,?) AND decided_ms < ? LIMIT ?",
		txStateCommitted, txStateRolledBack, txStateExpired, before.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("saver: prune decided tx: %w", err)
	}
	return res.RowsAffected()
}

// countByState counts records per state, for the gauge.
func (d *txDB) countByState(ctx context.Context) (map[uint8]int64, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT state, COUNT(*) FROM tx_messages GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("saver: count tx by state: %w", err)
	}
	defer rows.Close()
	out := map[uint8]int64{}
	for rows.Next() {
		var s uint8
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("saver: count tx by state: %w", err)
		}
		out[s] = n
	}
	return out, rows.Err()
}

// txStateName is the label and API word of a state.
func txStateName(s internalpb.TxState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TX_STATE_"))
}
