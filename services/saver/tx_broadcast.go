package main

import (
	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// isTxBroadcast reports whether a record of kind k commits into one
// broadcast row: BROADCAST (the whole app) or TAG (the tag's members).
func isTxBroadcast(k internalpb.TxTargetKind) bool {
	return k == internalpb.TxTargetKind_TX_TARGET_KIND_BROADCAST || k == internalpb.TxTargetKind_TX_TARGET_KIND_TAG
}

// checkTxBroadcast validates a BROADCAST half-record: one recipient, with
// no user, whose message id is the broadcast id the commit stores; qos 0
// or 1 under the rules of StoreBroadcast (qos 0 is online only).
func checkTxBroadcast(r *internalpb.TxRecord) error {
	rs := r.GetRecipients()
	switch {
	case r.GetId() == 0:
		return invalid("tx id 0")
	case len(rs) != 1 || rs[0].GetUser() != "":
		return invalid("tx %d: target broadcast needs exactly one recipient without a user (the broadcast id)", r.GetId())
	case rs[0].GetMessageId() == 0 || rs[0].GetMessageId() == r.GetId():
		return invalid("tx %d: broadcast id %d is 0 or the tx id", r.GetId(), rs[0].GetMessageId())
	case r.GetApp() == "" || len(r.GetApp()) > maxAppLen:
		return invalid("tx %d: app must be 1..%d bytes", r.GetId(), maxAppLen)
	case r.GetDevice() != "":
		return invalid("tx %d: target broadcast takes no device", r.GetId())
	case len(r.GetPayload()) > maxPayload:
		return invalid("tx %d: payload of %d bytes exceeds %d", r.GetId(), len(r.GetPayload()), maxPayload)
	case r.GetQos() > qosAtLeastOne:
		return invalid("tx %d: qos %d", r.GetId(), r.GetQos())
	case r.GetQos() == 0 && !r.GetOnlineOnly():
		return invalid("tx %d: a qos 0 broadcast is online only", r.GetId())
	case r.GetTtlMs() <= 0 || r.GetTtlMs() > txMaxTTL.Milliseconds():
		return invalid("tx %d: broadcast ttl_ms %d outside 1..%d", r.GetId(), r.GetTtlMs(), txMaxTTL.Milliseconds())
	case len(r.GetIdempotencyKey()) > maxIdemKeyLen:
		return invalid("tx %d: idempotency key longer than %d bytes", r.GetId(), maxIdemKeyLen)
	case r.GetTargetKind() == internalpb.TxTargetKind_TX_TARGET_KIND_TAG && limits.CheckTag(r.GetTag()) != nil:
		return invalid("tx %d: tag: %v", r.GetId(), limits.CheckTag(r.GetTag()))
	case r.GetTargetKind() != internalpb.TxTargetKind_TX_TARGET_KIND_TAG && r.GetTag() != "":
		return invalid("tx %d: tag given for target kind %s", r.GetId(), r.GetTargetKind())
	case r.GetCreatedMs() <= 0 || r.GetNextCheckMs() < r.GetCreatedMs():
		return invalid("tx %d: created_ms %d and next_check_ms %d must be positive and in order", r.GetId(), r.GetCreatedMs(), r.GetNextCheckMs())
	}
	return nil
}
