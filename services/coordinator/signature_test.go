package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The block between doc:begin and doc:end is the verification example of
// docs/OPERATIONS.md ("Webhooks"), character for character
// (TestOperationsDocShowsTheCheck), so the documented check is the tested one.

// doc:begin
// verifyPushgw checks a pushgw webhook request: the signature is hex
// HMAC-SHA256 with the app secret of "<timestamp>.<body>", and the timestamp
// must be within 5 minutes of now (a captured request replayed later fails).
func verifyPushgw(secret string, h http.Header, body []byte, now time.Time) error {
	ts := h.Get("X-Pushgw-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp outside the replay window")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(h.Get("X-Pushgw-Signature")), []byte(want)) {
		return errors.New("bad signature")
	}
	return nil
}

// ServeHTTP acts on each event id once: a repeat within the window (pushgw
// retrying after a timeout, or a replay) gets the first answer again.
// A real service keeps replies in Redis or its database, expiring after the
// window.
func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || verifyPushgw(h.secret, r.Header, body, h.now()) != nil {
		http.Error(w, "refused", http.StatusUnauthorized)
		return
	}
	var ev struct {
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(body, &ev) != nil || ev.EventID == "" {
		http.Error(w, "no event_id", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	reply, seen := h.replies[ev.EventID]
	if !seen {
		reply = h.handle(body) // the business logic
		h.replies[ev.EventID] = reply
	}
	_, _ = w.Write(reply)
}

// doc:end

// hook is the business side of the example.
type hook struct {
	secret string
	now    func() time.Time

	mu      sync.Mutex
	replies map[string][]byte
	handle  func(body []byte) []byte
}

// captured is a request as it went over the wire, to replay it.
type captured struct {
	header http.Header
	body   []byte
}

func (c captured) replay(h http.Handler) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/uplink", bytes.NewReader(c.body))
	r.Header = c.header.Clone()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestSignatureVerifiesAndReplayIsRefused(t *testing.T) {
	var clockMu sync.Mutex
	clock := time.Now()
	handled := 0
	h := &hook{
		secret: testSecret, replies: make(map[string][]byte),
		now: func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock },
		handle: func([]byte) []byte {
			handled++
			return []byte("handled-" + strconv.Itoa(handled))
		},
	}
	seen := make(chan captured, 1)
	c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- captured{header: r.Header.Clone(), body: body}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}), limits(time.Second, 1, 4, 4, 4))

	// The coordinator's request verifies and is acted on.
	if r := uplink(t, c, "hooked", []byte("x")); r.GetCode() != 0 || string(r.GetPayload()) != "handled-1" {
		t.Fatalf("signed uplink: %v", r)
	}
	req := <-seen

	// Replayed within the window: the event id was seen, the business does
	// not act again and answers as the first time.
	if w := req.replay(h); w.Code != http.StatusOK || w.Body.String() != "handled-1" || handled != 1 {
		t.Fatalf("replay within the window: %d %q, handled %d times", w.Code, w.Body, handled)
	}
	// A body changed in transit fails the signature.
	forged := captured{header: req.header, body: bytes.Replace(req.body, []byte(`"alice"`), []byte(`"mallory"`), 1)}
	if w := forged.replay(h); w.Code != http.StatusUnauthorized {
		t.Fatalf("forged body: %d", w.Code)
	}
	// Replayed after the window: refused on the timestamp.
	clockMu.Lock()
	clock = clock.Add(5*time.Minute + 2*time.Second)
	clockMu.Unlock()
	h.mu.Lock()
	clear(h.replies) // the receiver forgot ids older than the window
	h.mu.Unlock()
	if w := req.replay(h); w.Code != http.StatusUnauthorized || handled != 1 {
		t.Fatalf("replay after the window: %d, handled %d times", w.Code, handled)
	}
}

func TestOperationsDocShowsTheCheck(t *testing.T) {
	src, err := os.ReadFile("signature_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(src), "// doc:begin\n")
	block, _, ok := strings.Cut(rest, "\n// doc:end")
	if !ok {
		t.Fatal("doc markers not found")
	}
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), block) {
		t.Fatalf("docs/OPERATIONS.md does not show the tested check; paste the doc:begin..doc:end block of signature_test.go")
	}
}
