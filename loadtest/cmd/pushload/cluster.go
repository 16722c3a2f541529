package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
)

// The bench cluster lives apart from `make run` (ports 7000-7601, cluster
// "local") and from the integration tests (ports 20000-32000 from
// internal/freeport, clusters "test-*"): ports 17000-19999, cluster
// "bench-<random>", its own MySQL database and a private redis-server.
const (
	benchPortMin     = 17000
	benchPortMax     = 19999
	portTries        = 2000
	procStartTimeout = 30 * time.Second
	procStopTimeout  = 20 * time.Second
	healthPoll       = 100 * time.Millisecond
	etcdTimeout      = 10 * time.Second
	benchApp         = "bench"
	// roomMaxConns lets one room hold a whole process's file descriptors.
	roomMaxConns = 20000
	// benchHeartbeat keeps pings rare so idle figures measure idle rooms.
	benchHeartbeat = 30 * time.Second
	// roomGCTrace makes the room print one line per GC, the source of the
	// gc_pause_ms figures (gcpause.go).
	roomGCTrace = "gctrace=1"
)

// colocatedEnv is the environment of every Go service when the cluster
// shares one small box (docs/OPERATIONS.md, "Running on one small box"):
// one P per process, and sysmon kept out of its deep sleep, from which
// every syscall after an idle moment wakes it for a run of 20 µs naps.
// On the 2-core bench VM the two halve the context switches per push at
// low rates (docs/BENCHMARKS.md, unicast).
var colocatedEnv = []string{"GOMAXPROCS=1", "GODEBUG=" + colocatedGODEBUG}

// colocatedGODEBUG is a schedtrace period of ~24.8 days, the int32
// maximum: while schedtrace is on, sysmon never deep-sleeps; the trace
// line it prints once a period is the price.
const colocatedGODEBUG = "schedtrace=2147483647"

// clusterConfig says where the servers are and which binaries to run.
type clusterConfig struct {
	binDir    string // room, center, register, saver, coordinator, dispatcher
	runDir    string // logs; created
	etcd      string
	mysqlRoot string // DSN prefix, e.g. root@tcp(127.0.0.1:3306)/
	redisBin  string
	// colocated runs the Go services with colocatedEnv, rooms with
	// GOMAXPROCS=roomProcs.
	colocated bool
	roomProcs int
	// started, when set, is told of every process that came up (the
	// bench's progress bar).
	started func(name string)
}

// clusterProcs is how many processes startCluster starts.
const clusterProcs = 6

// benchProc is one server process of the bench cluster.
type benchProc struct {
	name  string
	bin   string
	args  []string
	env   []string
	admin string
	log   string

	cmd    *exec.Cmd
	exited chan struct{}
}

// benchCluster is a running bench cluster. Stop removes every trace of it:
// processes, the MySQL database, the etcd prefix.
type benchCluster struct {
	cfg     clusterConfig
	Name    string
	Secret  string
	APIKey  string
	DB      string
	RedisAd string

	CenterURL     string
	DispatcherURL string
	RegisterAdmin string
	// CenterGRPC is center's -grpc-api (the PushAPI of pkg/pushclient);
	// CenterAdmin and SaverAdmin serve their /metrics and /debug/pprof.
	CenterGRPC  string
	CenterAdmin string
	SaverAdmin  string

	mu    sync.Mutex
	taken map[int]bool
	procs map[string]*benchProc
	order []string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort picks a port in the bench range nothing listens on and this
// cluster has not handed out.
func (c *benchCluster) freePort() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < portTries; i++ {
		p := benchPortMin + mrand.IntN(benchPortMax-benchPortMin+1)
		if c.taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		c.taken[p] = true
		return "127.0.0.1:" + strconv.Itoa(p), nil
	}
	return "", fmt.Errorf("cluster: no free port in %d-%d after %d tries", benchPortMin, benchPortMax, portTries)
}

// startCluster starts redis, register, saver, coordinator, center and
// dispatcher; rooms are added with startRoom.
func startCluster(cfg clusterConfig) (c *benchCluster, err error) {
	if err := os.MkdirAll(cfg.runDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	suffix := randHex(4)
	c = &benchCluster{cfg: cfg, Name: "bench-" + suffix, Secret: randHex(16), APIKey: randHex(16),
		DB: "pushgw_bench_" + suffix, taken: map[int]bool{}, procs: map[string]*benchProc{}}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	redisPort, err := c.freePort()
	if err != nil {
		return c, err
	}
	c.RedisAd = redisPort
	_, port, _ := net.SplitHostPort(redisPort)
	c.add("redis", cfg.redisBin, "", nil, "--bind", "127.0.0.1", "--port", port, "--save", "",
		"--appendonly", "no", "--dir", cfg.runDir, "--daemonize", "no", "--logfile", "")
	if err := c.start("redis", func() error { return redisPing(redisPort) }); err != nil {
		return c, err
	}
	c.tell("redis")
	if err := c.seedApp(); err != nil {
		return c, err
	}
	dsn := strings.TrimSuffix(cfg.mysqlRoot, "/") + "/" + c.DB + "?parseTime=true"
	redisArgs := []string{"-redis", c.RedisAd, "-redis-db", "0"}
	ports := func(k int) ([]string, error) {
		out := make([]string, k)
		for i := range out {
			if out[i], err = c.freePort(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	p, err := ports(11)
	if err != nil {
		return c, err
	}
	c.RegisterAdmin = p[0]
	c.CenterURL = "http://" + p[7]
	c.DispatcherURL = "http://" + p[9]
	c.CenterGRPC, c.CenterAdmin, c.SaverAdmin = p[10], p[6], p[2]
	c.addService("register", p[0], nil, append([]string{"-grpc", p[1]}, redisArgs...)...)
	c.addService("saver", p[2], nil, append([]string{"-grpc", p[3], "-mysql", dsn}, redisArgs...)...)
	c.addService("coordinator", p[4], nil, "-grpc", p[5])
	c.addService("center", p[6], nil, append([]string{"-http", p[7], "-grpc-api", p[10]}, redisArgs...)...)
	c.addService("dispatcher", p[8], nil, "-http", p[9])
	for _, n := range []string{"register", "saver", "coordinator", "center", "dispatcher"} {
		if err := c.start(n, nil); err != nil {
			return c, err
		}
		c.tell(n)
	}
	return c, nil
}

func (c *benchCluster) tell(name string) {
	if c.cfg.started != nil {
		c.cfg.started(name)
	}
}

// roomInfo is what a scenario needs of one room.
type roomInfo struct {
	Name   string
	TCP    string
	Admin  string
	PID    int
	GCLog  string // the room's stderr, carrying gctrace lines
	Engine string
}

// startRoom starts room i with the given engine ("" for the binary's
// default, when it has no -engine flag).
func (c *benchCluster) startRoom(i int, engine string) (*roomInfo, error) {
	return c.startRoomIn(c.Name, "room-"+strconv.Itoa(i+1), engine)
}

func (c *benchCluster) startRoomIn(cluster, name, engine string) (*roomInfo, error) {
	p := make([]string, 3)
	for k := range p {
		var err error
		if p[k], err = c.freePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"-tcp", p[0], "-grpc", p[1], "-heartbeat", benchHeartbeat.String(),
		"-max-conns", strconv.Itoa(roomMaxConns)}
	if engine != "" {
		args = append(args, "-engine", engine)
	}
	env := []string{"GODEBUG=" + roomGCTrace}
	if c.cfg.colocated {
		env = []string{"GOMAXPROCS=" + strconv.Itoa(max(c.cfg.roomProcs, 1)), "GODEBUG=" + roomGCTrace + "," + colocatedGODEBUG}
	}
	c.addServiceIn(cluster, name, p[2], env, args...)
	if err := c.start(name, nil); err != nil {
		return nil, err
	}
	if err := c.waitListed(cluster, name); err != nil {
		return nil, err
	}
	bp := c.procs[name]
	return &roomInfo{Name: name, TCP: p[0], Admin: p[2], PID: bp.cmd.Process.Pid, GCLog: bp.log, Engine: engine}, nil
}

// stopRoom stops one room, so the next engine starts from a fresh process.
func (c *benchCluster) stopRoom(name string) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p != nil {
		stopProc(p)
	}
}

func (c *benchCluster) addService(name, admin string, env []string, args ...string) {
	c.addServiceIn(c.Name, name, admin, env, args...)
}

func (c *benchCluster) addServiceIn(cluster, name, admin string, env []string, args ...string) {
	bin := strings.TrimRight(name, "-0123456789") // room-3 runs bin/room
	common := []string{"-cluster", cluster, "-etcd", c.cfg.etcd, "-instance", name, "-admin", admin, "-log-level", "warn"}
	if c.cfg.colocated && env == nil {
		env = colocatedEnv
	}
	c.add(name, filepath.Join(c.cfg.binDir, bin), admin, env, append(common, args...)...)
}

func (c *benchCluster) add(name, bin, admin string, env []string, args ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.procs[name]; !ok {
		c.order = append(c.order, name)
	}
	c.procs[name] = &benchProc{name: name, bin: bin, args: args, env: env, admin: admin,
		log: filepath.Join(c.cfg.runDir, name+".log")}
}

// start runs a process and waits until ready (default: its /healthz).
func (c *benchCluster) start(name string, ready func() error) error {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %s log: %w", name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.env...)
	// Killed with pushload, so an aborted bench leaves nothing running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cluster: start %s: %w", name, err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
	if ready == nil {
		ready = func() error { return healthz(p.admin) }
	}
	deadline := time.Now().Add(procStartTimeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("cluster: %s exited at start:\n%s", name, tail(p.log, 20))
		default:
		}
		if err := ready(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s not ready within %v: %v\n%s", name, procStartTimeout, err, tail(p.log, 20))
		}
		time.Sleep(healthPoll)
	}
}

// Alive says whether a process is still running (a room that crashed
// under load fails its scenario).
func (c *benchCluster) Alive(name string) bool {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil || p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// PIDs lists the running processes by name, for CPU accounting.
func (c *benchCluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for n, p := range c.procs {
		if p.cmd != nil && p.cmd.Process != nil {
			out[n] = p.cmd.Process.Pid
		}
	}
	return out
}

// LivePIDs lists the processes still running by name (a stopped room's
// pid could be reused).
func (c *benchCluster) LivePIDs() map[string]int {
	out := map[string]int{}
	for n, pid := range c.PIDs() {
		if c.Alive(n) {
			out[n] = pid
		}
	}
	return out
}

// Stop stops every process (rooms first), then drops the MySQL database
// and the etcd prefix.
func (c *benchCluster) Stop() {
	c.mu.Lock()
	order := append([]string(nil), c.order...)
	c.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		stopProc(c.procs[order[i]])
	}
	if err := c.dropDatabase(); err != nil {
		fmt.Fprintln(os.Stderr, "pushload:", err)
	}
	if err := c.deletePrefix(); err != nil {
		fmt.Fprintln(os.Stderr, "pushload:", err)
	}
}

func stopProc(p *benchProc) {
	if p == nil || p.cmd == nil || p.exited == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(procStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (c *benchCluster) seedApp() error { return c.seedAppIn(c.Name) }

func (c *benchCluster) seedAppIn(cluster string) error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	cli, err := discovery.Connect(ctx, strings.Split(c.cfg.etcd, ","), etcdTimeout)
	if err != nil {
		return fmt.Errorf("cluster: etcd %s: %w", c.cfg.etcd, err)
	}
	defer cli.Close()
	if err := appconfig.Put(ctx, cli, cluster, appconfig.App{Name: benchApp, Secret: c.Secret, APIKey: c.APIKey}); err != nil {
		return fmt.Errorf("cluster: seed app: %w", err)
	}
	return nil
}

// waitListed waits until etcd lists the room instance, so center and the
// dispatcher can route to it.
func (c *benchCluster) waitListed(cluster, instance string) error {
	ctx, cancel := context.WithTimeout(context.Background(), procStartTimeout)
	defer cancel()
	cli, err := discovery.Connect(ctx, strings.Split(c.cfg.etcd, ","), etcdTimeout)
	if err != nil {
		return fmt.Errorf("cluster: etcd: %w", err)
	}
	defer cli.Close()
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, discovery.Key(cluster, discovery.ServiceRoom, instance), clientv3.WithCountOnly())
		if err == nil && resp.Count > 0 {
			return nil
		}
		time.Sleep(healthPoll)
	}
	return fmt.Errorf("cluster: etcd did not list room %s within %v", instance, procStartTimeout)
}

func (c *benchCluster) deletePrefix() error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	cli, err := discovery.Connect(ctx, strings.Split(c.cfg.etcd, ","), etcdTimeout)
	if err != nil {
		return fmt.Errorf("cluster: etcd cleanup: %w", err)
	}
	defer cli.Close()
	if _, err := cli.Delete(ctx, "/pushgw/"+c.Name, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("cluster: etcd cleanup of /pushgw/%s*: %w", c.Name, err)
	}
	return nil
}

func (c *benchCluster) dropDatabase() error {
	db, err := sql.Open("mysql", c.cfg.mysqlRoot)
	if err != nil {
		return fmt.Errorf("cluster: mysql: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+c.DB+"`"); err != nil {
		return fmt.Errorf("cluster: drop database %s: %w", c.DB, err)
	}
	return nil
}

func healthz(admin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz %s: %s", admin, resp.Status)
	}
	return nil
}

func redisPing(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(time.Second))
	if _, err := nc.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	b := make([]byte, 7)
	if _, err := nc.Read(b); err != nil {
		return err
	}
	if string(b) != "+PONG\r\n" {
		return errors.New("redis: unexpected PING reply " + strconv.Quote(string(b)))
	}
	return nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// roomEngines reports whether the room binary takes -engine, from its
// -h output: until the gnet engine is merged the flag does not exist, and
// its half of each scenario is skipped rather than failing the run.
func roomEngines(roomBin string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, roomBin, "-h").CombinedOutput()
	if len(out) == 0 && err != nil {
		return false, fmt.Errorf("room -h: %w", err)
	}
	return hasEngineFlag(string(out)), nil
}

// hasEngineFlag reads flag's usage text: every defined flag starts a line
// with "  -name" (descriptions are indented by a tab).
func hasEngineFlag(help string) bool {
	for _, line := range strings.Split(help, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "-engine" && !strings.HasPrefix(line, "    \t") {
			return true
		}
	}
	return false
}
