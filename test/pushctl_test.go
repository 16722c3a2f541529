package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The README's example session: pushctl listen in one shell, pushctl push
// in another, with nothing but the env file and --app/--user.
func TestPushctlListenAndPush(t *testing.T) {
	c := StartCluster(t, Options{Heartbeat: 2 * time.Second})
	env := append(os.Environ(),
		"PUSHGW_CENTER_URL="+c.CenterURL,
		"PUSHGW_DISPATCHER_URL="+c.DispatcherURL,
		"PUSHGW_APP="+c.App,
		"PUSHGW_API_KEY="+c.APIKey,
		"PUSHGW_APP_SECRET="+c.Secret,
	)
	pushctl := filepath.Join(c.binDir, "pushctl")

	var lout, lerr bytes.Buffer
	listen := exec.Command(pushctl, "listen", "--app", c.App, "--user", "alice", "--count", "1", "--timeout", "20s")
	listen.Env, listen.Stdout, listen.Stderr = env, &lout, &lerr
	if err := listen.Start(); err != nil {
		t.Fatal(err)
	}
	waitSession(t, c, "alice", 1)

	push := exec.Command(pushctl, "push", "--app", c.App, "--user", "alice", "--qos", "1", "hello")
	push.Env = env
	out, err := push.CombinedOutput()
	if err != nil {
		t.Fatalf("pushctl push: %v\n%s", err, out)
	}
	var pushed struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &pushed); err != nil || pushed.ID == "" {
		t.Fatalf("pushctl push printed %q", out)
	}

	if err := listen.Wait(); err != nil {
		t.Fatalf("pushctl listen: %v\nstdout: %s\nstderr: %s", err, lout.String(), lerr.String())
	}
	var got struct {
		ID      string `json:"id"`
		App     string `json:"app"`
		QoS     int    `json:"qos"`
		Payload string `json:"payload"`
	}
	line := strings.TrimSpace(lout.String())
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("listen printed %q: %v", line, err)
	}
	if got.ID != pushed.ID || got.Payload != "hello" || got.App != c.App || got.QoS != 1 {
		t.Fatalf("listen got %+v, pushed %s", got, pushed.ID)
	}
	// listen acked before exiting.
	Eventually(t, 10*time.Second, "message acked", func() bool {
		st := exec.Command(pushctl, "status", pushed.ID)
		st.Env = env
		b, err := st.Output()
		return err == nil && strings.Contains(string(b), `"acked"`)
	})

	t.Run("listen times out with fewer messages", func(t *testing.T) {
		cmd := exec.Command(pushctl, "listen", "--app", c.App, "--user", "nobody-pushes", "--count", "1", "--timeout", "1s")
		cmd.Env = env
		start := time.Now()
		if err := cmd.Run(); err == nil {
			t.Fatal("listen exited 0 without a message")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("listen took %v to time out", d)
		}
	})
}
