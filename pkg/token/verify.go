package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"
)

// A token is verified here rather than with golang-jwt's parser, which
// decodes every header into a map[string]any and allocates a few KB per
// login; the room verifies one token per connection at up to tens of
// thousands of logins a second. Only what pushgw mints is accepted: three
// base64url parts, alg HS256, an expiry.

var b64 = base64.RawURLEncoding

// hs256Header is the header segment Mint (golang-jwt) writes,
// {"alg":"HS256","typ":"JWT"}: a token carrying it skips the header's JSON
// decode. Any other header is decoded and checked in full.
const hs256Header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// view returns s's bytes without copying them, for the read-only inputs of
// base64 decoding and the MAC (a copy of a 1–4 KB token per login was most
// of this package's garbage). The result must never be written.
func view(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// jwtHeader is the only part of the header that matters.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Crit []string `json:"crit"`
}

// wireClaims are the claims as they are encoded; numeric dates are JSON
// numbers of seconds (RFC 7519 §2), fractions allowed.
type wireClaims struct {
	App string   `json:"app"`
	Dev string   `json:"dev"`
	Sub string   `json:"sub"`
	Exp *float64 `json:"exp"`
	Nbf *float64 `json:"nbf"`
}

// Verify checks tok's signature with the secret of the app it names (looked
// up with secretOf), so a token is only ever valid for its own app, and its
// expiry against now.
func Verify(tok string, secretOf func(app string) ([]byte, bool), now time.Time) (Claims, error) {
	if len(tok) == 0 || len(tok) > MaxTokenLen {
		return Claims{}, fmt.Errorf("%w: length %d", ErrInvalid, len(tok))
	}
	h, rest, ok := strings.Cut(tok, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.IndexByte(sig, '.') >= 0 {
		return Claims{}, fmt.Errorf("%w: not three dot-separated parts", ErrInvalid)
	}
	if h != hs256Header {
		hbuf := make([]byte, b64.DecodedLen(len(h)))
		var hdr jwtHeader
		if err := decodeSegment(hbuf, h, &hdr); err != nil {
			return Claims{}, fmt.Errorf("%w: header: %v", ErrInvalid, err)
		}
		if hdr.Alg != "HS256" {
			return Claims{}, fmt.Errorf("%w: alg %q, want HS256", ErrInvalid, hdr.Alg)
		}
		if len(hdr.Crit) > 0 {
			return Claims{}, fmt.Errorf("%w: unsupported critical header parameters", ErrInvalid)
		}
	}
	var wc wireClaims
	if err := decodeClaims(p, &wc); err != nil {
		return Claims{}, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	secret, ok := secretOf(wc.App)
	if !ok {
		return Claims{}, fmt.Errorf("%w %q", ErrUnknownApp, wc.App)
	}
	var want, got [sha256.Size]byte
	if b64.DecodedLen(len(sig)) != sha256.Size {
		return Claims{}, fmt.Errorf("%w: signature length", ErrInvalid)
	}
	if n, err := b64.Decode(got[:], view(sig)); err != nil || n != sha256.Size {
		return Claims{}, fmt.Errorf("%w: signature encoding", ErrInvalid)
	}
	hs256(secret, view(tok[:len(h)+1+len(p)]), &want)
	if !hmac.Equal(want[:], got[:]) {
		return Claims{}, fmt.Errorf("%w: signature is invalid", ErrInvalid)
	}
	if wc.Exp == nil {
		return Claims{}, fmt.Errorf("%w: no expiry", ErrInvalid)
	}
	exp, ok := numericDate(*wc.Exp)
	if !ok {
		return Claims{}, fmt.Errorf("%w: bad expiry", ErrInvalid)
	}
	if !now.Before(exp.Add(Leeway)) {
		return Claims{}, ErrExpired
	}
	if wc.Nbf != nil {
		nbf, ok := numericDate(*wc.Nbf)
		if !ok || now.Add(Leeway).Before(nbf) {
			return Claims{}, fmt.Errorf("%w: not valid yet", ErrInvalid)
		}
	}
	if wc.Sub == "" || len(wc.Sub) > MaxUserLen || len(wc.Dev) > MaxDeviceLen {
		return Claims{}, fmt.Errorf("%w: bad subject or device", ErrInvalid)
	}
	return Claims{App: wc.App, User: wc.Sub, Device: wc.Dev, Expiry: exp}, nil
}

// decodeSegment base64url-decodes seg into scratch and JSON-decodes it
// into v (a struct: no generic maps).
func decodeSegment(scratch []byte, seg string, v any) error {
	if b64.DecodedLen(len(seg)) > len(scratch) {
		return fmt.Errorf("segment too long")
	}
	n, err := b64.Decode(scratch, view(seg))
	if err != nil {
		return err
	}
	js := scratch[:n]
	if len(bytes.TrimSpace(js)) == 0 || bytes.TrimSpace(js)[0] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	return json.Unmarshal(js, v)
}

// claimsScratch is the stack buffer the claims of a usual token decode
// into; a larger payload gets a heap buffer.
const claimsScratch = 512

// decodeClaims base64url-decodes the claims segment and reads it with
// parseClaimsFast, or with encoding/json when that declines.
func decodeClaims(seg string, wc *wireClaims) error {
	var stack [claimsScratch]byte
	if b64.DecodedLen(len(seg)) <= len(stack) {
		n, err := b64.Decode(stack[:], view(seg))
		if err == nil && parseClaimsFast(stack[:n], wc) {
			return nil
		}
	}
	// The slow path decodes again into a heap buffer: encoding/json may
	// keep what it is given, and a stack buffer must not escape.
	var slow wireClaims
	err := decodeSegment(make([]byte, b64.DecodedLen(len(seg))), seg, &slow)
	*wc = slow
	return err
}

// numericDate converts seconds since the epoch, rejecting values no real
// date has.
func numericDate(sec float64) (time.Time, bool) {
	if math.IsNaN(sec) || math.IsInf(sec, 0) || sec < 0 || sec > 1e11 {
		return time.Time{}, false
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)), true
}

// hs256 computes HMAC-SHA256 (RFC 2104) of msg under key into out. It is
// crypto/hmac's result (TestHS256MatchesHMAC) without its ≈450 B of
// per-call state: the pads live on the stack and only the two digests are
// allocated.
func hs256(key, msg []byte, out *[sha256.Size]byte) {
	const block = 64 // SHA-256's block size
	var k [sha256.Size]byte
	if len(key) > block {
		k = sha256.Sum256(key)
		key = k[:]
	}
	var ipad, opad [block]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	inner := sha256.New()
	inner.Write(ipad[:])
	inner.Write(msg)
	var sum [sha256.Size]byte
	inner.Sum(sum[:0])
	outer := sha256.New()
	outer.Write(opad[:])
	outer.Write(sum[:])
	outer.Sum(out[:0])
}
