package main

import "testing"

// FuzzReplyPayload: a webhook reply is bytes from outside; it decodes to a
// payload or a webhook error, never a panic.
func FuzzReplyPayload(f *testing.F) {
	for _, s := range []string{`{"payload_base64":"aGk="}`, `{"payload_base64":"%%%"}`, `plain text`, `{"payload_base64":null}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := replyPayload(raw)
		if err == nil && p == nil && raw != nil {
			t.Fatalf("nil payload without error for %q", raw)
		}
	})
}
