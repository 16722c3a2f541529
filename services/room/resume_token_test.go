package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"
)

// A resume token is derived from the connection id under the room's key:
// the same connection always gets the same token, another connection or
// another room (process) a different one, and only while parking is on.
func TestResumeTokenDerivation(t *testing.T) {
	on := &room{cfg: config{flash: flashConfig{window: time.Second, maxParked: 1}}}
	f := newFlash(on)
	other := newFlash(on)
	a, a2, b := f.tokenFor(7), f.tokenFor(7), f.tokenFor(8)
	if len(a) != 2*resumeTokenBytes {
		t.Fatalf("token %q: want %d hex digits", a, 2*resumeTokenBytes)
	}
	if !hmac.Equal([]byte(a), []byte(a2)) {
		t.Fatalf("same connection, two tokens: %q, %q", a, a2)
	}
	if a == b {
		t.Fatalf("connections 7 and 8 share token %q", a)
	}
	if a == other.tokenFor(7) {
		t.Fatal("two rooms (keys) derive the same token for connection 7")
	}
	s := &session{id: 7}
	if tok := f.tokenOf(s); tok != "" {
		t.Fatalf("session given no token has %q", tok)
	}
	s.hasToken = f.giveToken()
	if got := f.tokenOf(s); got != a {
		t.Fatalf("tokenOf = %q, want %q", got, a)
	}
	off := newFlash(&room{})
	if off.giveToken() {
		t.Fatal("a room with parking off gives resume tokens")
	}
}

// tokenFor's stack HMAC is crypto/hmac's HMAC-SHA256.
func TestTokenForIsHMAC(t *testing.T) {
	f := newFlash(&room{cfg: config{flash: flashConfig{window: time.Second, maxParked: 1}}})
	for _, id := range []uint64{0, 1, 7, 1 << 40, ^uint64(0)} {
		m := hmac.New(sha256.New, f.key[:])
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], id)
		m.Write(b[:])
		if want := hex.EncodeToString(m.Sum(nil)[:resumeTokenBytes]); f.tokenFor(id) != want {
			t.Fatalf("id %d: tokenFor %q, crypto/hmac %q", id, f.tokenFor(id), want)
		}
	}
}
