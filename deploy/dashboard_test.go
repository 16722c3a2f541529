package deploy

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/test"
)

// prometheusMade are series Prometheus itself adds to every scrape.
var prometheusMade = map[string]string{
	"up": "set by Prometheus per scrape target",
}

// declaredOnly are labelled families the code registers but exports only
// after their first event, which this test cannot cause on purpose; the
// test checks that the code declares them instead.
var declaredOnly = map[string]string{
	"pushgw_room_batch_dropped_total": "only after a 65,536-item batch queue overflows",
}

// dashboardExprs returns every PromQL expression of a Grafana dashboard:
// panel targets (rows included) and label_values() variable queries.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
			Panels []struct {
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
		for _, sub := range p.Panels {
			for _, tg := range sub.Targets {
				out = append(out, tg.Expr)
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		if m := labelValues.FindStringSubmatch(q.Query); m != nil {
			out = append(out, m[1])
		} else if q.Query != "" {
			t.Errorf("variable query %q: only label_values(selector, label) is understood", q.Query)
		}
	}
	return out
}

// alertExprs returns the expr of every rule in a Prometheus rules file.
func alertExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

// usedMetrics maps each metric name to the files whose expressions use it.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(file string, exprs []string) {
		if len(exprs) == 0 {
			t.Fatalf("%s: no expressions found", file)
		}
		for _, e := range exprs {
			names, err := metricNames(e)
			if err != nil {
				t.Errorf("%s: %v", file, err)
			}
			if len(names) == 0 {
				t.Errorf("%s: expression %q selects no metric", file, e)
			}
			for _, n := range names {
				used[n] = append(used[n], file)
			}
		}
	}
	root := repoRoot()
	add("deploy/grafana/pushgw.json", dashboardExprs(t, filepath.Join(root, "deploy", "grafana", "pushgw.json")))
	add("deploy/prometheus/alerts.yml", alertExprs(t, filepath.Join(root, "deploy", "prometheus", "alerts.yml")))
	return used
}

// The rules file is valid Prometheus (syntax, durations, templates), when
// Debian's promtool is there to say so.
func TestAlertsValidPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool is not installed: run scripts/deploy-deps.sh (Debian package prometheus)")
	}
	out, err := exec.Command("promtool", "check", "rules", filepath.Join(repoRoot(), "deploy", "prometheus", "alerts.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// Every metric the dashboard and the alerts use is exported by a running
// cluster: a scrape of every service's admin /metrics, taken while the
// test drives the paths that create the labelled series (logins, pushes,
// acks, an uplink, a bad frame, register and Redis outages).
func TestDashboardAndAlertsMetricsExist(t *testing.T) {
	used := usedMetrics(t)
	t.Logf("%d metric names used by the dashboard and the alerts", len(used))
	rds := redistest.Start(t)
	c := test.StartCluster(t, test.Options{RedisAddr: rds.Addr()})

	seen := map[string]bool{}
	scrapeAll := func() {
		for _, p := range c.Procs {
			if !alive(p.Admin) {
				continue // a process this test stopped
			}
			for series := range test.ScrapeAdmin(t, p.Admin) {
				name, _, _ := strings.Cut(series, "{")
				seen[name] = true
			}
		}
	}

	// Normal traffic: a dispatcher query, a login, an uplink (the test app
	// has no webhook, so it is refused, and counted), a QoS 1 push acked.
	if resp, err := http.Get(c.DispatcherURL + "/v1/endpoints?app=" + c.App + "&user=u1"); err == nil {
		resp.Body.Close()
	}
	rc := test.Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token("u1", "phone", time.Hour))
	rc.Send(protocol.OpUplink, &clientpb.Uplink{Route: "chat", Payload: []byte("hi")})
	id := c.Push("u1", 1, time.Hour, "hello")
	for {
		p, err := rc.NextPush(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for push %d: %v", id, err)
		}
		if p.GetId() == id {
			rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
			break
		}
	}
	// A client speaking garbage is closed with an ERROR code.
	bad := test.Dial(t, c.RoomTCP[1])
	bad.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	test.Eventually(t, 20*time.Second, "the ack reached saver and the bad client was closed", func() bool {
		scrapeAll()
		return seen["pushgw_saver_outcomes_total"] && seen["pushgw_room_error_closes_total"] && seen["pushgw_coordinator_uplinks_total"]
	})

	// Register down: a login's put fails; a push's lookup fails, is
	// retried and finally left to the sweep.
	c.Kill("register")
	rc2 := test.Dial(t, c.RoomTCP[1])
	rc2.Auth(c.Token("u2", "phone", time.Hour))
	c.Push("u1", 1, time.Hour, "during the register outage")
	// Redis down: saver's Store cannot index the inbox (MySQL still holds it).
	rds.Kill()
	c.Push("u3", 1, time.Hour, "during the Redis outage")

	missing := func() []string {
		var out []string
		for n := range used {
			if !seen[n] && prometheusMade[n] == "" && declaredOnly[n] == "" {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		scrapeAll()
		m := missing()
		if len(m) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range m {
				t.Errorf("%s (used in %s) is not exported by any service", n, strings.Join(dedup(used[n]), ", "))
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The few families no scenario here produces must at least be
	// declared by the code, under that exact name.
	for n := range declaredOnly {
		if _, ok := used[n]; ok && !declaredInCode(t, n) {
			t.Errorf("%s is neither scraped nor declared in services/", n)
		}
	}
}

func alive(admin string) bool {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + admin + "/metrics")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func dedup(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// declaredInCode reports whether a non-test file of services/ registers a
// metric called name.
func declaredInCode(t *testing.T, name string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "services", "*", "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `Name: "`+name+`"`) {
			return true
		}
	}
	return false
}
