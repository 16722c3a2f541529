package deploy

import (
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is what `docker-compose config` prints (the normalised file).
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []composePort     `yaml:"ports"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Ulimits map[string]struct {
		Soft int `yaml:"soft"`
		Hard int `yaml:"hard"`
	} `yaml:"ulimits"`
}

type composePort struct {
	Published int `yaml:"published"`
	Target    int `yaml:"target"`
}

// pushgwImage is the image docker-compose.yml builds from the Dockerfile.
const pushgwImage = "pushgw:dev"

// composeConfig validates docker-compose.yml with Debian's docker-compose
// (no Docker daemon needed) and returns the normalised result.
func composeConfig(t *testing.T) composeFile {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatal("docker-compose is not installed: run scripts/deploy-deps.sh (Debian package docker-compose)")
	}
	cmd := exec.Command("docker-compose", "-f", filepath.Join(repoRoot(), "docker-compose.yml"), "config")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("docker-compose config: %v\n%s", err, stderr)
	}
	var f composeFile
	if err := yaml.Unmarshal(out, &f); err != nil {
		t.Fatalf("parse docker-compose config output: %v", err)
	}
	return f
}

// programs turns a container's entrypoint+command into the invocations it
// runs: the program itself, or each step of a `/bin/sh -c "a && b"`.
func programs(t *testing.T, argv []string) [][]string {
	t.Helper()
	if len(argv) >= 3 && (argv[0] == "/bin/sh" || argv[0] == "sh") && argv[1] == "-c" {
		var out [][]string
		for _, step := range strings.Split(argv[2], "&&") {
			if f := strings.Fields(step); len(f) > 0 {
				out = append(out, f)
			}
		}
		return out
	}
	return [][]string{argv}
}

func TestComposeMatchesCode(t *testing.T) {
	f := composeConfig(t)
	used := map[string]int{} // binary -> containers running it
	for name, svc := range f.Services {
		if svc.Image != pushgwImage {
			continue
		}
		t.Run(name, func(t *testing.T) {
			argv := append(append([]string{}, svc.Entrypoint...), svc.Command...)
			envs := map[string]bool{}
			listen := map[string]string{} // listen flag -> address
			var invs []invocation
			for _, p := range programs(t, argv) {
				p = slices.DeleteFunc(p, func(a string) bool { return a == "-h" })
				inv := parseArgs(t, p)
				invs = append(invs, inv)
				used[inv.bin]++
				for e := range helpOf(t, inv.bin, inv.sub...).envs {
					envs[e] = true
				}
				for _, fl := range listenFlags {
					if v, ok := inv.flags[fl]; ok {
						listen[fl] = v
					}
				}
			}
			for k, v := range svc.Environment {
				if !strings.HasPrefix(k, "PUSHGW_") {
					continue
				}
				if !envs[k] {
					t.Errorf("environment %s: no program of this container reads it (see their -h)", k)
				}
				if fl, ok := listenEnv[k]; ok {
					if _, set := listen[fl]; !set {
						listen[fl] = v
					}
				}
			}
			// A published port must be one the service listens on.
			for _, p := range svc.Ports {
				if !slices.ContainsFunc(mapValues(listen), func(a string) bool { return port(t, a) == p.Target }) {
					t.Errorf("ports: %d is not a port this service listens on (%v)", p.Target, listen)
				}
			}
			// gRPC is published in etcd and dialed by peers: it must be an
			// address they can resolve, the compose service name.
			if g, ok := listen["grpc"]; ok {
				if host := g[:strings.LastIndexByte(g, ':')]; host != name {
					t.Errorf("-grpc %s: peers dial the published address; listen on %s:<port>", g, name)
				}
			}
			// The healthcheck must ask this service's admin listener.
			if hc := svc.Healthcheck.Test; len(hc) > 0 {
				u, err := url.Parse(hc[len(hc)-1])
				if err != nil || u.Path != "/healthz" {
					t.Errorf("healthcheck %v: want http://127.0.0.1:<admin port>/healthz", hc)
				} else if a, ok := listen["admin"]; !ok || port(t, a) != port(t, u.Host) {
					t.Errorf("healthcheck port %s, but -admin is %q", u.Port(), listen["admin"])
				}
			} else if len(invs) == 1 && slices.Contains(services, invs[0].bin) {
				t.Errorf("service %s has no healthcheck", invs[0].bin)
			}
			if len(invs) == 1 && invs[0].bin == "room" {
				inv := invs[0]
				adv := inv.flags["advertise-tcp"]
				if adv == "" || !slices.ContainsFunc(svc.Ports, func(p composePort) bool {
					return p.Published == port(t, adv) && p.Target == port(t, inv.flags["tcp"])
				}) {
					t.Errorf("room: -advertise-tcp %q must be the published client port of -tcp %q", adv, inv.flags["tcp"])
				}
				if svc.Ulimits["nofile"].Soft < 65536 {
					t.Errorf("room: ulimits nofile %d: one fd per client connection", svc.Ulimits["nofile"].Soft)
				}
			}
		})
	}
	for _, s := range services {
		if used[s] == 0 {
			t.Errorf("docker-compose.yml runs no %s", s)
		}
	}
	if used["room"] < 2 {
		t.Errorf("docker-compose.yml runs %d rooms, want 2", used["room"])
	}
	for _, dep := range []string{"redis", "mariadb", "etcd"} {
		if _, ok := f.Services[dep]; !ok {
			t.Errorf("docker-compose.yml has no %s", dep)
		}
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
