package test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/sdk"
)

// sdkClient runs an SDK client and records what it receives and where it
// is connected.
type sdkClient struct {
	*sdk.Client

	mu       sync.Mutex
	endpoint string
	got      map[uint64]int
	order    []uint64
	cancel   context.CancelFunc
	done     chan error
}

func startSDK(t *testing.T, c *Cluster, user, device string) *sdkClient {
	t.Helper()
	s := &sdkClient{got: map[uint64]int{}, done: make(chan error, 1)}
	cl, err := sdk.New(sdk.Config{
		DispatcherURL: c.DispatcherURL,
		App:           c.App, User: user, Device: device,
		TokenFunc: func(context.Context) (string, error) { return c.Token(user, device, time.Hour), nil },
		Handler: func(_ context.Context, m *sdk.Message) error {
			s.mu.Lock()
			s.got[m.ID]++
			s.order = append(s.order, m.ID)
			s.mu.Unlock()
			return nil
		},
		OnState: func(st sdk.State, ep string) {
			s.mu.Lock()
			if st == sdk.StateConnected {
				s.endpoint = ep
			} else if s.endpoint == ep {
				s.endpoint = ""
			}
			s.mu.Unlock()
		},
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Client = cl
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer ccancel()
		_ = cl.Close(cctx)
		<-s.done
	})
	return s
}

func (s *sdkClient) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoint
}

func (s *sdkClient) Count(id uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[id]
}
