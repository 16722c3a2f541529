package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pushgw/pushgw/pkg/sdk"
)

const closeTimeout = 3 * time.Second

// line is what listen prints per message.
type line struct {
	ID            string  `json:"id"`
	App           string  `json:"app"`
	QoS           uint8   `json:"qos"`
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 string  `json:"payload_base64,omitempty"`
}

// listen connects as a client with pkg/sdk and prints each message as one
// JSON line, acking it after printing.
func (c cli) listen(ctx context.Context, args []string) error {
	fs := c.flagSet("listen")
	app := fs.String("app", "", "app name")
	user := fs.String("user", "", "user id")
	device := fs.String("device", "", "device id (optional)")
	count := fs.Int("count", 1, "exit 0 after this many messages (0: never)")
	timeout := fs.Duration("timeout", 0, "give up (exit 1) if fewer than --count messages arrived by then (0: wait forever)")
	tok := fs.String("token", "", "client token; default: mint one with --secret")
	secret := fs.String("secret", "", "app secret to mint tokens with when --token is not given")
	dispatcher := fs.String("dispatcher", defaultDispatcher, "dispatcher base URL")
	endpoints := fs.String("endpoints", "", "comma-separated room endpoints (host:port) used if the dispatcher fails")
	bindFlag := fs.String("bind", "", "comma-separated APP=TOKEN: further apps of the same vendor to carry on the connection (BIND, docs/protocol.md §4.2)")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	toBind, err := parseBinds(*bindFlag)
	if err != nil {
		return usageError{err}
	}
	if err := require("app", *app, "user", *user); err != nil {
		return err
	}
	if *tok == "" && *secret == "" {
		return usageError{errors.New("need --token, or --secret ($PUSHGW_APP_SECRET) to mint one")}
	}
	if *count < 0 || *timeout < 0 {
		return usageError{errors.New("--count and --timeout must not be negative")}
	}

	var (
		mu      sync.Mutex
		got     int
		reached = make(chan struct{})
		// connected is signalled on each connect; the first one binds
		// --bind's apps (the SDK binds them again after reconnects).
		connected = make(chan struct{}, 1)
		bindErr   = make(chan error, 1)
	)
	cfg := sdk.Config{
		DispatcherURL: *dispatcher,
		App:           *app, User: *user, Device: *device,
		Platform: "pushctl",
		OnState: func(st sdk.State, _ string) {
			if st == sdk.StateConnected {
				select {
				case connected <- struct{}{}:
				default:
				}
			}
		},
		Logger: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Handler: func(ctx context.Context, m *sdk.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if *count > 0 && got >= *count {
				// Leave it unacknowledged for the next listener; we are
				// about to close.
				mu.Unlock()
				<-ctx.Done()
				mu.Lock()
				return ctx.Err()
			}
			if err := c.printMessage(m); err != nil {
				return err
			}
			got++
			if *count > 0 && got == *count {
				close(reached)
			}
			return nil
		},
	}
	if *endpoints != "" {
		cfg.Endpoints = strings.Split(*endpoints, ",")
	}
	if *tok != "" {
		cfg.Token = *tok
	} else {
		cfg.TokenFunc = func(context.Context) (string, error) {
			return mint(*secret, *app, *user, *device, defaultTokenTTL)
		}
	}
	client, err := sdk.New(cfg)
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var deadline <-chan time.Time
	if *timeout > 0 {
		t := time.NewTimer(*timeout)
		defer t.Stop()
		deadline = t.C
	}
	runErr := make(chan error, 1)
	go func() { runErr <- client.Run(runCtx) }()
	if len(toBind) > 0 {
		go func() {
			select {
			case <-connected:
			case <-runCtx.Done():
				return
			}
			for _, b := range toBind {
				bctx, bcancel := context.WithTimeout(runCtx, sdk.DefaultUplinkTimeout)
				err := client.Bind(bctx, b[0], b[1])
				bcancel()
				if err != nil {
					bindErr <- fmt.Errorf("bind %s: %w", b[0], err)
					return
				}
			}
		}()
	}

	var result error
	select {
	case <-reached:
	case err := <-bindErr:
		result = err
	case err := <-runErr:
		runErr <- err
		result = fmt.Errorf("client stopped after %d message(s): %w", countOf(&mu, &got), err)
	case <-deadline:
		if *count > 0 {
			result = fmt.Errorf("timeout after %s: received %d of %d message(s)", *timeout, countOf(&mu, &got), *count)
		}
	case <-ctx.Done():
		result = fmt.Errorf("interrupted after %d message(s)", countOf(&mu, &got))
	}
	// Close flushes the ACKs of what was printed.
	cctx, ccancel := context.WithTimeout(context.Background(), closeTimeout)
	defer ccancel()
	if err := client.Close(cctx); err != nil && result == nil {
		result = fmt.Errorf("close: %w", err)
	}
	return result
}

func countOf(mu *sync.Mutex, n *int) int {
	mu.Lock()
	defer mu.Unlock()
	return *n
}

func (c cli) printMessage(m *sdk.Message) error {
	l := line{ID: strconv.FormatUint(m.ID, 10), App: m.App, QoS: m.QoS}
	if utf8.Valid(m.Payload) {
		s := string(m.Payload)
		l.Payload = &s
	} else {
		l.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	return err
}

// parseBinds reads --bind's APP=TOKEN list.
func parseBinds(v string) ([][2]string, error) {
	if v == "" {
		return nil, nil
	}
	var out [][2]string
	for _, item := range strings.Split(v, ",") {
		app, tok, ok := strings.Cut(item, "=")
		if !ok || app == "" || tok == "" {
			return nil, fmt.Errorf("--bind %q: want APP=TOKEN[,APP=TOKEN...]", item)
		}
		out = append(out, [2]string{app, tok})
	}
	return out, nil
}
