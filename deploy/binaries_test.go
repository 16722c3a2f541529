package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// services are the server binaries of services/; pushctl is the CLI.
var services = []string{"center", "dispatcher", "room", "register", "saver", "coordinator"}

// flagSpec is what a binary's -h says about one flag.
type flagSpec struct {
	typ string // "" for a bool flag, else the type word -h prints (string, int, duration, uint…)
}

// usage is a binary's (or pushctl subcommand's) parsed -h output.
type usage struct {
	flags map[string]flagSpec
	envs  map[string]bool // PUSHGW_* variables the help text says the binary reads
}

var (
	flagLine = regexp.MustCompile(`^  -([a-zA-Z0-9-]+)(?: ([a-z0-9]+))?$`)
	envRef   = regexp.MustCompile(`\(\$?(PUSHGW_[A-Z0-9_]+)\)`)
)

// parseUsage reads the flag package's -h format.
func parseUsage(text string) usage {
	u := usage{flags: map[string]flagSpec{}, envs: map[string]bool{}}
	for _, line := range strings.Split(text, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			u.flags[m[1]] = flagSpec{typ: m[2]}
		}
		for _, m := range envRef.FindAllStringSubmatch(line, -1) {
			u.envs[m[1]] = true
		}
	}
	return u
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error

	usageMu    sync.Mutex
	usageCache = map[string]usage{}
)

// bins builds every service and pushctl once per test binary, the same
// packages `make build` builds.
func bins(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "pushgw-deploy-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./services/...", "./cmd/pushctl")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// helpOf returns the parsed -h of a binary; for pushctl, sub names the
// subcommand words ("app", "put").
func helpOf(t testing.TB, bin string, sub ...string) usage {
	t.Helper()
	key := strings.Join(append([]string{bin}, sub...), " ")
	usageMu.Lock()
	defer usageMu.Unlock()
	if u, ok := usageCache[key]; ok {
		return u
	}
	path := filepath.Join(bins(t), bin)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no binary %q: a deploy file names a program the repository does not build", bin)
	}
	if bin == "pushctl" && len(sub) == 0 {
		// The bare CLI: a container that may run any subcommand reads
		// what any of them reads.
		u := usage{flags: map[string]flagSpec{"h": {}}, envs: map[string]bool{}}
		for _, s := range pushctlCommands(t, path) {
			usageMu.Unlock()
			su := helpOf(t, bin, s...)
			usageMu.Lock()
			for e := range su.envs {
				u.envs[e] = true
			}
		}
		usageCache[key] = u
		return u
	}
	cmd := exec.Command(path, append(sub, "-h")...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()} // no PUSHGW_* from the caller
	out, _ := cmd.CombinedOutput()                                  // -h exits non-zero
	u := parseUsage(string(out))
	if len(u.flags) == 0 {
		t.Fatalf("%s -h printed no flags:\n%s", key, out)
	}
	usageCache[key] = u
	return u
}

// invocation is one program run as a deploy file writes it.
type invocation struct {
	bin   string
	sub   []string          // pushctl subcommand words
	flags map[string]string // flag -> value ("true" for a bare bool flag)
}

// parseArgs splits argv (bin first) into flags the way package flag does:
// -name=value, -name value, or a bare bool -name; --name is the same.
func parseArgs(t testing.TB, argv []string) invocation {
	t.Helper()
	if len(argv) == 0 {
		t.Fatal("empty command")
	}
	inv := invocation{bin: filepath.Base(argv[0]), flags: map[string]string{}}
	rest := argv[1:]
	if inv.bin == "pushctl" {
		for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			inv.sub = append(inv.sub, rest[0])
			rest = rest[1:]
		}
	}
	u := helpOf(t, inv.bin, inv.sub...)
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "-") {
			if inv.bin == "pushctl" {
				continue // positional arguments (a push payload…)
			}
			t.Errorf("%s: stray argument %q (the service would exit)", inv.bin, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
		}
		spec, ok := u.flags[name]
		if !ok {
			t.Errorf("%s %s: no flag -%s (see `%s -h`)", inv.bin, strings.Join(inv.sub, " "), name, inv.bin)
			continue
		}
		if !hasVal {
			if spec.typ == "" {
				val = "true"
			} else if i+1 < len(rest) {
				i++
				val = rest[i]
			} else {
				t.Errorf("%s: -%s needs a value", inv.bin, name)
			}
		}
		checkValue(t, inv.bin, name, spec.typ, val)
		inv.flags[name] = val
	}
	return inv
}

// checkValue parses a flag value as its type would.
func checkValue(t testing.TB, bin, name, typ, val string) {
	t.Helper()
	var err error
	switch typ {
	case "duration":
		_, err = time.ParseDuration(val)
	case "int":
		_, err = strconv.Atoi(val)
	case "uint":
		_, err = strconv.ParseUint(val, 10, 64)
	case "":
		_, err = strconv.ParseBool(val)
	}
	if err != nil {
		t.Errorf("%s -%s %q: not a valid %s: %v", bin, name, val, typ, err)
	}
}

// port returns the port of a host:port value.
func port(t testing.TB, hostport string) int {
	t.Helper()
	i := strings.LastIndexByte(hostport, ':')
	p, err := strconv.Atoi(hostport[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%q: not host:port", hostport)
	}
	return p
}

// listenAddrs are the flags (or the environment variables standing for
// them) that make a service listen, by name.
var listenFlags = []string{"tcp", "http", "grpc", "admin"}

var listenEnv = map[string]string{
	"PUSHGW_CENTER_HTTP":      "http",
	"PUSHGW_DISPATCHER_HTTP":  "http",
	"PUSHGW_COORDINATOR_GRPC": "grpc",
}

func TestParseUsage(t *testing.T) {
	u := parseUsage(`Usage of x:
  -admin string
    	admin listener (default "127.0.0.1:7302")
  -migrate-only
    	apply the schema migrations and exit
  -redis string
    	Redis address (PUSHGW_REDIS) (default "127.0.0.1:6379")
  -name string
    	app name ($PUSHGW_APP)
`)
	if len(u.flags) != 4 || u.flags["migrate-only"].typ != "" || u.flags["admin"].typ != "string" {
		t.Fatalf("flags = %v", u.flags)
	}
	if !u.envs["PUSHGW_REDIS"] || !u.envs["PUSHGW_APP"] || len(u.envs) != 2 {
		t.Fatalf("envs = %v", u.envs)
	}
}

var (
	commandWord         = regexp.MustCompile(`^[a-z]+$`)
	commandAlternatives = regexp.MustCompile(`^[a-z][a-z-]*(\|[a-z][a-z-]*)+$`)
)

// pushctlCommands lists the subcommands `pushctl -h` names.
func pushctlCommands(t testing.TB, path string) [][]string {
	t.Helper()
	out, _ := exec.Command(path, "-h").CombinedOutput()
	_, list, ok := strings.Cut(string(out), "commands:")
	if !ok {
		t.Fatalf("pushctl -h lists no commands:\n%s", out)
	}
	var cmds [][]string
	for _, line := range strings.Split(list, "\n") {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		var words []string
		var alts []string
		for _, w := range strings.Fields(line) {
			if commandAlternatives.MatchString(w) && len(words) > 0 {
				// "tag add|rm", "tx prepare|commit|…": a group whose
				// subcommands each have flags of their own.
				alts = strings.Split(w, "|")
				break
			}
			if !commandWord.MatchString(w) {
				break
			}
			words = append(words, w)
		}
		switch {
		case len(alts) > 0:
			for _, a := range alts {
				cmds = append(cmds, append(slices.Clone(words), a))
			}
		case len(words) > 0:
			cmds = append(cmds, words)
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("pushctl -h lists no commands:\n%s", out)
	}
	return cmds
}
