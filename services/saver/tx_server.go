package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Limits of the transactional RPCs.
const (
	// txMaxRecipients matches center's multicast bound.
	txMaxRecipients = 1000
	txClaimDefault  = 100
	txClaimMax      = 500
	txMinLease      = 100 * time.Millisecond
	txMaxLease      = time.Hour
	txMaxNextIn     = 24 * time.Hour
	txMaxChecks     = 1000
	txMaxTTL        = 7 * 24 * time.Hour
)

// txServer implements internalpb.SaverTxServer.
type txServer struct {
	internalpb.UnimplementedSaverTxServer
	db      *txDB
	inbox   *inbox
	metrics *txMetrics
	fail    func(ctx context.Context, method string, err error) error
	log     *slog.Logger
}

func newTxServer(s *server, m *txMetrics) *txServer {
	return &txServer{db: &txDB{db: s.db.db}, inbox: s.inbox, metrics: m, fail: s.fail, log: s.log}
}

// checkTxRecord validates a record to prepare. Tag targets are refused
// until tag broadcasts exist.
func checkTxRecord(r *internalpb.TxRecord) error {
	if r == nil {
		return invalid("tx missing")
	}
	switch r.GetTargetKind() {
	case internalpb.TxTargetKind_TX_TARGET_KIND_USER:
		if len(r.GetRecipients()) != 1 {
			return invalid("tx %d: target user needs exactly one recipient, got %d", r.GetId(), len(r.GetRecipients()))
		}
	case internalpb.TxTargetKind_TX_TARGET_KIND_USERS:
		if len(r.GetRecipients()) == 0 || len(r.GetRecipients()) > txMaxRecipients {
			return invalid("tx %d: target users needs 1..%d recipients, got %d", r.GetId(), txMaxRecipients, len(r.GetRecipients()))
		}
	case internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST, internalpb.TxTargetKind_TX_TARGET_KIND_TAG:
		return checkTxBroadcast(r)
	default:
		return invalid("tx %d: target kind %s is not supported", r.GetId(), r.GetTargetKind())
	}
	if r.GetOnlineOnly() {
		return invalid("tx %d: online_only is for broadcast targets only", r.GetId())
	}
	if r.GetTag() != "" {
		return invalid("tx %d: tag is for target kind tag only", r.GetId())
	}
	seen := make(map[uint64]bool, len(r.GetRecipients()))
	for i, p := range r.GetRecipients() {
		if err := checkUser(r.GetApp(), p.GetUser()); err != nil {
			return invalid("tx %d: recipient %d: %v", r.GetId(), i, err)
		}
		if p.GetMessageId() == 0 || seen[p.GetMessageId()] || p.GetMessageId() == r.GetId() {
			return invalid("tx %d: recipient %d: message id %d is 0 or not unique", r.GetId(), i, p.GetMessageId())
		}
		seen[p.GetMessageId()] = true
	}
	switch {
	case r.GetId() == 0:
		return invalid("tx id 0")
	case len(r.GetDevice()) > maxDeviceLen:
		return invalid("tx %d: device longer than %d bytes", r.GetId(), maxDeviceLen)
	case len(r.GetPayload()) > maxPayload:
		return invalid("tx %d: payload of %d bytes exceeds %d", r.GetId(), len(r.GetPayload()), maxPayload)
	case r.GetQos() != qosAtLeastOne:
		return invalid("tx %d: qos %d: a transactional push is stored, so qos must be 1", r.GetId(), r.GetQos())
	case r.GetTtlMs() < 0 || r.GetTtlMs() > txMaxTTL.Milliseconds():
		return invalid("tx %d: ttl_ms %d outside 0..%d", r.GetId(), r.GetTtlMs(), txMaxTTL.Milliseconds())
	case len(r.GetIdempotencyKey()) > maxIdemKeyLen:
		return invalid("tx %d: idempotency key longer than %d bytes", r.GetId(), maxIdemKeyLen)
	case r.GetCreatedMs() <= 0 || r.GetNextCheckMs() < r.GetCreatedMs():
		return invalid("tx %d: created_ms %d and next_check_ms %d must be positive and in order", r.GetId(), r.GetCreatedMs(), r.GetNextCheckMs())
	}
	return nil
}

func (s *txServer) PrepareTx(ctx context.Context, req *internalpb.PrepareTxRequest) (*internalpb.PrepareTxReply, error) {
	if err := checkTxRecord(req.GetTx()); err != nil {
		return nil, err
	}
	rec, replayed, err := s.db.prepare(ctx, req.GetTx())
	if err != nil {
		return nil, s.fail(ctx, "prepare_tx", err)
	}
	if !replayed {
		s.metrics.transitions.WithLabelValues("prepared").Inc()
	}
	return &internalpb.PrepareTxReply{Tx: rec, Replayed: replayed}, nil
}

func (s *txServer) DecideTx(ctx context.Context, req *internalpb.DecideTxRequest) (*internalpb.DecideTxReply, error) {
	if req.GetApp() == "" || len(req.GetApp()) > maxAppLen || req.GetId() == 0 {
		return nil, invalid("decide tx: app (1..%d bytes) and a non-zero id are required", maxAppLen)
	}
	to := req.GetTo()
	if to != internalpb.TxState_TX_STATE_COMMITTED && to != internalpb.TxState_TX_STATE_ROLLED_BACK {
		return nil, invalid("decide tx %d: to must be COMMITTED or ROLLED_BACK, not %s", req.GetId(), to)
	}
	by := req.GetBy()
	if by != internalpb.TxDecider_TX_DECIDER_API && by != internalpb.TxDecider_TX_DECIDER_CHECK_BACK {
		return nil, invalid("decide tx %d: by must be API or CHECK_BACK, not %s", req.GetId(), by)
	}
	if len(req.GetRooms()) > maxBroadcastRooms {
		return nil, invalid("decide tx %d: %d rooms exceed %d", req.GetId(), len(req.GetRooms()), maxBroadcastRooms)
	}
	for _, r := range req.GetRooms() {
		if err := checkRoomID(r); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	rec, applied, msgs, bc, err := s.db.decide(ctx, req.GetApp(), req.GetId(), uint8(to), uint8(by), req.GetClaimToken(), req.GetRooms(), now)
	if err != nil {
		return nil, s.fail(ctx, "decide_tx", err)
	}
	if rec == nil {
		return &internalpb.DecideTxReply{Found: false}, nil
	}
	if applied {
		s.metrics.transitions.WithLabelValues(txStateName(to)).Inc()
		if len(msgs) > 0 {
			// As after a Store: MySQL has them, Redis is only the fast
			// path, and its failure costs nothing but a MySQL read.
			rctx, cancel := context.WithTimeout(ctx, postCommitRedis)
			if err := s.inbox.add(rctx, msgs); err != nil {
				s.log.Warn("inbox add after tx commit failed; Pending will read MySQL", "tx", req.GetId(), "err", err)
			}
			cancel()
		}
	}
	return &internalpb.DecideTxReply{Found: true, Tx: rec, Applied: applied, Messages: msgs, Broadcast: bc}, nil
}

func (s *txServer) GetTx(ctx context.Context, req *internalpb.GetTxRequest) (*internalpb.GetTxReply, error) {
	if req.GetApp() == "" || len(req.GetApp()) > maxAppLen || req.GetId() == 0 {
		return nil, invalid("get tx: app (1..%d bytes) and a non-zero id are required", maxAppLen)
	}
	rec, found, err := s.db.get(ctx, req.GetApp(), req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "get_tx", err)
	}
	return &internalpb.GetTxReply{Found: found, Tx: rec}, nil
}

func (s *txServer) ClaimTxChecks(ctx context.Context, req *internalpb.ClaimTxChecksRequest) (*internalpb.ClaimTxChecksReply, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = txClaimDefault
	case limit > txClaimMax:
		limit = txClaimMax
	}
	lease := time.Duration(req.GetLeaseMs()) * time.Millisecond
	if lease < txMinLease || lease > txMaxLease {
		return nil, invalid("claim tx checks: lease_ms %d outside %d..%d", req.GetLeaseMs(), txMinLease.Milliseconds(), txMaxLease.Milliseconds())
	}
	claims, err := s.db.claim(ctx, limit, lease, time.Now())
	if err != nil {
		return nil, s.fail(ctx, "claim_tx_checks", err)
	}
	s.metrics.claimed.Add(float64(len(claims)))
	return &internalpb.ClaimTxChecksReply{Claims: claims}, nil
}

func (s *txServer) ReportTxCheck(ctx context.Context, req *internalpb.ReportTxCheckRequest) (*internalpb.ReportTxCheckReply, error) {
	next := time.Duration(req.GetNextInMs()) * time.Millisecond
	switch {
	case req.GetId() == 0 || req.GetClaimToken() == 0:
		return nil, invalid("report tx check: id and claim_token are required")
	case next <= 0 || next > txMaxNextIn:
		return nil, invalid("report tx check %d: next_in_ms %d outside 1..%d", req.GetId(), req.GetNextInMs(), txMaxNextIn.Milliseconds())
	case req.GetMaxChecks() == 0 || req.GetMaxChecks() > txMaxChecks:
		return nil, invalid("report tx check %d: max_checks %d outside 1..%d", req.GetId(), req.GetMaxChecks(), txMaxChecks)
	}
	rec, applied, err := s.db.reportCheck(ctx, req.GetId(), req.GetClaimToken(), next, req.GetMaxChecks(), time.Now())
	if err != nil {
		return nil, s.fail(ctx, "report_tx_check", err)
	}
	if applied && rec.GetState() == internalpb.TxState_TX_STATE_EXPIRED {
		s.metrics.transitions.WithLabelValues("expired").Inc()
	}
	return &internalpb.ReportTxCheckReply{Applied: applied, Tx: rec}, nil
}
