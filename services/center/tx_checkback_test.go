package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/txcheck"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// A check URL that is slow or hostile costs at most the call timeout and
// MaxAnswerBytes, and never decides; a well-formed, signed exchange does.
func TestCheckBackAskBounded(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := &txChecker{cfg: txConfig{Timeout: timeout}, client: newCheckClient(timeout, 4), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	secret := "0123456789abcdef-secret"
	rec := &internalpb.TxRecord{Id: 42, App: "demo", TargetKind: internalpb.TxTargetKind_TX_TARGET_KIND_USER,
		Recipients: []*internalpb.TxRecipient{{User: "alice", MessageId: 43}}, IdempotencyKey: "order-1", Checks: 2, CreatedMs: 1}
	hang := make(chan struct{})
	var redirects int
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		req, err := txcheck.ReadVerified(secret, r, time.Now())
		if err != nil || req.TxID != "42" || req.Check != 3 || req.IdempotencyKey != "order-1" || len(req.Users) != 1 {
			http.Error(w, "bad check", http.StatusBadRequest)
			return
		}
		io.WriteString(w, `{"decision":"commit"}`)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"decision":"COMMIT","pad":"`)
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < 1600; i++ { // 100 MiB unless the reader stops
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		redirects++
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the caller leaving
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>yes</html>") })
	biz := httptest.NewServer(mux)
	defer biz.Close()
	defer close(hang) // before Close, which waits for handlers

	for path, want := range map[string]string{
		"/ok": checkCommit, "/huge": checkInvalid, "/loop": checkFailed, "/hang": checkFailed, "/garbage": checkInvalid,
	} {
		start := time.Now()
		got, detail := c.ask(context.Background(), appconfig.App{Name: "demo", Secret: secret, TxCheck: appconfig.TxCheck{CheckURL: biz.URL + path}}, rec)
		took := time.Since(start)
		if got != want {
			t.Errorf("%s: outcome %s (%s), want %s", path, got, detail, want)
		}
		if took > timeout+time.Second {
			t.Errorf("%s: took %v with a %v timeout", path, took, timeout)
		}
	}
	if redirects != 1 {
		t.Errorf("redirect followed %d times, want never (1 request)", redirects)
	}
	if got, _ := c.ask(context.Background(), appconfig.App{Name: "demo", Secret: secret, TxCheck: appconfig.TxCheck{CheckURL: "ftp://x/"}}, rec); got != checkNoURL {
		t.Errorf("ftp check URL: %s", got)
	}
}
