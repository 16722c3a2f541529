package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// Resume tokens are derived, not stored: a session keeps one bit
// (hasToken) and its token is HMAC(room key, connection id), computed for
// AUTH_REPLY and when a resume is checked.

// giveToken reports whether a session authenticating now gets a resume
// token: only while parking is on.
func (f *flash) giveToken() bool { return f.r.cfg.flash.enabled() }

// tokenFor returns the resume token of the connection with id connID (the
// connection's own id, not the register id it may have resumed): hex of
// the first resumeTokenBytes of HMAC-SHA256(key, id). It is computed for
// every AUTH_REPLY, so the HMAC (RFC 2104) runs on stack buffers:
// crypto/hmac allocated ≈500 B of state per login. TestTokenForIsHMAC
// keeps it equal to crypto/hmac's.
func (f *flash) tokenFor(connID uint64) string {
	var hx [2 * resumeTokenBytes]byte
	return string(f.appendToken(hx[:0], connID))
}

// appendToken appends tokenFor(connID) to dst: AUTH_REPLY's encoder
// writes it into the frame without a string in between.
func (f *flash) appendToken(dst []byte, connID uint64) []byte {
	const block = 64 // SHA-256's block size; the key is shorter
	var in [block + 8]byte
	var out [block + sha256.Size]byte
	copy(in[:], f.key[:])
	copy(out[:], f.key[:])
	for i := 0; i < block; i++ {
		in[i] ^= 0x36
		out[i] ^= 0x5c
	}
	binary.BigEndian.PutUint64(in[block:], connID)
	inner := sha256.Sum256(in[:])
	copy(out[block:], inner[:])
	mac := sha256.Sum256(out[:])
	return hex.AppendEncode(dst, mac[:resumeTokenBytes])
}

// tokenOf is the resume token s was given, "" for none.
func (f *flash) tokenOf(s *session) string {
	if !s.hasToken {
		return ""
	}
	return f.tokenFor(s.id)
}
