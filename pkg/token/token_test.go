package token

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// verifyWithLib is the golang-jwt verification Verify replaced, kept as
// the reference the fuzz target compares against.
func verifyWithLib(tok string, secretOf func(string) ([]byte, bool), now time.Time) (Claims, error) {
	if len(tok) == 0 || len(tok) > MaxTokenLen {
		return Claims{}, ErrInvalid
	}
	var jc jwtClaims
	var appErr error
	_, err := jwt.ParseWithClaims(tok, &jc, func(t *jwt.Token) (any, error) {
		secret, ok := secretOf(t.Claims.(*jwtClaims).App)
		if !ok {
			appErr = ErrUnknownApp
			return nil, appErr
		}
		return secret, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case appErr != nil:
		return Claims{}, appErr
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrExpired
	case err != nil:
		return Claims{}, ErrInvalid
	}
	if jc.Subject == "" || len(jc.Subject) > MaxUserLen || len(jc.Device) > MaxDeviceLen {
		return Claims{}, ErrInvalid
	}
	return Claims{App: jc.App, User: jc.Subject, Device: jc.Device}, nil
}

const fuzzSecret = "0123456789abcdef0123"

// FuzzVerify feeds Verify arbitrary tokens and mutations of valid ones; it
// must agree with golang-jwt on accepting a token and on its claims.
func FuzzVerify(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJhcHAiOiJkZW1vIn0.x")
	f.Add("a.b.c")
	for _, c := range []Claims{
		{App: "demo", User: "alice", Device: "d1", Expiry: time.Unix(4102444800, 0)},
		{App: "demo", User: "bob", Expiry: time.Unix(1, 0)},
	} {
		tok, err := Mint([]byte(fuzzSecret), c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	sec := secrets(map[string]string{"demo": fuzzSecret})
	now := time.Unix(1900000000, 0)
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := Verify(tok, sec, now)
		want, werr := verifyWithLib(tok, sec, now)
		if (err == nil) != (werr == nil) {
			t.Fatalf("Verify err %v, golang-jwt err %v", err, werr)
		}
		if err == nil && (got.App != want.App || got.User != want.User || got.Device != want.Device) {
			t.Fatalf("claims %+v, golang-jwt %+v", got, want)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	sec := secrets(map[string]string{"demo": fuzzSecret})
	tok, _ := Mint([]byte(fuzzSecret), Claims{App: "demo", User: "user-123456", Device: "phone", Expiry: time.Now().Add(time.Hour)})
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Verify(tok, sec, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("golang-jwt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := verifyWithLib(tok, sec, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
