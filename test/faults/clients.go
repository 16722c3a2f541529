package faults

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/sdk"
)

// closeTimeout bounds a client's Close, which flushes its pending ACKs.
const closeTimeout = 5 * time.Second

// fleet is the set of SDK clients, one device per user, that record every
// message their handler is given.
type fleet struct {
	dispatcherURL, app string
	tokenFor           func(user string) string
	chk                *checker
	bchk               *bcastChecker
	log                *slog.Logger

	mu      sync.Mutex
	clients []*client
	// retired sums the counters of clients replaced by offline.
	retired sdk.Stats
}

type client struct {
	user string
	sdk  *sdk.Client
	done chan error
}

// startFleet connects one client per user. tokenFor mints a client token.
func startFleet(dispatcherURL, app string, users []string, tokenFor func(user string) string, chk *checker, bchk *bcastChecker, log *slog.Logger) (*fleet, error) {
	f := &fleet{dispatcherURL: dispatcherURL, app: app, tokenFor: tokenFor, chk: chk, bchk: bchk, log: log}
	for _, u := range users {
		cl, err := f.start(u, 0)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.clients = append(f.clients, cl)
	}
	return f, nil
}

// start connects a client of user u that last handled broadcast seq
// lastBroadcast (what an app saves across restarts).
func (f *fleet) start(u string, lastBroadcast uint64) (*client, error) {
	c, err := sdk.New(sdk.Config{
		DispatcherURL: f.dispatcherURL,
		App:           f.app, User: u, Device: "d",
		TokenFunc:        func(context.Context) (string, error) { return f.tokenFor(u), nil },
		LastBroadcastSeq: lastBroadcast,
		Handler: func(_ context.Context, m *sdk.Message) error {
			if m.BroadcastSeq != 0 {
				f.bchk.delivered(string(m.Payload), u, m.ID)
				return nil
			}
			f.chk.delivered(delivery{key: string(m.Payload), user: u, id: m.ID, at: time.Now()})
			return nil
		},
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 2 * time.Second,
		// Every message of a run must stay in the window, so a
		// redelivery however late is recognised.
		DedupSize: 1 << 16,
		Logger:    f.log.With("user", u),
	})
	if err != nil {
		return nil, fmt.Errorf("faults: client %s: %w", u, err)
	}
	cl := &client{user: u, sdk: c, done: make(chan error, 1)}
	go func() { cl.done <- c.Run(context.Background()) }()
	return cl, nil
}

func (f *fleet) snapshot() []*client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*client(nil), f.clients...)
}

// offline closes the first n clients (flushing their ACKs, as an app
// going to the background does) and returns a function that brings each
// back as a new client of the same user.
func (f *fleet) offline(n int) (back func() error) {
	cls := f.snapshot()[:n]
	closeAll(cls)
	return func() error {
		for i, c := range cls {
			nc, err := f.start(c.user, c.sdk.LastBroadcastSeq())
			if err != nil {
				return err
			}
			f.mu.Lock()
			addStats(&f.retired, c.sdk.Stats())
			f.clients[i] = nc
			f.mu.Unlock()
		}
		return nil
	}
}

// stopped lists clients whose Run returned: a client must never give up
// on its own (a fatal auth error, a KICK) during a run.
func (f *fleet) stopped() []string {
	var out []string
	for _, c := range f.snapshot() {
		select {
		case err := <-c.done:
			c.done <- err
			out = append(out, fmt.Sprintf("%s: %v", c.user, err))
		default:
		}
	}
	return out
}

// reconnectAll drops every connection at once: a reconnect storm.
func (f *fleet) reconnectAll() {
	var wg sync.WaitGroup
	for _, c := range f.snapshot() {
		wg.Add(1)
		go func() { defer wg.Done(); c.sdk.Reconnect() }()
	}
	wg.Wait()
}

// stats sums the SDK counters, of replaced clients too.
func (f *fleet) stats() sdk.Stats {
	f.mu.Lock()
	s := f.retired
	f.mu.Unlock()
	for _, c := range f.snapshot() {
		addStats(&s, c.sdk.Stats())
	}
	return s
}

func addStats(dst *sdk.Stats, s sdk.Stats) {
	dst.Connects += s.Connects
	dst.Handled += s.Handled
	dst.Redelivered += s.Redelivered
	dst.HandlerErrs += s.HandlerErrs
}

func (f *fleet) stop() { closeAll(f.snapshot()) }

func closeAll(cls []*client) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.sdk.Close(ctx) // a client still closing at the deadline is abandoned
		}()
	}
	wg.Wait()
}
