// Package test holds pushgw's black-box integration tests and the helper
// that runs a real cluster for them: every service as its own process on
// free loopback ports, against the real Redis, MariaDB and etcd, with its
// own Redis DB, MySQL database and etcd cluster prefix so it never touches
// what `make run` started.
package test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/internal/etcdtest"
	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
)

// Environment of the shared servers; override with PUSHGW_TEST_*.
var (
	etcdAddr = envOr("PUSHGW_TEST_ETCD", "127.0.0.1:2379")
	// redisAddr empty: every cluster runs its own redis-server, so tests
	// of parallel runs never flush each other's data.
	redisAddr  = os.Getenv("PUSHGW_TEST_REDIS")
	mysqlRoot  = envOr("PUSHGW_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/")
	redisDB, _ = strconv.Atoi(envOr("PUSHGW_TEST_REDIS_DB", "12"))
)

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 15 * time.Second
	// healthPoll is the gap between /healthz polls of a starting process.
	healthPoll = 50 * time.Millisecond
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Options tune a cluster.
type Options struct {
	Rooms     int           // default 2
	Heartbeat time.Duration // room heartbeat; default 1s
	// MissedBeats before a silent connection is closed; default 2.
	MissedBeats  int
	MaxDelivery  int // saver -max-deliveries; default 10
	SweepEvery   time.Duration
	ExtraRoomArg []string
	// ExtraCenterArg are extra flags for every center.
	ExtraCenterArg []string
	// ExtraCoordinatorArg are extra flags for the coordinator.
	ExtraCoordinatorArg []string
	// PrivateEtcd runs the cluster against its own etcd process (Cluster.EtcdServer),
	// for tests that stop and restart etcd.
	PrivateEtcd bool
	// EtcdCluster runs the cluster against its own 3-member etcd
	// (Cluster.EtcdCluster); every service gets all three endpoints.
	EtcdCluster bool
	// Centers is how many center processes run; default 1. The first is
	// "center", the others "center-2", "center-3"…
	Centers int
	// RedisAddr and MySQLRoot point the cluster at other servers than the
	// shared ones (a private redis-server or mariadbd a fault test may
	// kill); MySQLRoot is a DSN prefix like "root@tcp(127.0.0.1:3306)/".
	RedisAddr string
	MySQLRoot string
	// RedisCluster runs the cluster on a private 3-master Redis Cluster
	// (Cluster.RedisCluster) instead of one redis-server; the environment
	// PUSHGW_TEST_REDIS_CLUSTER=1 turns it on for every test that leaves
	// RedisAddr empty (make test-redis-cluster).
	RedisCluster bool
}

// Proc is one service process.
type Proc struct {
	Name  string
	Bin   string
	Args  []string
	Admin string
	Log   string

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed once cmd was waited for; stop watches it instead
	// of cmd.ProcessState, which the waiting goroutine writes (a data
	// race under -race).
	exited chan struct{}
}

// Cluster is a running pushgw cluster.
type Cluster struct {
	t       testing.TB
	binDir  string
	dir     string
	Name    string // etcd cluster name
	RedisDB int
	MySQL   string // database name
	DSN     string

	Etcd       string           // etcd endpoint the cluster uses
	EtcdServer *etcdtest.Server // set with Options.PrivateEtcd
	// EtcdCluster is set with Options.EtcdCluster; Etcd then lists every
	// member, comma-separated, as the -etcd flag does.
	EtcdCluster *etcdtest.Cluster
	RedisAddr   string // Redis the cluster uses (-redis: comma-separated nodes for a Redis Cluster)
	// RedisCluster is set with Options.RedisCluster.
	RedisCluster *redistest.Cluster
	mysqlRoot    string

	App, Secret, APIKey string
	OtherApp            appconfig.App

	CenterURL     string   // the first center
	CenterURLs    []string // every center, by index
	CenterGRPC    []string // every center's -grpc-api address, by index
	DispatcherURL string
	RoomTCP       []string // client endpoints of the rooms, by index
	Procs         map[string]*Proc
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildBinaries compiles every service and pushctl once per test binary.
func buildBinaries() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pushgw-bin-")
		if err != nil {
			buildErr = err
			return
		}
		args := []string{"build", "-o", dir + "/"}
		if os.Getenv("PUSHGW_TEST_RACE") == "1" {
			args = append(args, "-race")
		}
		args = append(args, "./services/...", "./cmd/pushctl")
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		buildDir = dir
	})
	return buildDir, buildErr
}

func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FreePort returns a loopback address with a port that was free a moment
// ago and was not handed out before in this process (to this package or
// to the private etcd, Redis and MariaDB servers of internal/*test).
func FreePort(t testing.TB) string {
	t.Helper()
	return freeport.Addr(t)
}

// StartCluster starts a cluster and stops it when the test ends.
func StartCluster(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Rooms == 0 {
		o.Rooms = 2
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = time.Second
	}
	if o.MissedBeats == 0 {
		o.MissedBeats = 2
	}
	if o.MaxDelivery == 0 {
		o.MaxDelivery = 10
	}
	if o.SweepEvery == 0 {
		o.SweepEvery = time.Second
	}
	if o.Centers == 0 {
		o.Centers = 1
	}
	if o.RedisAddr == "" && !o.RedisCluster {
		o.RedisAddr = redisAddr
	}
	if o.RedisAddr == "" && os.Getenv("PUSHGW_TEST_REDIS_CLUSTER") == "1" {
		o.RedisCluster = true
	}
	var rc *redistest.Cluster
	if o.RedisCluster && o.RedisAddr == "" {
		rc = redistest.StartCluster(t)
		o.RedisAddr = rc.Addrs()
	}
	if o.RedisAddr == "" {
		o.RedisAddr = redistest.Start(t).Addr()
	}
	if o.MySQLRoot == "" {
		o.MySQLRoot = mysqlRoot
	}
	bin, err := buildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	suffix := randHex(4)
	c := &Cluster{
		t: t, binDir: bin, dir: t.TempDir(),
		Name: "test-" + suffix, RedisDB: redisDB, MySQL: "pushgw_test_" + suffix,
		App: "app-" + suffix, Secret: randHex(16), APIKey: randHex(16),
		Procs: map[string]*Proc{}, Etcd: etcdAddr, RedisAddr: o.RedisAddr, mysqlRoot: o.MySQLRoot,
		RedisCluster: rc,
	}
	if rc != nil || strings.Contains(o.RedisAddr, ",") {
		c.RedisDB = 0 // a Redis Cluster has only database 0
	}
	if o.PrivateEtcd {
		c.EtcdServer = etcdtest.Start(t)
		c.Etcd = c.EtcdServer.Endpoint()
	}
	if o.EtcdCluster {
		c.EtcdCluster = etcdtest.StartCluster(t, 3)
		c.Etcd = c.EtcdCluster.Endpoints()
	}
	c.OtherApp = appconfig.App{Name: "other-" + suffix, Secret: randHex(16), APIKey: randHex(16)}
	c.DSN = strings.TrimSuffix(c.mysqlRoot, "/") + "/" + c.MySQL + "?parseTime=true"
	t.Cleanup(c.cleanup)

	c.flushRedis()
	c.seedApps()

	common := func(name string) []string {
		return []string{"-cluster", c.Name, "-etcd", c.Etcd, "-instance", name, "-log-level", "debug"}
	}
	redisArgs := []string{"-redis", c.RedisAddr, "-redis-db", strconv.Itoa(c.RedisDB)}

	add := func(name, bin, admin string, args ...string) {
		c.Procs[name] = &Proc{Name: name, Bin: filepath.Join(c.binDir, bin), Admin: admin,
			Args: append(append(common(name), "-admin", admin), args...), Log: filepath.Join(c.dir, name+".log")}
	}
	add("register", "register", FreePort(t), append([]string{"-grpc", FreePort(t), "-session-ttl", "30s"}, redisArgs...)...)
	add("saver", "saver", FreePort(t), append([]string{"-grpc", FreePort(t), "-mysql", c.DSN,
		"-max-deliveries", strconv.Itoa(o.MaxDelivery), "-sweep-interval", o.SweepEvery.String()}, redisArgs...)...)
	add("coordinator", "coordinator", FreePort(t), append([]string{"-grpc", FreePort(t)}, o.ExtraCoordinatorArg...)...)
	for i := 0; i < o.Centers; i++ {
		center := FreePort(t)
		c.CenterURLs = append(c.CenterURLs, "http://"+center)
		grpcAPI := FreePort(t)
		c.CenterGRPC = append(c.CenterGRPC, grpcAPI)
		add(CenterName(i), "center", FreePort(t), append(append([]string{"-http", center, "-grpc-api", grpcAPI}, redisArgs...), o.ExtraCenterArg...)...)
	}
	c.CenterURL = c.CenterURLs[0]
	disp := FreePort(t)
	c.DispatcherURL = "http://" + disp
	add("dispatcher", "dispatcher", FreePort(t), "-http", disp)
	for i := 0; i < o.Rooms; i++ {
		tcp := FreePort(t)
		c.RoomTCP = append(c.RoomTCP, tcp)
		args := []string{"-tcp", tcp, "-grpc", FreePort(t),
			"-heartbeat", o.Heartbeat.String(), "-missed-beats", strconv.Itoa(o.MissedBeats),
			"-auth-timeout", "2s", "-session-refresh", "5s"}
		add(RoomName(i), "room", FreePort(t), append(args, o.ExtraRoomArg...)...)
	}
	// Storage first, so center and rooms find their peers at once; the
	// processes of one wave start together (they find each other through
	// etcd), which saves a health wait per process.
	for _, wave := range c.waves(o) {
		c.StartAll(wave...)
	}
	c.WaitInstances(discovery.ServiceRoom, o.Rooms)
	return c
}

// waves lists the processes in start order: storage and the coordinator,
// then the centers, then the dispatcher and the rooms. Stopping goes the
// other way round, so a room still finds register and saver to flush its
// session deletes and events to while it drains.
func (c *Cluster) waves(o Options) [][]string {
	var centers, edge []string
	for i := 0; i < o.Centers; i++ {
		centers = append(centers, CenterName(i))
	}
	edge = append(edge, "dispatcher")
	for i := 0; i < o.Rooms; i++ {
		edge = append(edge, RoomName(i))
	}
	return [][]string{{"register", "saver", "coordinator"}, centers, edge}
}

// CenterName is the process name of center i: "center" for the first, so
// single-center tests read naturally.
func CenterName(i int) string {
	if i == 0 {
		return "center"
	}
	return "center-" + strconv.Itoa(i+1)
}

// RoomName is the process name of room i.
func RoomName(i int) string { return "room-" + strconv.Itoa(i+1) }

func (c *Cluster) flushRedis() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.ForEachRedis(ctx, func(ctx context.Context, rdb *redis.Client) error { return rdb.FlushDB(ctx).Err() })
	if err != nil {
		c.t.Fatalf("redis flushdb %d: %v", c.RedisDB, err)
	}
}

func (c *Cluster) seedApps() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, c.EtcdEndpoints(), 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	for _, a := range []appconfig.App{{Name: c.App, Secret: c.Secret, APIKey: c.APIKey}, c.OtherApp} {
		if err := appconfig.Put(ctx, cli, c.Name, a); err != nil {
			c.t.Fatal(err)
		}
	}
}

// Start starts (or restarts) a process and waits until /healthz answers.
func (c *Cluster) Start(name string) {
	c.t.Helper()
	c.StartAll(name)
}

// StartAll starts (or restarts) the named processes together and waits
// until every one's /healthz answers.
func (c *Cluster) StartAll(names ...string) {
	c.t.Helper()
	exited := make([]chan struct{}, len(names))
	for i, name := range names {
		exited[i] = c.launch(name)
	}
	deadline := time.Now().Add(startTimeout)
	for i, name := range names {
		c.waitHealthy(name, exited[i], deadline)
	}
}

// launch starts a process without waiting for it; the returned channel is
// closed when it exits.
func (c *Cluster) launch(name string) chan struct{} {
	c.t.Helper()
	p := c.Procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", name, err)
	}
	p.cmd = cmd
	exited := make(chan struct{})
	p.exited = exited
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	return exited
}

// waitHealthy polls a launched process's /healthz until it answers 200,
// the process exits or the deadline passes.
func (c *Cluster) waitHealthy(name string, exited chan struct{}, deadline time.Time) {
	c.t.Helper()
	p := c.Procs[name]
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			c.t.Fatalf("%s exited at start:\n%s", name, c.Tail(name, 30))
		default:
		}
		resp, err := http.Get("http://" + p.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(healthPoll)
	}
	c.t.Fatalf("%s not healthy within %v:\n%s", name, startTimeout, c.Tail(name, 30))
}

// Signal sends sig to a process.
func (c *Cluster) Signal(name string, sig syscall.Signal) {
	p := c.Procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Kill kills a process with SIGKILL and waits for it to be gone.
func (c *Cluster) Kill(name string) { c.stop(name, syscall.SIGKILL) }

// Stop sends SIGTERM and waits for a graceful exit.
func (c *Cluster) Stop(name string) { c.stop(name, syscall.SIGTERM) }

func (c *Cluster) stop(name string, sig syscall.Signal) { c.stopAll(sig, name) }

// stopAll signals the named processes together and waits for each to exit,
// killing any still running stopTimeout after the signal.
func (c *Cluster) stopAll(sig syscall.Signal, names ...string) {
	type running struct {
		name   string
		cmd    *exec.Cmd
		exited chan struct{}
	}
	var procs []running
	for _, name := range names {
		p := c.Procs[name]
		p.mu.Lock()
		cmd, exited := p.cmd, p.exited
		p.cmd = nil
		p.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		_ = cmd.Process.Signal(sig)
		procs = append(procs, running{name, cmd, exited})
	}
	deadline := time.NewTimer(stopTimeout)
	defer deadline.Stop()
	for _, r := range procs {
		select {
		case <-r.exited:
			continue
		case <-deadline.C:
		}
		// The deadline fired: every process still running is killed.
		for _, r := range procs {
			select {
			case <-r.exited:
			default:
				c.t.Errorf("%s did not exit %v after %v; killing", r.name, sig, stopTimeout)
				_ = r.cmd.Process.Kill()
			}
		}
		return
	}
}

// Tail returns the last n lines of a process's log.
func (c *Cluster) Tail(name string, n int) string {
	b, _ := os.ReadFile(c.Procs[name].Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitInstances waits until etcd lists n instances of service.
func (c *Cluster) WaitInstances(service string, n int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cli, err := discovery.Connect(ctx, c.EtcdEndpoints(), 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, discovery.Prefix(c.Name, service), clientWithPrefix()...)
		if err == nil && len(resp.Kvs) == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("etcd did not list %d %s instances within %v", n, service, startTimeout)
}

// DB opens the cluster's MySQL database.
func (c *Cluster) DB() *sql.DB {
	db, err := sql.Open("mysql", c.DSN)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { db.Close() })
	return db
}

// Redis opens the cluster's Redis DB: a cluster client on a Redis Cluster.
// Commands on keys go to the right node; SCAN, FLUSHDB and the like reach
// one node only, so use ForEachRedis for those.
func (c *Cluster) Redis() redis.UniversalClient {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(c.RedisAddr, ","), DB: c.RedisDB})
	c.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// ForEachRedis runs fn on the one server, or on every master of a Redis
// Cluster, for the node-local commands (SCAN, FLUSHDB, FLUSHALL).
func (c *Cluster) ForEachRedis(ctx context.Context, fn func(ctx context.Context, rdb *redis.Client) error) error {
	switch rdb := c.Redis().(type) {
	case *redis.ClusterClient:
		return rdb.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, rdb)
	default:
		return fmt.Errorf("unexpected Redis client %T", rdb)
	}
}

func (c *Cluster) cleanup() {
	// Wave by wave in reverse start order, each wave at once: the edge
	// drains while centers and storage still answer, and the cluster's
	// stop takes about its slowest process per wave, not the sum of all.
	waves := c.waves(Options{Centers: len(c.CenterURLs), Rooms: len(c.RoomTCP)})
	for i := len(waves) - 1; i >= 0; i-- {
		c.stopAll(syscall.SIGTERM, waves[i]...)
	}
	if c.t.Failed() {
		for name := range c.Procs {
			c.t.Logf("---- %s log (tail) ----\n%s", name, c.Tail(name, 40))
		}
	}
	if db, err := sql.Open("mysql", c.mysqlRoot); err == nil {
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + c.MySQL)
		db.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cli, err := discovery.Connect(ctx, c.EtcdEndpoints(), 3*time.Second); err == nil {
		_, _ = cli.Delete(ctx, "/pushgw/"+c.Name+"/", clientWithPrefix()...)
		cli.Close()
	}
}

// EtcdEndpoints is Etcd split into its endpoints.
func (c *Cluster) EtcdEndpoints() []string { return strings.Split(c.Etcd, ",") }

// LogDir is the directory holding every process's log, removed with the
// test's temporary files.
func (c *Cluster) LogDir() string { return c.dir }

// RemoveBinaries deletes what StartCluster built; packages other than this
// one that start clusters call it from their TestMain.
func RemoveBinaries() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}
