// Package appconfig holds per-app settings kept in etcd under
// /pushgw/<cluster>/config/apps/<app> (JSON App) and watched, so changes
// apply without restart.
package appconfig

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// App is one tenant of the cluster.
type App struct {
	Name string `json:"name"`
	// Secret signs client tokens (HS256). Never logged.
	Secret string `json:"secret"`
	// APIKey authenticates the business backend on center. Never logged.
	APIKey string `json:"api_key"`
	// WebhookURL receives client uplink data (coordinator).
	WebhookURL string `json:"webhook_url,omitempty"`
	Disabled   bool   `json:"disabled,omitempty"`
	TxCheck
	Callbacks // events posted to the webhook (events.go), flattened into the JSON
	Limits    // rate limits and pacing (limits.go), flattened into the JSON
	Login     // vendor and login policy (login.go), flattened into the JSON
}

// LogValue keeps secrets out of logs.
func (a App) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", a.Name), slog.Bool("disabled", a.Disabled))
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

// ValidName reports whether s may be an app name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks an App before it is stored.
func (a App) Validate() error {
	if !ValidName(a.Name) {
		return fmt.Errorf("appconfig: app name %q: want 1-64 of [a-zA-Z0-9_.-]", a.Name)
	}
	if len(a.Secret) < 16 {
		return fmt.Errorf("appconfig: app %s: secret must be at least 16 bytes", a.Name)
	}
	if len(a.APIKey) < 16 {
		return fmt.Errorf("appconfig: app %s: api key must be at least 16 bytes", a.Name)
	}
	if err := a.Limits.Validate(); err != nil {
		return fmt.Errorf("appconfig: app %s: %w", a.Name, err)
	}
	if err := a.ValidateTxCheck(); err != nil {
		return fmt.Errorf("appconfig: app %s: %w", a.Name, err)
	}
	if err := a.ValidateCallbacks(); err != nil {
		return fmt.Errorf("appconfig: app %s: %w", a.Name, err)
	}
	if err := a.Login.Validate(); err != nil {
		return fmt.Errorf("appconfig: app %s: %w", a.Name, err)
	}
	return nil
}

// Prefix returns the key prefix of app configs.
func Prefix(cluster string) string { return "/pushgw/" + cluster + "/config/apps/" }

// Put stores an app config.
func Put(ctx context.Context, cli *clientv3.Client, cluster string, a App) error {
	if err := a.Validate(); err != nil {
		return err
	}
	b, _ := json.Marshal(a)
	if _, err := cli.Put(ctx, Prefix(cluster)+a.Name, string(b)); err != nil {
		return fmt.Errorf("appconfig: put %s: %w", a.Name, err)
	}
	return nil
}

// Store is a watched, in-memory copy of all app configs.
type Store struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger

	mu    sync.RWMutex
	apps  map[string]App
	byKey map[[32]byte]string // sha256(api key) -> app name

	cancel context.CancelFunc
	done   chan struct{}
}

// Load lists app configs (must succeed within ctx) and keeps watching them.
func Load(ctx context.Context, cli *clientv3.Client, cluster string, log *slog.Logger) (*Store, error) {
	s := &Store{cli: cli, prefix: Prefix(cluster), log: log, done: make(chan struct{})}
	rev, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watch(runCtx, rev)
	return s, nil
}

func (s *Store) list(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("appconfig: list %s: %w", s.prefix, err)
	}
	m := make(map[string]App, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var a App
		if err := json.Unmarshal(kv.Value, &a); err != nil || a.Name == "" {
			s.log.Warn("appconfig: skipping malformed app config", "key", string(kv.Key))
			continue
		}
		m[a.Name] = a
	}
	s.mu.Lock()
	s.apps = m
	s.reindexLocked()
	s.mu.Unlock()
	return resp.Header.Revision, nil
}

func (s *Store) watch(ctx context.Context, rev int64) {
	defer close(s.done)
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			s.mu.Lock()
			for _, ev := range resp.Events {
				name := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
				if ev.Type == clientv3.EventTypeDelete {
					delete(s.apps, name)
					continue
				}
				var a App
				if err := json.Unmarshal(ev.Kv.Value, &a); err == nil && a.Name != "" {
					s.apps[a.Name] = a
				}
			}
			s.reindexLocked()
			s.mu.Unlock()
			rev = resp.Header.Revision
		}
		cancel()
		// Watch broke (etcd gone or compacted): keep serving what we have and
		// re-list when etcd answers again.
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
			r, err := s.list(lctx)
			lcancel()
			if err == nil {
				rev = r
				break
			}
		}
	}
}

// Get returns the config of app; disabled apps are reported as absent.
func (s *Store) Get(app string) (App, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.apps[app]
	if !ok || a.Disabled {
		return App{}, false
	}
	return a, true
}

// Secret returns the token secret of app (for token verification).
func (s *Store) Secret(app string) ([]byte, bool) {
	a, ok := s.Get(app)
	if !ok {
		return nil, false
	}
	return []byte(a.Secret), true
}

// CheckAPIKey reports whether key is app's API key, in constant time.
func (s *Store) CheckAPIKey(app, key string) bool {
	a, ok := s.Get(app)
	if !ok || key == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a.APIKey), []byte(key)) == 1
}

func (s *Store) reindexLocked() {
	s.byKey = make(map[[32]byte]string, len(s.apps))
	for _, a := range s.apps {
		if a.APIKey != "" {
			s.byKey[sha256.Sum256([]byte(a.APIKey))] = a.Name
		}
	}
}

// ByAPIKey returns the app whose API key is key. Keys are looked up by their
// SHA-256, so the time taken does not reveal how much of a key matched.
func (s *Store) ByAPIKey(key string) (App, bool) {
	if key == "" {
		return App{}, false
	}
	s.mu.RLock()
	name, ok := s.byKey[sha256.Sum256([]byte(key))]
	s.mu.RUnlock()
	if !ok {
		return App{}, false
	}
	a, ok := s.Get(name)
	if !ok || subtle.ConstantTimeCompare([]byte(a.APIKey), []byte(key)) != 1 {
		return App{}, false
	}
	return a, true
}

// Names returns the names of all enabled apps.
func (s *Store) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.apps))
	for n, a := range s.apps {
		if !a.Disabled {
			out = append(out, n)
		}
	}
	return out
}

// Close stops the watch.
func (s *Store) Close() {
	s.cancel()
	<-s.done
}
