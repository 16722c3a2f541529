package main

import (
	"fmt"
	"sync"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// roomSet holds center's connections to rooms. Only addresses of rooms
// discovery knows are dialed: a session record naming any other address is
// stale (its room is gone), and dialing whatever Redis says would let one
// bad record make center connect anywhere.
type roomSet struct {
	pool *grpcconn.Pool

	mu    sync.RWMutex
	known map[string]bool
}

func newRoomSet() *roomSet {
	return &roomSet{pool: grpcconn.NewPool(), known: map[string]bool{}}
}

// follow keeps the set in step with w. Draining rooms stay: they still
// hold connections that should get their messages.
func (rs *roomSet) follow(w *discovery.Watcher) {
	w.OnChange(func(set []discovery.Instance) {
		keep := make(map[string]bool, len(set))
		for _, in := range set {
			if in.Addr != "" {
				keep[in.Addr] = true
			}
		}
		rs.mu.Lock()
		rs.known = keep
		rs.mu.Unlock()
		rs.pool.Retain(keep)
	})
}

func (rs *roomSet) client(addr string) (internalpb.RoomClient, error) {
	rs.mu.RLock()
	ok := rs.known[addr]
	rs.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("room %s: not a live room instance", addr)
	}
	cc, err := rs.pool.Get(addr)
	if err != nil {
		return nil, err
	}
	return internalpb.NewRoomClient(cc), nil
}

func (rs *roomSet) close() { rs.pool.Close() }
