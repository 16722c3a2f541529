package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Admission config watch timing.
const (
	admissionLoadTimeout = 3 * time.Second
	admissionRelistEvery = time.Second
)

// admissionKey is where the room's admission rules live, beside the apps
// under the cluster's config prefix.
func admissionKey(cluster string) string { return "/pushgw/" + cluster + "/config/room/admission" }

// admissionWatch keeps a room's admission rules in step with etcd.
type admissionWatch struct {
	cli    *clientv3.Client
	key    string
	a      *admission
	log    *slog.Logger
	bad    func()
	cancel context.CancelFunc
	done   chan struct{}
}

// watchAdmission loads the rules (an absent key admits everyone; etcd down
// at start leaves that default until it answers) and keeps watching.
func watchAdmission(cli *clientv3.Client, cluster string, a *admission, log *slog.Logger, bad func()) *admissionWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &admissionWatch{cli: cli, key: admissionKey(cluster), a: a, log: log, bad: bad, cancel: cancel, done: make(chan struct{})}
	lctx, lcancel := context.WithTimeout(ctx, admissionLoadTimeout)
	rev, err := w.load(lctx)
	lcancel()
	if err != nil {
		log.Warn("room: admission rules not loaded; admitting everyone until etcd answers", "err", err)
	}
	go w.run(ctx, rev, err == nil)
	return w
}

func (w *admissionWatch) load(ctx context.Context) (int64, error) {
	resp, err := w.cli.Get(ctx, w.key)
	if err != nil {
		return 0, fmt.Errorf("room: get %s: %w", w.key, err)
	}
	if len(resp.Kvs) == 0 {
		w.a.set(&admissionRules{})
	} else {
		w.apply(resp.Kvs[0].Value)
	}
	return resp.Header.Revision, nil
}

// apply installs raw rules, or keeps the current ones when raw is bad.
func (w *admissionWatch) apply(raw []byte) {
	r, err := parseAdmission(raw)
	if err != nil {
		w.bad()
		w.log.Error("room: admission config rejected; keeping the previous rules", "key", w.key, "err", err)
		return
	}
	w.a.set(r)
	w.log.Info("room: admission rules applied", "allow", len(r.allow), "deny", len(r.deny), "connect_interval_ns", r.rate.interval)
}

func (w *admissionWatch) run(ctx context.Context, rev int64, listed bool) {
	defer close(w.done)
	for ctx.Err() == nil {
		if listed {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for resp := range w.cli.Watch(wctx, w.key, clientv3.WithRev(rev+1)) {
				if resp.Err() != nil {
					break
				}
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypeDelete {
						w.a.set(&admissionRules{})
						w.log.Info("room: admission rules removed; admitting everyone")
						continue
					}
					w.apply(ev.Kv.Value)
				}
				rev = resp.Header.Revision
			}
			cancel()
		}
		// The watch broke or never started: keep the rules we have and
		// re-read when etcd answers.
		select {
		case <-ctx.Done():
			return
		case <-time.After(admissionRelistEvery):
		}
		lctx, lcancel := context.WithTimeout(ctx, admissionLoadTimeout)
		r, err := w.load(lctx)
		lcancel()
		if listed = err == nil; listed {
			rev = r
		}
	}
}

// Close stops watching.
func (w *admissionWatch) Close() {
	w.cancel()
	<-w.done
}
