// Package txcheck is the wire contract of pushgw's transactional
// check-back (docs/TRANSACTIONS.md): the signed POST center sends to an
// app's check URL and the answer it expects. Center uses it to call; a
// business server in Go can use Verify and ParseAnswer to answer.
package txcheck

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a check-back request. The signature is hex HMAC-SHA256, keyed
// with the app's secret, of "<timestamp>.<body>", prefixed "v1=" (the
// scheme of the uplink webhook).
const (
	HeaderApp       = "X-Pushgw-App"
	HeaderTxID      = "X-Pushgw-Tx-Id"
	HeaderTimestamp = "X-Pushgw-Timestamp"
	HeaderSignature = "X-Pushgw-Signature"
	SignaturePrefix = "v1="
	// ReplayWindow is how far a request's timestamp may be from the
	// receiver's clock; an older request is a replay and is refused.
	ReplayWindow = 5 * time.Minute
	// MaxAnswerBytes bounds what center reads of an answer.
	MaxAnswerBytes = 4 << 10
	// MaxRequestBytes bounds a request body a receiver should accept.
	MaxRequestBytes = 64 << 10
)

// Decisions a business answers.
const (
	Commit   = "COMMIT"
	Rollback = "ROLLBACK"
	Unknown  = "UNKNOWN"
)

// Request is the JSON body center POSTs.
type Request struct {
	TxID string `json:"tx_id"`
	App  string `json:"app"`
	// IdempotencyKey is the key given at prepare, often the business's
	// own order id; empty if none was given.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	TargetKind     string `json:"target_kind"`
	// Users are the recipients (at most the first MaxListedUsers).
	Users []string `json:"users"`
	// Check counts from 1; MaxChecks is the last one before rollback.
	Check      int   `json:"check"`
	MaxChecks  int   `json:"max_checks"`
	PreparedMs int64 `json:"prepared_ms"`
}

// MaxListedUsers bounds Request.Users so a check stays small.
const MaxListedUsers = 100

// Answer is the JSON body a business answers with HTTP 200.
type Answer struct {
	Decision string `json:"decision"`
}

// Sign returns the signature header value of body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return SignaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("txcheck: signature does not match")
	ErrStale        = errors.New("txcheck: timestamp outside the replay window")
)

// Verify checks the timestamp and signature headers of a request against
// its body. now is the receiver's clock.
func Verify(secret string, h http.Header, body []byte, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("txcheck: %s is not a unix time: %w", HeaderTimestamp, err)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > ReplayWindow || d < -ReplayWindow {
		return ErrStale
	}
	want := Sign(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(h.Get(HeaderSignature))) {
		return ErrBadSignature
	}
	return nil
}

// ReadVerified reads a request body (at most MaxRequestBytes), verifies
// it and decodes it: the whole receiving side in one call.
func ReadVerified(secret string, r *http.Request, now time.Time) (*Request, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("txcheck: read body: %w", err)
	}
	if len(body) > MaxRequestBytes {
		return nil, fmt.Errorf("txcheck: body over %d bytes", MaxRequestBytes)
	}
	if err := Verify(secret, r.Header, body, now); err != nil {
		return nil, err
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("txcheck: body: %w", err)
	}
	if req.TxID != r.Header.Get(HeaderTxID) {
		return nil, fmt.Errorf("txcheck: body names tx %q, header %q", req.TxID, r.Header.Get(HeaderTxID))
	}
	return &req, nil
}

// ParseAnswer decodes an answer body: one JSON object whose decision is
// COMMIT, ROLLBACK or UNKNOWN (case-insensitive). Anything else is an
// error, which center counts like a failed call.
func ParseAnswer(body []byte) (string, error) {
	if len(body) > MaxAnswerBytes {
		return "", fmt.Errorf("txcheck: answer over %d bytes", MaxAnswerBytes)
	}
	var a Answer
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&a); err != nil {
		return "", fmt.Errorf("txcheck: answer is not a JSON object: %w", err)
	}
	if dec.More() {
		return "", errors.New("txcheck: answer holds more than one JSON value")
	}
	switch d := strings.ToUpper(a.Decision); d {
	case Commit, Rollback, Unknown:
		return d, nil
	}
	return "", fmt.Errorf("txcheck: decision %q is not COMMIT, ROLLBACK or UNKNOWN", truncate(a.Decision, 32))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
