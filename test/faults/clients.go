package faults

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/sdk"
)

// fleet is the set of SDK clients, one device per user, that record every
// message their handler is given.
type fleet struct {
	clients []*client
}

type client struct {
	user string
	sdk  *sdk.Client
	done chan error
}

// startFleet connects one client per user. tokenFor mints a client token.
func startFleet(dispatcherURL, app string, users []string, tokenFor func(user string) string, chk *checker, log *slog.Logger) (*fleet, error) {
	f := &fleet{}
	for _, u := range users {
		cl := &client{user: u, done: make(chan error, 1)}
		c, err := sdk.New(sdk.Config{
			DispatcherURL: dispatcherURL,
			App:           app, User: u, Device: "d",
			TokenFunc: func(context.Context) (string, error) { return tokenFor(u), nil },
			Handler: func(_ context.Context, m *sdk.Message) error {
				chk.delivered(delivery{key: string(m.Payload), user: u, id: m.ID, at: time.Now()})
				return nil
			},
			BackoffMin: 50 * time.Millisecond,
			BackoffMax: 2 * time.Second,
			// Every message of a run must stay in the window, so a
			// redelivery however late is recognised.
			DedupSize: 1 << 16,
			Logger:    log.With("user", u),
		})
		if err != nil {
			f.stop()
			return nil, fmt.Errorf("faults: client %s: %w", u, err)
		}
		cl.sdk = c
		go func() { cl.done <- c.Run(context.Background()) }()
		f.clients = append(f.clients, cl)
	}
	return f, nil
}

// stopped lists clients whose Run returned: a client must never give up
// on its own (a fatal auth error, a KICK) during a run.
func (f *fleet) stopped() []string {
	var out []string
	for _, c := range f.clients {
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
	for _, c := range f.clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.sdk.Reconnect() }()
	}
	wg.Wait()
}

// stats sums the SDK counters.
func (f *fleet) stats() sdk.Stats {
	var s sdk.Stats
	for _, c := range f.clients {
		cs := c.sdk.Stats()
		s.Connects += cs.Connects
		s.Handled += cs.Handled
		s.Redelivered += cs.Redelivered
		s.HandlerErrs += cs.HandlerErrs
	}
	return s
}

func (f *fleet) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.sdk.Close(ctx) // a client still closing at the deadline is abandoned
		}()
	}
	wg.Wait()
}
