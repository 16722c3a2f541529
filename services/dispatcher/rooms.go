package main

import (
	"sync/atomic"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// roomTable is the current set of rooms clients may be sent to, swapped
// whole on every change so requests read it without locks.
type roomTable struct {
	rooms atomic.Pointer[[]roomEntry]
	gauge func(float64)
}

func (t *roomTable) follow(w *discovery.Watcher) {
	w.OnChange(func(set []discovery.Instance) {
		list := make([]roomEntry, 0, len(set))
		for _, in := range set {
			ep := in.Endpoints["tcp"]
			// Draining rooms are shedding their clients; sending new ones
			// there would only bounce them.
			if ep == "" || in.Draining {
				continue
			}
			list = append(list, roomEntry{ID: in.ID, Endpoint: ep, IDC: in.IDC})
		}
		t.rooms.Store(&list)
		if t.gauge != nil {
			t.gauge(float64(len(list)))
		}
	})
}

func (t *roomTable) snapshot() []roomEntry {
	if p := t.rooms.Load(); p != nil {
		return *p
	}
	return nil
}
