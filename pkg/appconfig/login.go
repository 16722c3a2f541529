package appconfig

import (
	"fmt"
	"strings"
)

// Login policies of an app (docs/protocol.md §4.3): what a new login of a
// user does to the same user's other sessions of the app.
const (
	// LoginMulti keeps every device online; only a second login of the
	// same device replaces the first. The default ("" means it too).
	LoginMulti = "multi"
	// LoginOnePerPlatform ends the user's older sessions of the same
	// platform (Auth.platform up to its first '/', case-insensitive).
	LoginOnePerPlatform = "one-per-platform"
	// LoginOne ends every older session of the user, on any device.
	LoginOne = "one"
)

// Login holds an app's connection-sharing and login settings, flattened
// into the app's JSON.
type Login struct {
	// Vendor groups apps that may share one client connection (BIND):
	// an app can be bound to a connection of another app only when both
	// name the same non-empty vendor.
	Vendor string `json:"vendor,omitempty"`
	// LoginPolicy is LoginMulti (or ""), LoginOnePerPlatform or LoginOne.
	LoginPolicy string `json:"login_policy,omitempty"`
}

// Validate checks the vendor's form and the policy's name.
func (l Login) Validate() error {
	if l.Vendor != "" && !ValidName(l.Vendor) {
		return fmt.Errorf("vendor %q: want 1-64 of [a-zA-Z0-9_.-]", l.Vendor)
	}
	switch l.LoginPolicy {
	case "", LoginMulti, LoginOnePerPlatform, LoginOne:
		return nil
	}
	return fmt.Errorf("login policy %q: want %s, %s or %s", l.LoginPolicy, LoginMulti, LoginOnePerPlatform, LoginOne)
}

// Policy returns the effective login policy (LoginMulti when unset).
func (l Login) Policy() string {
	if l.LoginPolicy == "" {
		return LoginMulti
	}
	return l.LoginPolicy
}

// SameVendor reports whether apps a and b may share a connection.
func SameVendor(a, b App) bool { return a.Vendor != "" && a.Vendor == b.Vendor }

// PlatformClass is the part of a free-form client platform ("ios/17.4")
// that LoginOnePerPlatform compares: up to the first '/', lower-cased.
func PlatformClass(platform string) string {
	if i := strings.IndexByte(platform, '/'); i >= 0 {
		platform = platform[:i]
	}
	return strings.ToLower(strings.TrimSpace(platform))
}
