package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pushgw/pushgw/pkg/txcheck"
)

const txUsage = `usage: pushctl tx <command> [flags]

  prepare     --app A (--user U [--device D] | --users U1,U2,… | --tag T | --broadcast) [--online-only]
              [--ttl 60s] [--check-timeout 6s] [--key K] PAYLOAD
  commit      ID
  rollback    ID
  status      ID
  serve-check --listen ADDR --secret S [--answer COMMIT|ROLLBACK|UNKNOWN]
              an example business server: verifies each signed check-back
              and answers it (docs/TRANSACTIONS.md)
`

// checkServerTimeout bounds serve-check's reads and writes.
const checkServerTimeout = 10 * time.Second

// txPrepareBody is center's POST /v1/tx body.
type txPrepareBody struct {
	App            string         `json:"app"`
	Target         map[string]any `json:"target"`
	Payload        string         `json:"payload"`
	TTL            int64          `json:"ttl"`
	CheckTimeout   *int64         `json:"check_timeout,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	OnlineOnly     *bool          `json:"online_only,omitempty"`
}

func (c cli) tx(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, txUsage)
		return usageError{errors.New("missing tx command")}
	}
	switch args[0] {
	case "prepare":
		return c.txPrepare(ctx, args[1:])
	case "commit", "rollback":
		return c.txCall(ctx, args[0], http.MethodPost, "/"+args[0], args[1:])
	case "status":
		return c.txCall(ctx, "status", http.MethodGet, "", args[1:])
	case "serve-check":
		return c.txServeCheck(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(c.stdout, txUsage)
		return nil
	}
	fmt.Fprint(c.stderr, txUsage)
	return usageError{fmt.Errorf("unknown tx command %q", args[0])}
}

func (c cli) txPrepare(ctx context.Context, args []string) error {
	fs := c.flagSet("tx prepare")
	app := fs.String("app", "", "app name")
	user := fs.String("user", "", "one user (target kind user)")
	device := fs.String("device", "", "with --user: one device only")
	users := fs.String("users", "", "comma-separated users (target kind users)")
	broadcast := fs.Bool("broadcast", false, "every device of the app (target kind broadcast)")
	tag := fs.String("tag", "", "the tag's members (target kind tag: a broadcast to the tag)")
	onlineOnly := fs.Bool("online-only", false, "with --broadcast or --tag: only devices online at the commit get it, nobody catches up")
	ttl := fs.Duration("ttl", 60*time.Second, "message lifetime from the commit (whole seconds)")
	checkAfter := fs.Duration("check-timeout", 0, "delay before the first check-back (whole seconds; 0: the app's setting)")
	key := fs.String("key", "", "idempotency key (your order id, say)")
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("app", *app, "api-key", *apiKey); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Errorf("want exactly one PAYLOAD argument, got %d", len(pos))}
	}
	body := txPrepareBody{App: *app, Payload: pos[0], TTL: int64(math.Ceil(ttl.Seconds())), IdempotencyKey: *key}
	targets := 0
	for _, set := range []bool{*user != "", *users != "", *broadcast, *tag != ""} {
		if set {
			targets++
		}
	}
	if *onlineOnly && !*broadcast && *tag == "" {
		return usageError{errors.New("--online-only goes with --broadcast or --tag only")}
	}
	switch {
	case targets != 1:
		return usageError{errors.New("give exactly one of --user, --users, --tag and --broadcast")}
	case *broadcast || *tag != "":
		if *device != "" {
			return usageError{errors.New("--device goes with --user only")}
		}
		body.Target = map[string]any{"kind": "broadcast"}
		if *tag != "" {
			body.Target = map[string]any{"kind": "tag", "tag": *tag}
		}
		if *onlineOnly {
			body.OnlineOnly = onlineOnly
		}
	case *user != "":
		body.Target = map[string]any{"kind": "user", "user": *user, "device": *device}
	default:
		if *device != "" {
			return usageError{errors.New("--device goes with --user only")}
		}
		body.Target = map[string]any{"kind": "users", "users": strings.Split(*users, ",")}
	}
	if *ttl < 0 || *checkAfter < 0 {
		return usageError{errors.New("--ttl and --check-timeout must not be negative")}
	}
	if *checkAfter > 0 {
		s := int64(math.Ceil(checkAfter.Seconds()))
		body.CheckTimeout = &s
	}
	b, _ := json.Marshal(body)
	return c.call(ctx, http.MethodPost, *center+"/v1/tx", *apiKey, b)
}

func (c cli) txCall(ctx context.Context, name, method, suffix string, args []string) error {
	fs := c.flagSet("tx " + name)
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("api-key", *apiKey); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Errorf("want exactly one transaction ID argument, got %d", len(pos))}
	}
	if _, err := strconv.ParseUint(pos[0], 10, 64); err != nil {
		return usageError{fmt.Errorf("transaction ID %q is not a decimal 64-bit id", pos[0])}
	}
	return c.call(ctx, method, *center+"/v1/tx/"+pos[0]+suffix, *apiKey, nil)
}

// txServeCheck is the example business server: it answers every verified
// check-back with --answer and refuses badly signed or stale ones. A real
// business looks the transaction up (by idempotency_key, its order id)
// and answers what its own database says.
func (c cli) txServeCheck(ctx context.Context, args []string) error {
	fs := c.flagSet("tx serve-check")
	listen := fs.String("listen", "127.0.0.1:7090", "address to serve check-backs on (the app's check_url points here)")
	secret := fs.String("secret", "", "the app's secret (signs check-backs)")
	answer := fs.String("answer", txcheck.Commit, "decision to answer: COMMIT, ROLLBACK or UNKNOWN")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if err := require("secret", *secret); err != nil {
		return err
	}
	decision, err := txcheck.ParseAnswer([]byte(`{"decision":` + strconv.Quote(*answer) + `}`))
	if err != nil {
		return usageError{fmt.Errorf("--answer: %w", err)}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadTimeout: checkServerTimeout, WriteTimeout: checkServerTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req, err := txcheck.ReadVerified(*secret, r, time.Now())
			if err != nil {
				fmt.Fprintf(c.stderr, "refused check from %s: %v\n", r.RemoteAddr, err)
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			fmt.Fprintf(c.stdout, "check %d/%d of tx %s (app %s, key %q, users %v): answering %s\n",
				req.Check, req.MaxChecks, req.TxID, req.App, req.IdempotencyKey, req.Users, decision)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(txcheck.Answer{Decision: decision})
		}),
	}
	fmt.Fprintf(c.stdout, "serving check-backs on http://%s/ answering %s\n", ln.Addr(), decision)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), checkServerTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
