package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Trusted-empty inboxes for batched logins (pending_batch.go).
//
// A user with nothing pending used to cost a MySQL read at every login
// whose inbox carried no marker (inbox.go): every new user, and every user
// back after inboxTrustWindow. A batch of logins now probes all its users'
// inboxes in one pipelined round trip, checks the unmarked ones' emptiness
// with one MySQL query per app, and marks the empty ones complete, so
// their next login within the window costs Redis alone.
//
// Marking an inbox complete after a MySQL read is racy on its own: a Store
// committed after the read writes Redis after its commit, and a FLUSHALL
// between the read and the mark would leave a marked inbox without that
// message. So, like the tag sets' fills (tags_cache.go), the probe takes a
// lease per unmarked user:
//
//	inboxf:{L:app:user}  STRING  token of the probe that may mark the inbox
//
// Every inbox write (addToPipe: Store, StoreMulti, transactions, fills)
// deletes the lease, FLUSHALL and restarts delete it with everything else,
// and the mark is a script that sets the marker only while the lease still
// holds the probe's token. A mark that lost its lease is dropped (counted
// as raced); the user's next login reads MySQL again. The lease's TTL only
// bounds the garbage of probes that never mark (a user with messages, a
// saver that died): correctness never depends on it.
const (
	inboxLeasePrefix = "inboxf:"
	// inboxLeaseTTL outlives a batch's MySQL read by far (its deadline is
	// the call's); a slower read only loses its mark.
	inboxLeaseTTL    = 30 * time.Second
	inboxTokenBytes  = 12
	markResultDone   = "done"
	markResultRaced  = "raced"
	probeUntrusted   = -1 // unmarked or stale: the probe took the lease
	probeEmpty       = 0  // marked and nothing at or after the cursor
	probeHasEntries  = 1  // marked, entries at or after the cursor
	markScriptResult = 1
)

func inboxLeaseKey(app, user string) string { return inboxLeasePrefix + userSuffix(app, user) }

// probeScript tells whether an inbox is marked complete within the trust
// window and has entries at or after a score; an untrusted inbox gets the
// caller's lease. KEYS: zset, hash, lease. ARGV: min score, token, lease
// ms, now ms, window ms. Returns probeUntrusted, probeEmpty or
// probeHasEntries.
var probeScript = redis.NewScript(`
local z = redis.call('ZSCORE', KEYS[1], '~')
local h = redis.call('HGET', KEYS[2], '~')
if z and h and tonumber(h) and tonumber(ARGV[4]) - tonumber(h) <= tonumber(ARGV[5]) then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, 1)
  if #ids > 0 then return 1 end
  return 0
end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return -1`)

// markScript marks an inbox complete if the lease is still the probe's.
// KEYS: zset, hash, lease. ARGV: token, now ms, key deadline ms. The TTL
// only grows, as in extendTTL.
var markScript = redis.NewScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[3])
redis.call('ZADD', KEYS[1], -1, '~')
redis.call('HSET', KEYS[2], '~', ARGV[2])
for i = 1, 2 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[3], 'NX')
  redis.call('PEXPIREAT', KEYS[i], ARGV[3], 'GT')
end
return 1`)

// probe is one user's inbox as the batch probe found it.
type probe struct {
	u     userRef
	after uint64
	state int64
	token string
}

func newLeaseToken() string {
	b := make([]byte, inboxTokenBytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runScripts sends one script call per item in one pipeline. The scripts
// are loaded on first use; a Redis that restarted since answers NOSCRIPT,
// which a pipeline cannot turn into EVAL, so the script is loaded and the
// (idempotent per attempt) pipeline sent once more.
func (in *inbox) runScripts(ctx context.Context, s *redis.Script, n int, call func(p redis.Pipeliner, i int) *redis.Cmd) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		p := in.rdb.Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i := range n {
			cmds[i] = call(p, i)
		}
		_, err := p.Exec(ctx)
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := s.Load(ctx, in.rdb).Err(); err != nil {
				return nil, fmt.Errorf("load script: %w", err)
			}
			continue
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		return cmds, nil
	}
}

// probeAll probes every user's inbox in one pipelined round trip and
// takes a lease on each untrusted one.
func (in *inbox) probeAll(ctx context.Context, ps []probe, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	for i := range ps {
		ps[i].token = newLeaseToken()
	}
	nowMs, window, lease := now.UnixMilli(), inboxTrustWindow.Milliseconds(), inboxLeaseTTL.Milliseconds()
	cmds, err := in.runScripts(ctx, probeScript, len(ps), func(p redis.Pipeliner, i int) *redis.Cmd {
		u := ps[i].u
		minScore := strconv.FormatFloat(float64(ps[i].after), 'f', -1, 64)
		return probeScript.EvalSha(ctx, p, []string{inboxKey(u.app, u.user), bodyKey(u.app, u.user), inboxLeaseKey(u.app, u.user)},
			minScore, ps[i].token, lease, nowMs, window)
	})
	if err != nil {
		return fmt.Errorf("saver: inbox probe of %d users: %w", len(ps), err)
	}
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return fmt.Errorf("saver: inbox probe %s/%s: %w", ps[i].u.app, ps[i].u.user, err)
		}
		ps[i].state = n
	}
	return nil
}

// markEmpty marks the inboxes of users MySQL found empty as complete, each
// only if its lease held; it returns how many were marked.
func (in *inbox) markEmpty(ctx context.Context, ps []probe, now time.Time) (int, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	nowMs, deadline := now.UnixMilli(), now.Add(inboxTrustWindow).UnixMilli()
	cmds, err := in.runScripts(ctx, markScript, len(ps), func(p redis.Pipeliner, i int) *redis.Cmd {
		u := ps[i].u
		return markScript.EvalSha(ctx, p, []string{inboxKey(u.app, u.user), bodyKey(u.app, u.user), inboxLeaseKey(u.app, u.user)},
			ps[i].token, nowMs, deadline)
	})
	if err != nil {
		return 0, fmt.Errorf("saver: mark %d inboxes empty: %w", len(ps), err)
	}
	marked := 0
	for _, c := range cmds {
		if n, err := c.Int64(); err == nil && n == markScriptResult {
			marked++
		}
	}
	return marked, nil
}
