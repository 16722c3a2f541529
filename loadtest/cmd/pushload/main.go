// Command pushload is pushgw's load generator. It speaks the client
// protocol through pkg/protocol directly (one goroutine and a few hundred
// bytes per connection, unlike the SDK) and calls center's HTTP API.
//
//	pushload conns -addr 127.0.0.1:17300 -app bench -secret S -n 10000 -hold 60s
//	pushload push  -addr 127.0.0.1:17300 -center http://127.0.0.1:17000 -api-key K -users 2000 -rate 2000 -duration 30s
//	pushload multi -addr ... -users 10000 -rate 5 -duration 30s
//
// Every run stops by itself and prints one JSON object on stdout. Only
// 127.0.0.0/8 targets are accepted. See docs/BENCHMARKS.md.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var (
		res any
		err error
	)
	switch os.Args[1] {
	case "conns":
		res, err = runConns(os.Args[2:])
	case "push":
		res, err = runPush(os.Args[2:], false)
	case "multi":
		res, err = runPush(os.Args[2:], true)
	case "bench":
		res, err = runBench(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "pushload: unknown scenario %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "pushload:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "pushload:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: pushload <scenario> [flags]

scenarios:
  conns   open N authenticated idle connections, hold them, report connects/s
          and (with -room-pid/-room-admin) the room's memory per connection
  push    unicast QoS pushes through center POST /v1/push at a target rate;
          reports delivered/s and end-to-end latency
  multi   like push, through POST /v1/push/multi with -batch users per call
  bench   start a private bench cluster and run one scenario (idle, connect,
          unicast, churn, box) on each room engine; writes JSON and PNG
          results (loadtest/README.md); "make bench SCENARIO=idle"

run "pushload <scenario> -h" for the flags of one scenario.
`)
}

// commonFlags are shared by every scenario.
type commonFlags struct {
	addrs      string
	app        string
	secret     string
	userPrefix string
	conc       int
	connectTO  string
	src        string
	roomPID    int
	roomAdmin  string
	dispatcher string
}

// fleet checks the target flags (loopback only) and returns a fleet that
// dials the rooms, and the per-connection timeout.
func (c *commonFlags) fleet() (*fleet, time.Duration, error) {
	addrs, err := checkTCPAddrs(c.addrs)
	if err != nil {
		return nil, 0, err
	}
	src, err := checkSourceIPs(c.src)
	if err != nil {
		return nil, 0, err
	}
	connectTO, err := time.ParseDuration(c.connectTO)
	if err != nil || connectTO <= 0 {
		return nil, 0, fmt.Errorf("-connect-timeout %q: want a positive duration", c.connectTO)
	}
	d := &dialer{app: c.app, secret: []byte(c.secret), timeout: connectTO, src: src}
	if c.dispatcher != "" {
		if d.dispatcher, err = checkURL(c.dispatcher); err != nil {
			return nil, 0, fmt.Errorf("-dispatcher: %w", err)
		}
		d.httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.conc}}
	}
	return &fleet{d: d, addrs: addrs}, connectTO, nil
}

func (c *commonFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.addrs, "addr", "127.0.0.1:7300", "room client TCP address(es), comma-separated; connections are spread over them")
	fs.StringVar(&c.app, "app", "demo", "app the tokens are minted for")
	fs.StringVar(&c.secret, "secret", os.Getenv("PUSHGW_APP_SECRET"), "app secret that signs client tokens (default $PUSHGW_APP_SECRET)")
	fs.StringVar(&c.userPrefix, "user-prefix", "u", "users are <prefix>0 .. <prefix>N-1")
	fs.IntVar(&c.conc, "c", 256, "connections being dialled and authenticated at once")
	fs.StringVar(&c.connectTO, "connect-timeout", "10s", "deadline of one dial + AUTH round trip")
	fs.StringVar(&c.src, "src", "", "local 127.x addresses to bind, comma-separated (spreads source ports beyond one address's ~28k)")
	fs.IntVar(&c.roomPID, "room-pid", 0, "pid of the room process to sample (VmRSS, CPU) from /proc")
	fs.StringVar(&c.roomAdmin, "room-admin", "", "admin host:port of that room, for /metrics and /debug/pprof/heap")
	fs.StringVar(&c.dispatcher, "dispatcher", "", "dispatcher base URL; when set every connection first asks it for its room (GET /v1/endpoints), as a real client does")
}
