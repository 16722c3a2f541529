package discovery

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watcher keeps an up-to-date view of one service's instances.
type Watcher struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger

	mu        sync.RWMutex
	instances map[string]Instance
	listeners []func([]Instance)
	// rev is the etcd revision the set reflects and etcdID the etcd
	// cluster it came from (revisions of two clusters do not compare).
	rev    int64
	etcdID uint64

	ready  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// Watch starts watching service in cluster. The first listing happens in
// the background; WaitReady blocks until it is in.
func Watch(cli *clientv3.Client, cluster, service string, log *slog.Logger) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		cli: cli, prefix: Prefix(cluster, service), log: log,
		instances: map[string]Instance{}, ready: make(chan struct{}),
		cancel: cancel, done: make(chan struct{}),
	}
	go w.run(ctx)
	return w
}

// WaitReady blocks until the first listing is done or ctx ends.
func (w *Watcher) WaitReady(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Instances returns the known instances sorted by id.
func (w *Watcher) Instances() []Instance {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]Instance, 0, len(w.instances))
	for _, in := range w.instances {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns one instance by id.
func (w *Watcher) Get(id string) (Instance, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	in, ok := w.instances[id]
	return in, ok
}

// Revision returns the etcd revision the current set reflects (0 before the
// first listing) and the id of the etcd cluster it was read from. It only
// grows while the cluster id stays the same, so readers can tell a newer set
// from an older one.
func (w *Watcher) Revision() (rev int64, etcdCluster uint64) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.rev, w.etcdID
}

// OnChange registers f to be called with the full set after every change
// (and once immediately with the current set).
func (w *Watcher) OnChange(f func([]Instance)) {
	w.mu.Lock()
	w.listeners = append(w.listeners, f)
	w.mu.Unlock()
	f(w.Instances())
}

func (w *Watcher) notify() {
	set := w.Instances()
	w.mu.RLock()
	ls := append([]func([]Instance){}, w.listeners...)
	w.mu.RUnlock()
	for _, f := range ls {
		f(set)
	}
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	wait := retryMin
	readyOnce := sync.Once{}
	for ctx.Err() == nil {
		rev, err := w.list(ctx)
		if err != nil {
			// Keep the last known set: peers we knew are likely still there.
			w.log.Warn("discovery: list failed; keeping last known peers", "prefix", w.prefix, "err", err)
			if !sleepCtx(ctx, wait) {
				return
			}
			wait = backoff(wait)
			continue
		}
		wait = retryMin
		readyOnce.Do(func() { close(w.ready) })
		w.notify()
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range w.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			w.mu.Lock()
			for _, ev := range resp.Events {
				w.rev = max(w.rev, ev.Kv.ModRevision)
				id := strings.TrimPrefix(string(ev.Kv.Key), w.prefix)
				if ev.Type == clientv3.EventTypeDelete {
					delete(w.instances, id)
					continue
				}
				if in, err := decode(ev.Kv.Value); err == nil {
					w.instances[id] = in
				}
			}
			w.mu.Unlock()
			w.notify()
		}
		wcancel()
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

func (w *Watcher) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, DefaultDialTimeout)
	defer cancel()
	resp, err := w.cli.Get(lctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	m := make(map[string]Instance, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if in, err := decode(kv.Value); err == nil {
			m[strings.TrimPrefix(string(kv.Key), w.prefix)] = in
		}
	}
	w.mu.Lock()
	w.instances = m
	if w.etcdID != resp.Header.ClusterId {
		w.rev = 0 // another etcd cluster: its revisions start afresh
	}
	w.rev = max(w.rev, resp.Header.Revision)
	w.etcdID = resp.Header.ClusterId
	w.mu.Unlock()
	return resp.Header.Revision, nil
}

// Close stops the watch.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}
