// Package webhooksig signs the POSTs the coordinator makes to an app's webhook
// and verifies them on the business side. docs/OPERATIONS.md ("Webhooks")
// shows the same check as a standalone snippet for businesses that do not
// import this module.
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Request headers. The signature is hex HMAC-SHA256, keyed with the app's
// secret, of "<timestamp>.<body>"; the event id is inside the signed body
// too (the header is a convenience for logs and proxies).
const (
	HeaderApp       = "X-Pushgw-App"
	HeaderTimestamp = "X-Pushgw-Timestamp"
	HeaderSignature = "X-Pushgw-Signature"
	HeaderEventID   = "X-Pushgw-Event-Id"
	SignaturePrefix = "v1="
)

// DefaultReplayWindow is how far a request's timestamp may be from the
// receiver's clock. Every attempt is signed afresh, so retries stay inside it;
// a captured request replayed later falls outside it. Receivers remember the
// event ids they served for this long to refuse in-window repeats.
const DefaultReplayWindow = 5 * time.Minute

// maxHeaderLen bounds the header values Verify looks at.
const maxHeaderLen = 128

// Errors of Verify.
var (
	ErrBadTimestamp = errors.New("webhooksig: timestamp header is not unix seconds")
	ErrStale        = errors.New("webhooksig: timestamp outside the replay window")
	ErrBadSignature = errors.New("webhooksig: signature does not match")
)

// Sign returns the signature header value for body sent at unix time ts.
func Sign(secret string, ts int64, body []byte) string {
	return SignaturePrefix + hex.EncodeToString(mac(secret, strconv.FormatInt(ts, 10), body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks the timestamp and signature headers of a webhook request
// against body, as read at now. It does not de-duplicate: the caller refuses
// an event id it has already served within window.
func Verify(secret, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) error {
	if len(tsHeader) > maxHeaderLen || len(sigHeader) > maxHeaderLen {
		return ErrBadSignature
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return fmt.Errorf("%w: %s off", ErrStale, d.Round(time.Second))
	}
	got, err := hex.DecodeString(strings.TrimPrefix(sigHeader, SignaturePrefix))
	if err != nil || !strings.HasPrefix(sigHeader, SignaturePrefix) {
		return ErrBadSignature
	}
	if !hmac.Equal(got, mac(secret, tsHeader, body)) {
		return ErrBadSignature
	}
	return nil
}
