package main

import (
	"github.com/pushgw/pushgw/pkg/limits"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushgw/pushgw/pkg/txcheck"
)

// FuzzTxBody feeds arbitrary bodies through the API's body rules and the
// POST /v1/tx validation, and arbitrary check-back answers through their
// parser: an error always has a code and a message, a validated prepare
// of a user kind always names 1..maxMultiUsers users and qos 1, one of
// kind broadcast no users, qos 0 (online only) or 1 and a ttl, and
// nothing panics.
func FuzzTxBody(f *testing.F) {
	for _, s := range []string{
		`{"app":"demo","target":{"kind":"user","user":"alice"},"payload":"hi","ttl":60,"check_timeout":6,"idempotency_key":"o-1"}`,
		`{"target":{"kind":"users","users":["a","b"]},"payload_base64":"aGk="}`,
		`{"target":{"kind":"tag","tag":"vip"},"payload":"x"}`,
		`{"target":{"kind":"broadcast"},"payload":"x"}`,
		`{"target":{"kind":"broadcast"},"payload":"x","qos":0,"online_only":false}`,
		`{"target":{"kind":"broadcast","user":"u"},"payload":"x","online_only":true,"ttl":60}`,
		`{"target":{"kind":"user","user":"u"},"payload":"x","online_only":true}`,
		`{"target":{"kind":"user","user":"u"},"payload":"x","qos":0}`,
		`{"target":{"kind":"users","users":["a","a"]},"payload":"x"}`,
		`{"target":{"kind":"user","user":"u"},"payload":"x","check_timeout":0}`,
		`{"target":null,"payload":"x"}`, `{"decision":"COMMIT"}`, `{"decision":"unknown"} {}`,
		`[1]`, ``, `null`, "{\"target\":{\"kind\":\"user\",\"user\":\"\xff\"}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/tx", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var q txPrepareRequest
		e := decodeBody(httptest.NewRecorder(), req, &q)
		if e == nil {
			var p txPrepared
			p, e = q.validate("demo")
			bad := len(p.users) == 0 || len(p.users) > maxMultiUsers || p.qos != 1 || p.onlineOnly || (p.kind != txKindUser && p.kind != txKindUsers)
			if p.kind == txKindBroadcast || p.kind == txKindTag {
				bad = len(p.users) != 0 || p.device != "" || p.qos > 1 || p.ttl <= 0 || p.ttl > maxTTL || (p.qos == 0 && !p.onlineOnly) ||
					(p.kind == txKindTag) != (p.tag != "") || (p.tag != "" && limits.CheckTag(p.tag) != nil)
			}
			if e == nil && bad {
				t.Fatalf("accepted an invalid prepare: %+v", p)
			}
		}
		if e != nil && (e.Code == "" || e.Message == "") {
			t.Fatalf("error without code or message: %+v", e)
		}
		if d, err := txcheck.ParseAnswer([]byte(body)); err == nil && d != txcheck.Commit && d != txcheck.Rollback && d != txcheck.Unknown {
			t.Fatalf("answer parsed to %q", d)
		}
	})
}
