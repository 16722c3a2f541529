package main

import (
	"fmt"
	"time"

	"github.com/pushgw/pushgw/pkg/token"
)

const defaultTokenTTL = time.Hour

// token mints a client token, as a business backend would.
func (c cli) token(args []string) error {
	fs := c.flagSet("token")
	app := fs.String("app", "", "app name")
	user := fs.String("user", "", "user id")
	device := fs.String("device", "", "device id (optional)")
	ttl := fs.Duration("ttl", defaultTokenTTL, "token lifetime")
	secret := fs.String("secret", "", "app secret the token is signed with")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if err := require("app", *app, "user", *user, "secret", *secret); err != nil {
		return err
	}
	if *ttl <= 0 {
		return usageError{fmt.Errorf("--ttl must be positive")}
	}
	tok, err := mint(*secret, *app, *user, *device, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, tok)
	return nil
}

func mint(secret, app, user, device string, ttl time.Duration) (string, error) {
	return token.Mint([]byte(secret), token.Claims{App: app, User: user, Device: device, Expiry: time.Now().Add(ttl)})
}
