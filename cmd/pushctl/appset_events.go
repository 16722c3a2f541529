package main

import (
	"fmt"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// eventsSetting is `app set --events receipts,online,offline` (or "none"):
// the callbacks and receipts posted to the app's webhook.
var eventsSetting = appSetting{
	flag:  "events",
	usage: "events posted to the webhook: a comma-separated list of receipts,online,offline, or none",
	apply: func(a *appconfig.App, v string) error {
		evs, err := appconfig.ParseEvents(v)
		if err != nil {
			return fmt.Errorf("--events: %w", err)
		}
		a.Events = evs
		return nil
	},
}
