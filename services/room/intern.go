package main

import "sync"

// maxInternedApps bounds the room's app-name table. Only names whose token
// verified against an app's secret are interned, so the table holds the
// apps that ever logged in here; past the bound a name is used as given.
const maxInternedApps = 4096

// interner hands out one shared copy of each string it has seen, so
// thousands of sessions of one app do not each keep their own copy of its
// name. Safe for concurrent use.
type interner struct {
	max int
	mu  sync.RWMutex
	m   map[string]string
}

func newInterner(max int) *interner {
	return &interner{max: max, m: map[string]string{}}
}

// intern returns the shared copy of s.
func (in *interner) intern(s string) string {
	in.mu.RLock()
	v, ok := in.m[s]
	in.mu.RUnlock()
	if ok {
		return v
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) >= in.max {
		return s
	}
	in.m[s] = s
	return s
}
