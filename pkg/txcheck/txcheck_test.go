package txcheck

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

const secret = "0123456789abcdef"

func signedRequest(body []byte, id string, ts time.Time, key string) *http.Request {
	r := httptest.NewRequest("POST", "/check", bytes.NewReader(body))
	r.Header.Set(HeaderTxID, id)
	r.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set(HeaderSignature, Sign(key, ts.Unix(), body))
	return r
}

func TestReadVerified(t *testing.T) {
	now := time.Now()
	body := []byte(`{"tx_id":"42","app":"demo","check":2,"max_checks":15}`)
	req, err := ReadVerified(secret, signedRequest(body, "42", now, secret), now)
	if err != nil || req.TxID != "42" || req.Check != 2 {
		t.Fatalf("valid request: %+v, %v", req, err)
	}
	for name, r := range map[string]*http.Request{
		"wrong secret":      signedRequest(body, "42", now, "another-secret-xx"),
		"too old":           signedRequest(body, "42", now.Add(-ReplayWindow-time.Second), secret),
		"from the future":   signedRequest(body, "42", now.Add(ReplayWindow+time.Second), secret),
		"header id differs": signedRequest(body, "43", now, secret),
	} {
		if _, err := ReadVerified(secret, r, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A body changed after signing fails.
	r := signedRequest(body, "42", now, secret)
	r.Body = httptest.NewRequest("POST", "/", bytes.NewReader(append(body[:len(body)-1:len(body)-1], ',', '}'))).Body
	if _, err := ReadVerified(secret, r, now); err != ErrBadSignature {
		t.Fatalf("tampered body: %v", err)
	}
}

func TestParseAnswer(t *testing.T) {
	for body, want := range map[string]string{
		`{"decision":"COMMIT"}`: Commit, `{"decision":"rollback"}`: Rollback, `{"decision":"Unknown","extra":1}`: Unknown,
	} {
		if got, err := ParseAnswer([]byte(body)); err != nil || got != want {
			t.Errorf("%s: %q, %v", body, got, err)
		}
	}
	for _, body := range []string{``, `{}`, `{"decision":"YES"}`, `{"decision":"COMMIT"} {}`, `"COMMIT"`,
		`{"decision":"COMMIT","pad":"` + string(bytes.Repeat([]byte("x"), MaxAnswerBytes)) + `"}`} {
		if got, err := ParseAnswer([]byte(body)); err == nil {
			t.Errorf("%.40s: accepted as %q", body, got)
		}
	}
}

// FuzzReadVerified: whatever headers and body arrive, the receiving side
// answers a request or an error, and accepts only what was signed.
func FuzzReadVerified(f *testing.F) {
	f.Add([]byte(`{"tx_id":"1"}`), "1", int64(0), "v1=00")
	f.Add([]byte(`{"tx_id":"1"`), "", int64(-1), "")
	f.Fuzz(func(t *testing.T, body []byte, id string, skew int64, sig string) {
		now := time.Unix(1764600000, 0)
		r := httptest.NewRequest("POST", "/check", bytes.NewReader(body))
		r.Header.Set(HeaderTxID, id)
		r.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+skew, 10))
		r.Header.Set(HeaderSignature, sig)
		if _, err := ReadVerified(secret, r, now); err == nil && sig != Sign(secret, now.Unix()+skew, body) {
			t.Fatalf("accepted a signature it did not make: %q", sig)
		}
	})
}
