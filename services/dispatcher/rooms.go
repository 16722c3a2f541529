package main

import (
	"sync/atomic"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// roomSet is one consistent view of the local rooms and the etcd revision
// it reflects.
type roomSet struct {
	rooms []roomEntry
	// version is the etcd revision of the room list; etcdID names the etcd
	// cluster, since revisions of two clusters do not compare.
	version int64
	etcdID  uint64
}

// roomTable is the current set of rooms clients may be sent to, swapped
// whole on every change so requests read it without locks.
type roomTable struct {
	set   atomic.Pointer[roomSet]
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
			list = append(list, roomEntry{ID: in.ID, Endpoint: ep, IDC: in.IDC, Load: in.Load})
		}
		rev, etcdID := w.Revision()
		t.set.Store(&roomSet{rooms: list, version: rev, etcdID: etcdID})
		if t.gauge != nil {
			t.gauge(float64(len(list)))
		}
	})
}

func (t *roomTable) snapshot() roomSet {
	if p := t.set.Load(); p != nil {
		return *p
	}
	return roomSet{}
}
