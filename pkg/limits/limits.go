// Package limits holds the identifier limits every service agrees on, so a
// user id the API accepts is one register, saver and tokens accept too.
package limits

import "fmt"

// Identifier sizes in bytes.
const (
	MaxAppLen    = 64 // app names are also restricted to [A-Za-z0-9_.-] (pkg/appconfig)
	MaxUserLen   = 128
	MaxDeviceLen = 128
)

// CheckUser validates an (app, user) pair.
func CheckUser(app, user string) error {
	switch {
	case app == "":
		return fmt.Errorf("empty app")
	case user == "":
		return fmt.Errorf("empty user")
	case len(app) > MaxAppLen:
		return fmt.Errorf("app longer than %d bytes", MaxAppLen)
	case len(user) > MaxUserLen:
		return fmt.Errorf("user longer than %d bytes", MaxUserLen)
	}
	return nil
}

// CheckDevice validates a device id; empty is allowed (one anonymous device).
func CheckDevice(device string) error {
	if len(device) > MaxDeviceLen {
		return fmt.Errorf("device longer than %d bytes", MaxDeviceLen)
	}
	return nil
}
