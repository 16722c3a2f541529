package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Transactional push (docs/TRANSACTIONS.md): prepare stores a half-record
// in saver, invisible to delivery; commit or rollback decide it by
// compare-and-set there; the winning commit's messages go down the same
// delivery path as a stored push.

// txView is the JSON of a record in every /v1/tx answer.
type txView struct {
	ID             string            `json:"id"`
	App            string            `json:"app"`
	State          string            `json:"state"`
	Target         txTarget          `json:"target"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Replayed       bool              `json:"replayed,omitempty"`
	Checks         uint32            `json:"checks"`
	DecidedBy      string            `json:"decided_by,omitempty"`
	CreatedAt      string            `json:"created_at"`
	DecidedAt      string            `json:"decided_at,omitempty"`
	NextCheckAt    string            `json:"next_check_at,omitempty"`
	MessageIDs     map[string]string `json:"message_ids,omitempty"`
	// Broadcast targets: the broadcast id (fixed at prepare, stored on
	// commit), its seq (commit answers only) and online_only.
	BroadcastID string `json:"broadcast_id,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
	OnlineOnly  bool   `json:"online_only,omitempty"`
	// Receipt: the committed messages ask for delivery receipts.
	Receipt bool `json:"receipt,omitempty"`
}

func txStateWord(s internalpb.TxState) string {
	switch s {
	case internalpb.TxState_TX_STATE_PREPARED:
		return "prepared"
	case internalpb.TxState_TX_STATE_COMMITTED:
		return "committed"
	case internalpb.TxState_TX_STATE_ROLLED_BACK:
		return "rolled_back"
	case internalpb.TxState_TX_STATE_EXPIRED:
		return "expired"
	}
	return "unknown"
}

func txDeciderWord(d internalpb.TxDecider) string {
	switch d {
	case internalpb.TxDecider_TX_DECIDER_API:
		return "api"
	case internalpb.TxDecider_TX_DECIDER_CHECK_BACK:
		return "check-back"
	case internalpb.TxDecider_TX_DECIDER_EXPIRY:
		return "expiry"
	}
	return ""
}

func txKindWord(k internalpb.TxTargetKind) string {
	switch k {
	case internalpb.TxTargetKind_TX_TARGET_KIND_USER:
		return txKindUser
	case internalpb.TxTargetKind_TX_TARGET_KIND_USERS:
		return txKindUsers
	case internalpb.TxTargetKind_TX_TARGET_KIND_TAG:
		return txKindTag
	case internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST:
		return txKindBroadcast
	}
	return ""
}

func msTime(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func newTxView(r *internalpb.TxRecord) txView {
	v := txView{
		ID: strconv.FormatUint(r.GetId(), txIDBase), App: r.GetApp(), State: txStateWord(r.GetState()),
		IdempotencyKey: r.GetIdempotencyKey(), Checks: r.GetChecks(), DecidedBy: txDeciderWord(r.GetDecidedBy()),
		CreatedAt: msTime(r.GetCreatedMs()), DecidedAt: msTime(r.GetDecidedMs()),
		Target: txTarget{Kind: txKindWord(r.GetTargetKind()), Device: r.GetDevice()}, Receipt: r.GetReceipt(),
	}
	if r.GetState() == internalpb.TxState_TX_STATE_PREPARED {
		v.NextCheckAt = msTime(r.GetNextCheckMs())
	}
	if k := r.GetTargetKind(); k == internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST || k == internalpb.TxTargetKind_TX_TARGET_KIND_TAG {
		v.OnlineOnly, v.Target.Tag = r.GetOnlineOnly(), r.GetTag()
		if rs := r.GetRecipients(); len(rs) == 1 {
			v.BroadcastID = strconv.FormatUint(rs[0].GetMessageId(), 10)
		}
		return v
	}
	for _, p := range r.GetRecipients() {
		if v.Target.Kind == txKindUser {
			v.Target.User = p.GetUser()
		} else {
			v.Target.Users = append(v.Target.Users, p.GetUser())
		}
		if r.GetState() == internalpb.TxState_TX_STATE_COMMITTED {
			if v.MessageIDs == nil {
				v.MessageIDs = make(map[string]string, len(r.GetRecipients()))
			}
			v.MessageIDs[p.GetUser()] = strconv.FormatUint(p.GetMessageId(), 10)
		}
	}
	return v
}

func (s *Server) handleTxPrepare(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	var req txPrepareRequest
	if e := decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	p, e := req.validate(app.Name)
	if e != nil {
		return nil, e
	}
	// Broadcast kinds refused a receipt in validate; user kinds are QoS 1.
	if e := checkReceipt(app, req.Receipt, p.delivery); e != nil {
		return nil, e
	}
	// A broadcast counts against the app's broadcast limit when it is
	// prepared: the commit cannot be refused for a rate.
	if p.kind == txKindBroadcast || p.kind == txKindTag {
		if e := s.limits.allow(r.Context(), app.Name, apiBroadcast, app.Broadcast(), 1); e != nil {
			return nil, e
		}
	}
	txID, err := s.ids.Next()
	if err != nil {
		s.log.Error("center: id generation failed", "err", err)
		return nil, errorf(CodeUnavailable, "could not assign a transaction id; retry shortly")
	}
	now := time.Now()
	checkAfter := p.checkAfter
	if checkAfter == 0 {
		checkAfter = app.TxCheckFirst()
	}
	rec := &internalpb.TxRecord{
		Id: txID, App: app.Name, TargetKind: internalpb.TxTargetKind_TX_TARGET_KIND_USER, Device: p.device,
		Payload: p.payload, Qos: p.qos, TtlMs: p.ttl.Milliseconds(), IdempotencyKey: req.IdempotencyKey,
		CreatedMs: now.UnixMilli(), NextCheckMs: now.Add(checkAfter).UnixMilli(), Receipt: req.Receipt,
	}
	switch p.kind {
	case txKindUsers:
		rec.TargetKind = internalpb.TxTargetKind_TX_TARGET_KIND_USERS
	case txKindBroadcast, txKindTag:
		bid, err := s.ids.Next()
		if err != nil {
			s.log.Error("center: id generation failed", "err", err)
			return nil, errorf(CodeUnavailable, "could not assign a broadcast id; retry shortly")
		}
		rec.TargetKind, rec.OnlineOnly = internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST, p.onlineOnly
		if p.kind == txKindTag {
			rec.TargetKind, rec.Tag = internalpb.TxTargetKind_TX_TARGET_KIND_TAG, p.tag
		}
		rec.Recipients = []*internalpb.TxRecipient{{MessageId: bid}}
	}
	for _, u := range p.users {
		id, err := s.ids.Next()
		if err != nil {
			s.log.Error("center: id generation failed", "err", err)
			return nil, errorf(CodeUnavailable, "could not assign a message id; retry shortly")
		}
		rec.Recipients = append(rec.Recipients, &internalpb.TxRecipient{User: u, MessageId: id})
	}
	cctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	rep, err := s.saverTx.PrepareTx(cctx, &internalpb.PrepareTxRequest{Tx: rec})
	cancel()
	if err != nil {
		s.log.Warn("center: tx prepare failed", "tx", txID, "err", err)
		if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
			return nil, errorf(CodeUnavailable, "the half-record store did not confirm in time; it may or may not have been prepared: retry with the same idempotency_key, or leave it to the check-back")
		}
		return nil, errorf(CodeUnavailable, "the half-record store is unavailable; nothing was prepared, retry the request")
	}
	v := newTxView(rep.GetTx())
	v.Replayed = rep.GetReplayed()
	if !v.Replayed {
		s.txm.prepared.Inc()
		s.log.Debug("center: tx prepared", "tx", txID, "app", app.Name, "recipients", len(rec.Recipients))
	}
	return v, nil
}

func (s *Server) handleTxCommit(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	return s.decideByAPI(r, app, internalpb.TxState_TX_STATE_COMMITTED)
}

func (s *Server) handleTxRollback(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	return s.decideByAPI(r, app, internalpb.TxState_TX_STATE_ROLLED_BACK)
}

// txIDOf parses the {id} of a /v1/tx route.
func txIDOf(r *http.Request) (uint64, *apiError) {
	id, err := strconv.ParseUint(r.PathValue("id"), txIDBase, 64)
	if err != nil || id == 0 {
		return 0, &apiError{Code: CodeInvalidArgument, Field: "id", Message: "transaction id must be the decimal id POST /v1/tx returned"}
	}
	return id, nil
}

func (s *Server) decideByAPI(r *http.Request, app appconfig.App, to internalpb.TxState) (any, *apiError) {
	id, e := txIDOf(r)
	if e != nil {
		return nil, e
	}
	rep, err := s.decideTx(r.Context(), app.Name, id, to, internalpb.TxDecider_TX_DECIDER_API, 0, "")
	if err != nil {
		return nil, errorf(CodeUnavailable, "the half-record store is unavailable; the transaction is undecided unless GET /v1/tx/"+r.PathValue("id")+" says otherwise, retry the request")
	}
	if !rep.GetFound() {
		return nil, errorf(CodeNotFound, "no transaction "+r.PathValue("id")+" for this app (never prepared, another app's, or decided longer ago than the retention)")
	}
	state := rep.GetTx().GetState()
	// The same outcome again answers 200: a retried commit must not look
	// like a failure. An expired record was rolled back, which is what a
	// rollback asks for.
	same := state == to || (to == internalpb.TxState_TX_STATE_ROLLED_BACK && state == internalpb.TxState_TX_STATE_EXPIRED)
	if !same {
		return nil, &apiError{Code: CodeTxAlreadyDecided, State: txStateWord(state),
			Message: "transaction " + r.PathValue("id") + " was already decided: " + txStateWord(state) + " by " + txDeciderWord(rep.GetTx().GetDecidedBy())}
	}
	v := newTxView(rep.GetTx())
	v.Seq = rep.GetBroadcast().GetSeq()
	return v, nil
}

// decideTx asks saver to decide a record; for the call that won, it logs
// the decision, counts it and hands a commit's messages, or broadcast, to
// delivery. reason says why a check-back decided (logged).
func (s *Server) decideTx(ctx context.Context, app string, id uint64, to internalpb.TxState, by internalpb.TxDecider, token uint64, reason string) (*internalpb.DecideTxReply, error) {
	// A commit names the live rooms: should the record be a broadcast,
	// saver gives each a progress row, so the resend sweep covers this
	// center dying between the commit and the fan-out.
	var rooms []discovery.Instance
	var roomIDs []string
	if to == internalpb.TxState_TX_STATE_COMMITTED {
		rooms = s.bcast.liveRooms()
		roomIDs = make([]string, len(rooms))
		for i, in := range rooms {
			roomIDs[i] = in.ID
		}
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	rep, err := s.saverTx.DecideTx(cctx, &internalpb.DecideTxRequest{App: app, Id: id, To: to, By: by, ClaimToken: token, Rooms: roomIDs})
	cancel()
	if err != nil {
		s.log.Warn("center: tx decide failed", "tx", id, "to", txStateWord(to), "by", txDeciderWord(by), "err", err)
		return nil, err
	}
	if rep.GetApplied() {
		s.txDecided(rep.GetTx(), reason)
		if msgs := rep.GetMessages(); len(msgs) > 0 {
			s.m.stored.Add(float64(len(msgs)))
			s.deliverAsync(ctx, msgs)
		}
		if b := rep.GetBroadcast(); b != nil {
			s.bcast.sendAll(b, rooms)
		}
	}
	return rep, nil
}

// txDecided logs and counts one decision, made by whoever won the CAS.
func (s *Server) txDecided(r *internalpb.TxRecord, reason string) {
	state, by := txStateWord(r.GetState()), txDeciderWord(r.GetDecidedBy())
	took := time.Duration(r.GetDecidedMs()-r.GetCreatedMs()) * time.Millisecond
	s.txm.decided.WithLabelValues(state, by).Inc()
	s.txm.decisionTime.WithLabelValues(state).Observe(took.Seconds())
	args := []any{"tx", r.GetId(), "app", r.GetApp(), "state", state, "decided_by", by, "checks", r.GetChecks(),
		"recipients", len(r.GetRecipients()), "prepare_to_decision", took.String()}
	if reason != "" {
		args = append(args, "reason", reason)
	}
	s.log.Info("center: tx decided", args...)
}

func (s *Server) handleTxGet(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	id, e := txIDOf(r)
	if e != nil {
		return nil, e
	}
	cctx, cancel := context.WithTimeout(r.Context(), downstreamTimeout)
	rep, err := s.saverTx.GetTx(cctx, &internalpb.GetTxRequest{App: app.Name, Id: id})
	cancel()
	if err != nil {
		s.log.Warn("center: tx get failed", "tx", id, "err", err)
		return nil, errorf(CodeUnavailable, "the half-record store is unavailable; retry shortly")
	}
	if !rep.GetFound() {
		return nil, errorf(CodeNotFound, "no transaction "+r.PathValue("id")+" for this app (never prepared, another app's, or decided longer ago than the retention)")
	}
	return newTxView(rep.GetTx()), nil
}
