package main

import (
	"container/list"
	"sync"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// The route cache remembers where each user's sessions were at the last
// Register lookup that answered, so that deliveries keep going while
// Register, or the Redis behind it, cannot answer. Without it every
// message of such an outage waits for Register's return and then for the
// retrier's next round: seconds for every user at once. Using an old
// answer is safe: a room refuses a target whose connection is gone
// (NOT_FOUND), that message goes to the retrier like any failed delivery,
// and a copy written twice is dropped by id on the connection. The cache
// is consulted only when the lookup failed, never instead of it, so a
// healthy Register stays the only source of truth.

const (
	// defaultRouteCacheSize bounds the users remembered; the least
	// recently looked-up go first. An entry holds the user's few session
	// records (a couple of hundred bytes each).
	defaultRouteCacheSize = 100_000
	// defaultRouteCacheTTL is how old a remembered answer may be and
	// still be used: about register's session TTL, past which the answer
	// would have expired there too.
	defaultRouteCacheTTL = 30 * time.Second
)

type routeEntry struct {
	key      userKey
	sessions []*internalpb.Session
	at       time.Time
}

// routeCache is an LRU of userKey → the sessions of the last answer.
type routeCache struct {
	max int
	ttl time.Duration

	mu  sync.Mutex
	m   map[userKey]*list.Element
	lru list.List // front: most recently remembered
}

// newRouteCache returns a cache of at most size users; size 0 turns it off
// (nil cache: remember and recall do nothing).
func newRouteCache(size int, ttl time.Duration) *routeCache {
	if size <= 0 || ttl <= 0 {
		return nil
	}
	return &routeCache{max: size, ttl: ttl, m: make(map[userKey]*list.Element, min(size, 1<<16))}
}

// remember stores the answer of a lookup for keys: each key's sessions
// (none: the user is offline, and the entry goes).
func (c *routeCache) remember(keys []*internalpb.UserKey, sessions []*internalpb.Session, now time.Time) {
	if c == nil {
		return
	}
	byUser := make(map[userKey][]*internalpb.Session, len(sessions))
	for _, ss := range sessions {
		k := userKey{ss.GetApp(), ss.GetUser()}
		byUser[k] = append(byUser[k], ss)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pk := range keys {
		k := userKey{pk.GetApp(), pk.GetUser()}
		ss := byUser[k]
		el, ok := c.m[k]
		if len(ss) == 0 {
			if ok {
				c.lru.Remove(el)
				delete(c.m, k)
			}
			continue
		}
		if ok {
			e := el.Value.(*routeEntry)
			e.sessions, e.at = ss, now
			c.lru.MoveToFront(el)
			continue
		}
		c.m[k] = c.lru.PushFront(&routeEntry{key: k, sessions: ss, at: now})
		if c.lru.Len() > c.max {
			old := c.lru.Back()
			c.lru.Remove(old)
			delete(c.m, old.Value.(*routeEntry).key)
		}
	}
}

// recall returns the remembered sessions of keys that are fresh enough,
// and the keys it knows nothing (fresh) about.
func (c *routeCache) recall(keys []*internalpb.UserKey, now time.Time) (sessions []*internalpb.Session, unknown []*internalpb.UserKey) {
	if c == nil {
		return nil, keys
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pk := range keys {
		el, ok := c.m[userKey{pk.GetApp(), pk.GetUser()}]
		if !ok || now.Sub(el.Value.(*routeEntry).at) > c.ttl {
			unknown = append(unknown, pk)
			continue
		}
		sessions = append(sessions, el.Value.(*routeEntry).sessions...)
	}
	return sessions, unknown
}

// len is the number of users remembered.
func (c *routeCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
