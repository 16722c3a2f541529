package main

import (
	"fmt"
	"github.com/pushgw/pushgw/pkg/limits"
	"time"
)

// Target kinds of POST /v1/tx. Tag is accepted by the decoder so the
// answer can say it is not supported yet: the half-record stores the kind
// as a word, and tag lands with tag broadcasts.
const (
	txKindUser      = "user"
	txKindUsers     = "users"
	txKindTag       = "tag"
	txKindBroadcast = "broadcast"
)

// Limits of the transactional routes.
const (
	maxTxCheckTimeout = 24 * time.Hour
	// txIDBase is the radix of ids in the API (decimal strings, as
	// message ids).
	txIDBase = 10
)

// txTarget names who a transactional push goes to.
type txTarget struct {
	Kind   string   `json:"kind"`
	User   string   `json:"user"`
	Device string   `json:"device"`
	Users  []string `json:"users"`
	Tag    string   `json:"tag"`
}

// txPrepareRequest is the body of POST /v1/tx.
type txPrepareRequest struct {
	App           string    `json:"app"`
	Target        *txTarget `json:"target"`
	Payload       *string   `json:"payload"`
	PayloadBase64 *string   `json:"payload_base64"`
	QoS           *int      `json:"qos"`
	TTL           *int64    `json:"ttl"`
	// CheckTimeout (seconds) overrides the app's delay before the first
	// check-back of an undecided record.
	CheckTimeout   *int64 `json:"check_timeout"`
	IdempotencyKey string `json:"idempotency_key"`
	// OnlineOnly (target kind broadcast only), as in POST /v1/broadcast.
	OnlineOnly *bool `json:"online_only"`
	// Receipt (target kinds user and users): each committed message asks
	// for a delivery receipt (receipt.go). Checked against the app at
	// prepare; broadcast and tag refuse it as POST /v1/broadcast does.
	Receipt bool `json:"receipt"`
}

// txPrepared is a validated prepare.
type txPrepared struct {
	delivery
	kind       string
	users      []string
	device     string
	checkAfter time.Duration // 0: the app's default
	onlineOnly bool          // broadcast and tag only
	tag        string        // tag only
}

func (q *txPrepareRequest) validate(keyApp string) (txPrepared, *apiError) {
	var p txPrepared
	if e := checkApp(q.App, keyApp); e != nil {
		return p, e
	}
	if q.Target == nil {
		return p, fieldError("target", `target is required: {"kind":"user","user":"…"}, {"kind":"users","users":["…"]} or {"kind":"broadcast"}`)
	}
	t := q.Target
	p.kind = t.Kind
	if q.OnlineOnly != nil && t.Kind != txKindBroadcast && t.Kind != txKindTag {
		return p, fieldError("online_only", "online_only applies to target kinds broadcast and tag only")
	}
	switch t.Kind {
	case txKindUser:
		if len(t.Users) > 0 || t.Tag != "" {
			return p, fieldError("target", "target kind user takes user (and optionally device) only")
		}
		if e := checkUser("target.user", t.User); e != nil {
			return p, e
		}
		if e := checkDevice(t.Device); e != nil {
			e.Field = "target.device"
			return p, e
		}
		p.users, p.device = []string{t.User}, t.Device
	case txKindUsers:
		if t.User != "" || t.Device != "" || t.Tag != "" {
			return p, fieldError("target", "target kind users takes users only")
		}
		if e := checkTxUsers(t.Users); e != nil {
			return p, e
		}
		p.users = t.Users
	case txKindBroadcast:
		return p.validateBroadcast(q)
	case txKindTag:
		return p.validateBroadcast(q)
	default:
		return p, fieldError("target.kind", fmt.Sprintf("target kind must be %q, %q, %q or %q, not %q", txKindUser, txKindUsers, txKindTag, txKindBroadcast, t.Kind))
	}
	d, e := checkDelivery(q.Payload, q.PayloadBase64, q.QoS, q.TTL)
	if e != nil {
		return p, e
	}
	if d.qos != 1 {
		return p, fieldError("qos", "a transactional push is stored until it is decided, so qos must be 1 (the default)")
	}
	p.delivery = d
	return p, q.validateCommon(&p)
}

// validateBroadcast checks a prepare of target kind broadcast: the
// delivery fields follow POST /v1/broadcast (qos 0 or 1, qos 0 is online
// only, a missing ttl is the default), so the commit sends exactly what
// that route would have.
func (p txPrepared) validateBroadcast(q *txPrepareRequest) (txPrepared, *apiError) {
	t := q.Target
	if t.User != "" || t.Device != "" || len(t.Users) > 0 {
		return p, fieldError("target", "target kinds broadcast and tag take no user, device or users")
	}
	switch {
	case t.Kind == txKindBroadcast && t.Tag != "":
		return p, fieldError("target.tag", `target kind broadcast goes to every device of the app; use {"kind":"tag","tag":"…"} for a tag's members`)
	case t.Kind == txKindTag:
		if err := limits.CheckTag(t.Tag); err != nil {
			return p, fieldError("target.tag", "target.tag: "+err.Error())
		}
		p.tag = t.Tag
	}
	br := broadcastRequest{App: q.App, Payload: q.Payload, PayloadBase64: q.PayloadBase64, QoS: q.QoS, TTL: q.TTL, OnlineOnly: q.OnlineOnly,
		Receipt: q.Receipt}
	plan, e := br.validate(q.App)
	if e != nil {
		return p, e
	}
	p.payload, p.qos, p.ttl, p.onlineOnly = plan.payload, plan.qos, plan.ttl, plan.onlineOnly
	return p, q.validateCommon(&p)
}

// validateCommon checks the fields every target kind shares.
func (q *txPrepareRequest) validateCommon(p *txPrepared) *apiError {
	if q.CheckTimeout != nil {
		if *q.CheckTimeout < 1 || *q.CheckTimeout > int64(maxTxCheckTimeout/time.Second) {
			return fieldError("check_timeout", fmt.Sprintf("check_timeout must be 1..%d seconds, not %d", int64(maxTxCheckTimeout/time.Second), *q.CheckTimeout))
		}
		p.checkAfter = time.Duration(*q.CheckTimeout) * time.Second
	}
	if len(q.IdempotencyKey) > maxIdempotencyKeyBytes {
		return fieldError("idempotency_key", fmt.Sprintf("idempotency_key is %d bytes; at most %d allowed", len(q.IdempotencyKey), maxIdempotencyKeyBytes))
	}
	return nil
}

// checkTxUsers applies the multicast rules to target.users.
func checkTxUsers(users []string) *apiError {
	if len(users) == 0 || len(users) > maxMultiUsers {
		return fieldError("target.users", fmt.Sprintf("target.users must list 1..%d users, not %d", maxMultiUsers, len(users)))
	}
	seen := make(map[string]struct{}, len(users))
	for i, u := range users {
		field := fmt.Sprintf("target.users[%d]", i)
		if e := checkUser(field, u); e != nil {
			return e
		}
		if _, dup := seen[u]; dup {
			return fieldError(field, fmt.Sprintf("user %q is listed twice; users must be distinct", u))
		}
		seen[u] = struct{}{}
	}
	return nil
}
