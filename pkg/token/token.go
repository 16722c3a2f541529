// Package token mints and verifies client tokens: JWTs signed HS256 with the
// app's secret, carrying app, user (sub), optional device (dev) and expiry.
package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgw/pushgw/pkg/limits"
)

// Limits on what a token may carry.
const (
	MaxTokenLen  = 4096
	MaxUserLen   = limits.MaxUserLen
	MaxDeviceLen = limits.MaxDeviceLen
	// Leeway tolerates clock skew between the business backend and rooms.
	Leeway = 30 * time.Second
)

// Verification errors; callers map them to wire codes.
var (
	ErrInvalid    = errors.New("token: invalid")
	ErrExpired    = errors.New("token: expired")
	ErrUnknownApp = errors.New("token: unknown app")
)

// Claims is what a token says about its bearer.
type Claims struct {
	App    string
	User   string
	Device string
	Expiry time.Time
}

type jwtClaims struct {
	App    string `json:"app"`
	Device string `json:"dev,omitempty"`
	jwt.RegisteredClaims
}

// Mint signs c with secret.
func Mint(secret []byte, c Claims) (string, error) {
	if c.App == "" || c.User == "" {
		return "", fmt.Errorf("token: app and user are required")
	}
	if c.Expiry.IsZero() {
		return "", fmt.Errorf("token: expiry is required")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{
		App: c.App, Device: c.Device,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.User,
			IssuedAt:  jwt.NewNumericDate(time.Now()),
			ExpiresAt: jwt.NewNumericDate(c.Expiry),
		},
	})
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return s, nil
}
