package main

import (
	"container/list"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// ipShards spreads the per-IP buckets over this many locks so concurrent
// requests from different clients rarely contend.
const ipShards = 32

// ipLimiter is a token bucket per client IP, kept in a bounded LRU: when
// full, the IP seen least recently is forgotten (it starts again with a full
// bucket), so memory stays bounded however many addresses knock.
type ipLimiter struct {
	rate, burst float64
	perShard    int
	seed        maphash.Seed
	shards      [ipShards]ipShard
}

type ipShard struct {
	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *ipBucket, most recent at the front
}

type ipBucket struct {
	ip     string
	tokens float64
	last   time.Time
}

// newIPLimiter allows rate requests a second per IP with bursts of burst,
// tracking at most maxIPs addresses. rate <= 0 returns nil: no limit.
func newIPLimiter(rate float64, burst, maxIPs int) *ipLimiter {
	if rate <= 0 {
		return nil
	}
	l := &ipLimiter{rate: rate, burst: float64(max(burst, 1)), perShard: max(maxIPs/ipShards, 1), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*list.Element)
	}
	return l
}

// allow takes one token for ip. When none is left it says how long until
// one is.
func (l *ipLimiter) allow(ip string, now time.Time) (bool, time.Duration) {
	sh := &l.shards[maphash.String(l.seed, ip)%ipShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var b *ipBucket
	if el, ok := sh.m[ip]; ok {
		sh.lru.MoveToFront(el)
		b = el.Value.(*ipBucket)
		b.tokens = math.Min(l.burst, b.tokens+max(now.Sub(b.last).Seconds(), 0)*l.rate)
		b.last = now
	} else {
		if sh.lru.Len() >= l.perShard {
			old := sh.lru.Back()
			sh.lru.Remove(old)
			delete(sh.m, old.Value.(*ipBucket).ip)
		}
		b = &ipBucket{ip: ip, tokens: l.burst, last: now}
		sh.m[ip] = sh.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// size is the number of IPs tracked.
func (l *ipLimiter) size() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += l.shards[i].lru.Len()
		l.shards[i].mu.Unlock()
	}
	return n
}

// clientIP is the peer address of the connection. X-Forwarded-For is not
// trusted: any client could set it to dodge its limit.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// retryAfterSeconds rounds d up to whole seconds, at least 1, as
// Retry-After wants.
func retryAfterSeconds(d time.Duration) int {
	return max(int(math.Ceil(d.Seconds())), 1)
}
