package main

import (
	"strings"
	"testing"
	"time"
)

// A broadcast prepare follows POST /v1/broadcast's rules; tag stays
// refused with the documented message.
func TestTxPrepareBroadcastValidation(t *testing.T) {
	bc := func() *txTarget { return &txTarget{Kind: txKindBroadcast} }
	p, e := (&txPrepareRequest{Target: bc(), Payload: ptr("x")}).validate("demo")
	if e != nil || p.kind != txKindBroadcast || p.qos != 1 || p.ttl != defaultTTL || p.onlineOnly || len(p.users) != 0 {
		t.Fatalf("plain broadcast: %+v, %v", p, e)
	}
	p, e = (&txPrepareRequest{Target: bc(), Payload: ptr("x"), QoS: ptr(0), TTL: ptr(int64(30))}).validate("demo")
	if e != nil || p.qos != 0 || !p.onlineOnly || p.ttl != 30*time.Second {
		t.Fatalf("qos 0 broadcast: %+v, %v", p, e)
	}
	for name, tc := range map[string]struct {
		q     txPrepareRequest
		field string
		msg   string
	}{
		"user on broadcast":     {txPrepareRequest{Target: &txTarget{Kind: txKindBroadcast, User: "u"}, Payload: ptr("x")}, "target", "take no user"},
		"qos 0 not online only": {txPrepareRequest{Target: bc(), Payload: ptr("x"), QoS: ptr(0), OnlineOnly: ptr(false)}, "online_only", "qos 0"},
		"online_only on user":   {txPrepareRequest{Target: &txTarget{Kind: txKindUser, User: "u"}, Payload: ptr("x"), OnlineOnly: ptr(true)}, "online_only", "broadcast and tag only"},
		"bad check_timeout":     {txPrepareRequest{Target: bc(), Payload: ptr("x"), CheckTimeout: ptr(int64(0))}, "check_timeout", "1.."},
		"tag without a name":    {txPrepareRequest{Target: &txTarget{Kind: txKindTag}, Payload: ptr("x")}, "target.tag", "tag"},
		"tag on broadcast":      {txPrepareRequest{Target: &txTarget{Kind: txKindBroadcast, Tag: "vip"}, Payload: ptr("x")}, "target.tag", "kind\":\"tag"},
		"users on tag":          {txPrepareRequest{Target: &txTarget{Kind: txKindTag, Tag: "vip", Users: []string{"u"}}, Payload: ptr("x")}, "target", "take no user"},
		"unknown kind":          {txPrepareRequest{Target: &txTarget{Kind: "room"}, Payload: ptr("x")}, "target.kind", `"broadcast"`},
	} {
		_, e := tc.q.validate("demo")
		if e == nil || e.Code != CodeInvalidArgument || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %+v, want %s error mentioning %q", name, e, tc.field, tc.msg)
		}
	}
}
