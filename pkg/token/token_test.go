package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func secrets(m map[string]string) func(string) ([]byte, bool) {
	return func(app string) ([]byte, bool) {
		s, ok := m[app]
		return []byte(s), ok
	}
}

func TestRoundTrip(t *testing.T) {
	sec := secrets(map[string]string{"demo": "0123456789abcdef0123"})
	tok, err := Mint([]byte("0123456789abcdef0123"), Claims{App: "demo", User: "alice", Device: "d1", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, sec, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.App != "demo" || c.User != "alice" || c.Device != "d1" {
		t.Fatalf("claims = %+v", c)
	}
}

func TestRejects(t *testing.T) {
	sec := secrets(map[string]string{"demo": "0123456789abcdef0123", "other": "fedcba9876543210fedc"})
	good := func(app, secret string, exp time.Duration) string {
		tok, err := Mint([]byte(secret), Claims{App: app, User: "u", Expiry: time.Now().Add(exp)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"expired", good("demo", "0123456789abcdef0123", -time.Hour), ErrExpired},
		{"wrong secret", good("demo", "fedcba9876543210fedc", time.Hour), ErrInvalid},
		{"unknown app", good("nope", "fedcba9876543210fedc", time.Hour), ErrUnknownApp},
		{"garbage", "not.a.token", ErrInvalid},
		{"empty", "", ErrInvalid},
		{"huge", strings.Repeat("a", MaxTokenLen+1), ErrInvalid},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhcHAiOiJkZW1vIiwic3ViIjoidSIsImV4cCI6OTk5OTk5OTk5OX0.", ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.tok, sec, time.Now())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJhcHAiOiJkZW1vIn0.x")
	f.Add("a.b.c")
	sec := secrets(map[string]string{"demo": "0123456789abcdef0123"})
	f.Fuzz(func(t *testing.T, tok string) {
		_, _ = Verify(tok, sec, time.Now())
	})
}
