package test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every service refuses to start without etcd: a non-zero exit and a
// message that names the problem, within a few seconds.
func TestServicesExitWithoutEtcd(t *testing.T) {
	bin, err := buildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"center", "dispatcher", "room", "register", "saver", "coordinator"} {
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(filepath.Join(bin, svc), "-etcd", "127.0.0.1:1", "-admin", FreePort(t), "-cluster", "no-etcd")
			start := time.Now()
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit = %v, want non-zero; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), "cannot start without etcd") {
				t.Fatalf("output does not say why:\n%s", out)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("took %v to give up", d)
			}
		})
	}
}
