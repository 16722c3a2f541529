package main

import (
	"crypto/hmac"
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
// the first resumeTokenBytes of HMAC-SHA256(key, id).
func (f *flash) tokenFor(connID uint64) string {
	m := hmac.New(sha256.New, f.key[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], connID)
	m.Write(b[:])
	return hex.EncodeToString(m.Sum(nil)[:resumeTokenBytes])
}

// tokenOf is the resume token s was given, "" for none.
func (f *flash) tokenOf(s *session) string {
	if !s.hasToken {
		return ""
	}
	return f.tokenFor(s.id)
}
