package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
)

// appSetting is one setting `pushctl app set` can change. Adding one is
// one line in appSettings.
type appSetting struct {
	flag, usage string
	// apply parses the flag's text into the app.
	apply func(a *appconfig.App, v string) error
}

func intSetting(name, usage string, field func(*appconfig.App) *int) appSetting {
	return appSetting{flag: name, usage: usage, apply: func(a *appconfig.App, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > appconfig.MaxLimit {
			return fmt.Errorf("--%s %q: want a whole number 0..%d", name, v, appconfig.MaxLimit)
		}
		*field(a) = n
		return nil
	}}
}

func stringSetting(name, usage string, field func(*appconfig.App) *string) appSetting {
	return appSetting{flag: name, usage: usage, apply: func(a *appconfig.App, v string) error {
		*field(a) = v
		return nil
	}}
}

// msSetting takes a Go duration ("6s") and stores milliseconds.
func msSetting(name, usage string, field func(*appconfig.App) *int64) appSetting {
	return appSetting{flag: name, usage: usage, apply: func(a *appconfig.App, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("--%s %q: want a duration such as 6s or 500ms", name, v)
		}
		*field(a) = d.Milliseconds()
		return nil
	}}
}

var appSettings = []appSetting{
	intSetting("push-rate", "POST /v1/push requests per second across all centers (0: unlimited)", func(a *appconfig.App) *int { return &a.PushRate }),
	intSetting("push-burst", "pushes admitted back to back (0: the rate)", func(a *appconfig.App) *int { return &a.PushBurst }),
	intSetting("multi-rate", "multicast recipients per second (0: unlimited)", func(a *appconfig.App) *int { return &a.MultiRate }),
	intSetting("multi-burst", "multicast recipients back to back, and the most one request may name (0: the rate)", func(a *appconfig.App) *int { return &a.MultiBurst }),
	intSetting("broadcast-rate", "POST /v1/broadcast requests per second (0: unlimited)", func(a *appconfig.App) *int { return &a.BroadcastRate }),
	intSetting("broadcast-burst", "broadcasts admitted back to back (0: the rate)", func(a *appconfig.App) *int { return &a.BroadcastBurst }),
	intSetting("deliveries-per-second", "pace of large sends (multicast, broadcast) across the cluster (0: unpaced)", func(a *appconfig.App) *int { return &a.DeliveriesPerSecond }),
	stringSetting("webhook", "URL receiving client uplink data (\"\" removes it)", func(a *appconfig.App) *string { return &a.WebhookURL }),
	stringSetting("check-url", "URL answering transactional check-backs (docs/TRANSACTIONS.md; \"\" removes it)", func(a *appconfig.App) *string { return &a.CheckURL }),
	msSetting("check-first", "delay from prepare to the first check-back, e.g. 6s (0: the default)", func(a *appconfig.App) *int64 { return &a.CheckFirstMs }),
	msSetting("check-interval", "delay between check-backs, e.g. 30s (0: the default)", func(a *appconfig.App) *int64 { return &a.CheckIntervalMs }),
	stringSetting("vendor", "vendor whose apps may share one client connection with BIND (\"\" removes it)", func(a *appconfig.App) *string { return &a.Vendor }),
	stringSetting("login-policy", "what a new login does to the user's other sessions: multi, one-per-platform or one (docs/protocol.md §4.3)", func(a *appconfig.App) *string { return &a.LoginPolicy }),
	intSetting("check-max", "check-backs before an undecided transaction is rolled back (0: the default 15)", func(a *appconfig.App) *int { return &a.CheckMax }),
	eventsSetting,
	intSetting("webhook-batch", "events per webhook POST, sent as {\"events\":[…]} when above 1 (0: one event per POST)", func(a *appconfig.App) *int { return &a.WebhookBatch }),
}

// pendingValue keeps a setting's flag text until the app is read.
type pendingValue struct{ s string }

func (p *pendingValue) String() string     { return p.s }
func (p *pendingValue) Set(v string) error { p.s = v; return nil }

// appSet changes only the settings named on the command line, live: every
// service watches the app's key. Settings are never taken from the
// environment (a stray $PUSHGW_WEBHOOK_URL must not rewrite an app), and
// the write is a compare-and-swap on the key's revision, so two operators
// editing different settings at once both land.
func (c cli) appSet(ctx context.Context, args []string) error {
	fs := c.flagSet("app set")
	name := fs.String("name", "", "app name")
	etcd := fs.String("etcd", defaultEtcd, "comma-separated etcd endpoints")
	cluster := fs.String("cluster", defaultCluster, "cluster name")
	values := map[string]*pendingValue{}
	for _, s := range appSettings {
		v := &pendingValue{}
		values[s.flag] = v
		fs.Var(v, s.flag, s.usage+"; command line only")
	}
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", pos[0])}
	}
	if err := require("name", *name); err != nil {
		return err
	}
	var changes []appSetting
	fs.Visit(func(f *flag.Flag) {
		for _, s := range appSettings {
			if s.flag == f.Name {
				changes = append(changes, s)
			}
		}
	})
	if len(changes) == 0 {
		names := make([]string, len(appSettings))
		for i, s := range appSettings {
			names[i] = "--" + s.flag
		}
		sort.Strings(names)
		return usageError{fmt.Errorf("name at least one setting to change: %s", strings.Join(names, " "))}
	}
	// Parse errors are usage errors, found before etcd is asked.
	if err := applySettings(&appconfig.App{}, changes, values); err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	cli, err := discovery.Connect(ctx, strings.Split(*etcd, ","), etcdTimeout)
	if err != nil {
		return err
	}
	defer cli.Close()
	a, err := appconfig.Update(ctx, cli, *cluster, *name, func(a *appconfig.App) error {
		return applySettings(a, changes, values)
	})
	if err != nil {
		return err
	}
	shown, _ := json.Marshal(struct {
		appconfig.Limits
		appconfig.TxCheck
		appconfig.Callbacks
		appconfig.Login
		WebhookURL string `json:"webhook_url,omitempty"`
	}{a.Limits, a.TxCheck, a.Callbacks, a.Login, a.WebhookURL})
	fmt.Fprintf(c.stdout, "app %s updated in cluster %s: %s\n", a.Name, *cluster, shown)
	return nil
}

func applySettings(a *appconfig.App, changes []appSetting, values map[string]*pendingValue) error {
	for _, s := range changes {
		if err := s.apply(a, values[s.flag].s); err != nil {
			return err
		}
	}
	return nil
}
