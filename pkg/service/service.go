// Package service is the shared start-up of every pushgw binary: common
// flags (each with a PUSHGW_* environment default), JSON logging with
// service and instance, the etcd connection (fail fast at start), and the
// admin listener serving /metrics, /healthz and /debug/pprof.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// Defaults shared by all services.
const (
	DefaultCluster   = "local"
	DefaultEtcd      = "127.0.0.1:2379"
	DefaultIDC       = "dc1"
	DefaultRedis     = "127.0.0.1:6379"
	DefaultMySQLDSN  = "root@tcp(127.0.0.1:3306)/pushgw?parseTime=true"
	shutdownDeadline = 10 * time.Second
)

// Common holds the flags every service has.
type Common struct {
	Cluster   string
	Instance  string
	Etcd      string
	AdminAddr string
	IDC       string
	LogLevel  string
}

// Env returns the environment variable PUSHGW_<NAME> or def.
func Env(name, def string) string {
	if v, ok := os.LookupEnv("PUSHGW_" + name); ok && v != "" {
		return v
	}
	return def
}

// EnvInt is Env for integers.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(Env(name, "")); err == nil {
		return v
	}
	return def
}

// EnvDuration is Env for durations.
func EnvDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(Env(name, "")); err == nil {
		return v
	}
	return def
}

// Bind registers the common flags on fs. adminDefault is the service's
// default admin address.
func (c *Common) Bind(fs *flag.FlagSet, svc, adminDefault string) {
	host, _ := os.Hostname()
	fs.StringVar(&c.Cluster, "cluster", Env("CLUSTER", DefaultCluster), "cluster name; etcd keys live under /pushgw/<cluster>/ (PUSHGW_CLUSTER)")
	fs.StringVar(&c.Instance, "instance", Env("INSTANCE", fmt.Sprintf("%s-%s-%d", svc, host, os.Getpid())), "instance id, unique per cluster (PUSHGW_INSTANCE)")
	fs.StringVar(&c.Etcd, "etcd", Env("ETCD", DefaultEtcd), "comma-separated etcd endpoints (PUSHGW_ETCD)")
	fs.StringVar(&c.AdminAddr, "admin", adminDefault, "admin listener for /metrics, /healthz, /debug/pprof; keep it on loopback")
	fs.StringVar(&c.IDC, "idc", Env("IDC", DefaultIDC), "IDC this instance runs in (PUSHGW_IDC)")
	fs.StringVar(&c.LogLevel, "log-level", Env("LOG_LEVEL", "info"), "debug, info, warn or error (PUSHGW_LOG_LEVEL)")
}

// Base is what Start gives a service.
type Base struct {
	Name     string
	Common   Common
	Log      *slog.Logger
	Etcd     *clientv3.Client
	Registry *prometheus.Registry

	admin   *http.Server
	healthy atomic.Bool
	// started is set once the service serves (Started): before that
	// /healthz answers 503 "starting", so a supervisor or a test harness
	// waiting on it does not send work to a saver still migrating.
	started atomic.Bool

	mu     sync.Mutex // guards checks: /healthz may be served while a service adds them
	checks []func(context.Context) error
}

// Start sets up logging, connects to etcd (returning an error if it does
// not answer) and starts the admin listener.
func Start(ctx context.Context, name string, c Common) (*Base, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", c.LogLevel, err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).
		With("service", name, "instance", c.Instance)
	b := &Base{Name: name, Common: c, Log: log, Registry: prometheus.NewRegistry()}
	b.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	cli, err := discovery.Connect(ctx, strings.Split(c.Etcd, ","), discovery.DefaultDialTimeout)
	if err != nil {
		return nil, fmt.Errorf("cannot start without etcd: %w", err)
	}
	b.Etcd = cli

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(b.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", b.serveHealth)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", c.AdminAddr)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("admin listener %s: %w", c.AdminAddr, err)
	}
	b.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := b.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener stopped", "err", err)
		}
	}()
	b.healthy.Store(true)
	log.Info("started", "admin", ln.Addr().String(), "etcd", c.Etcd, "cluster", c.Cluster, "idc", c.IDC)
	return b, nil
}

// AddCheck adds a health check run by /healthz.
func (b *Base) AddCheck(f func(context.Context) error) {
	b.mu.Lock()
	b.checks = append(b.checks, f)
	b.mu.Unlock()
}

// SetHealthy marks the instance healthy or not (e.g. while draining).
func (b *Base) SetHealthy(ok bool) { b.healthy.Store(ok) }

// Started marks the service as serving: ServeGRPC and ServeHTTP call it
// once registered in etcd; a service with listeners of its own (room)
// calls it when they are up.
func (b *Base) Started() { b.started.Store(true) }

func (b *Base) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !b.started.Load() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	if !b.healthy.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	b.mu.Lock()
	checks := append([]func(context.Context) error(nil), b.checks...)
	b.mu.Unlock()
	for _, check := range checks {
		if err := check(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// Close stops the admin listener and the etcd client.
func (b *Base) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	_ = b.admin.Shutdown(ctx)
	_ = b.Etcd.Close()
}

// SignalContext returns a context cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Fatal logs err and exits non-zero; for main functions.
func Fatal(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
