package webhooksig

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event_id":"e1"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := Sign("s3cret", now.Unix(), body)
	if err := Verify("s3cret", ts, sig, body, now.Add(time.Minute), DefaultReplayWindow); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	cases := []struct {
		name, secret, ts, sig string
		body                  []byte
		at                    time.Time
		want                  error
	}{
		{"other secret", "other", ts, sig, body, now, ErrBadSignature},
		{"body changed", "s3cret", ts, sig, []byte(`{"event_id":"e2"}`), now, ErrBadSignature},
		{"timestamp changed", "s3cret", strconv.FormatInt(now.Unix()+1, 10), sig, body, now, ErrBadSignature},
		{"no prefix", "s3cret", ts, sig[len(SignaturePrefix):], body, now, ErrBadSignature},
		{"not hex", "s3cret", ts, "v1=zz", body, now, ErrBadSignature},
		{"timestamp not a number", "s3cret", "soon", sig, body, now, ErrBadTimestamp},
		{"replayed after the window", "s3cret", ts, sig, body, now.Add(DefaultReplayWindow + time.Second), ErrStale},
		{"from the future", "s3cret", ts, sig, body, now.Add(-DefaultReplayWindow - time.Second), ErrStale},
	}
	for _, c := range cases {
		if err := Verify(c.secret, c.ts, c.sig, c.body, c.at, DefaultReplayWindow); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzVerify: the headers are bytes from the network; Verify answers an
// error or nil, never panics, and accepts only what Sign produced.
func FuzzVerify(f *testing.F) {
	f.Add("1800000000", "v1=00", []byte("{}"))
	f.Add("-1", "v1=", []byte(""))
	f.Add("99999999999999999999", "zz", []byte("x"))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		err := Verify("k", ts, sig, body, now, DefaultReplayWindow)
		if err == nil && sig != Sign("k", mustInt(ts), body) {
			t.Fatalf("accepted a signature Sign would not make: ts=%q sig=%q", ts, sig)
		}
	})
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
