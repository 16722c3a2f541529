package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis layout of tags. K is the identity of one set: {L:app:tag} for a
// tag, {L:app:user} for a user, with L = len(app) as in the inbox keys.
//
//	tagm:K           SET   the tag's members, plus the marker
//	utag:K           SET   the user's tags, plus the marker
//	tagf:K, utagf:K  STRING the token of the fill in flight (lease)
//	tagt:K:TOKEN,    SET   a fill being built, renamed onto the set
//	utagt:K:TOKEN
//
// The marker is the empty member "", which no user and no tag can be
// (both are non-empty): a set that holds it was filled from MySQL and is
// complete. Being a member, it lives and dies with its set (FLUSHALL,
// restart, eviction, expiry), so a set is never marked complete without
// its data. Reads answer from a marked set only; otherwise they read MySQL
// and queue a fill.
//
// Slots, for a later move to Redis Cluster: K is a hash tag, so a set, its
// lease and its fill share one slot; the fill's commit script uses all
// three. No command uses two sets, so no two tags or users need to share a
// slot, and one app's sets spread over the cluster. K opens the key, so a
// '{' or '}' inside a name cannot pick another hash tag: a '}' inside K
// only shortens the hashed part to a prefix of K, still the same for the
// set, its lease and its fill. A later "tag A and tag B" target (SINTER)
// would need its sets in one slot, which this layout does not give.
//
// Races: writes commit to MySQL, then update a marked set and delete the
// lease in one script. A fill sets the lease, reads MySQL, builds the new
// set aside and renames it onto the old one only if the lease is still its
// own; a write that happened meanwhile deleted the lease, so a fill that
// may have missed it is dropped, never stored. What is left is a write
// whose Redis update failed (Redis unreachable) while its set stayed
// marked: tagTrustWindow, the sets' TTL from their fill, bounds how long
// that set can be stale.
const (
	tagSetPrefix      = "tagm:"
	tagLeasePrefix    = "tagf:"
	tagTmpPrefix      = "tagt:"
	userTagsPrefix    = "utag:"
	userLeasePrefix   = "utagf:"
	userTmpPrefix     = "utagt:"
	tagMarker         = ""
	tagTrustWindow    = time.Hour
	tagFillLease      = 2 * time.Minute
	tagFillTimeout    = time.Minute
	tagFillPage       = 5000 // rows per MySQL read and per SADD while filling
	tagFillQueueLen   = 256
	tagFillWorkers    = 2
	tagRedisTimeout   = redisTimeout
	tagTokenBytes     = 12
	tagUpdateAdd      = "add"
	tagUpdateRemove   = "rem"
	tagUserPipelineSz = 500 // per-user scripts in one pipeline
)

// setKeys names one cached set.
type setKeys struct {
	set, lease, tmpPrefix string
}

func tagSetKeys(app, tag string) setKeys {
	k := userSuffix(app, tag) // braced: a Redis Cluster hash tag
	return setKeys{set: tagSetPrefix + k, lease: tagLeasePrefix + k, tmpPrefix: tagTmpPrefix + k + ":"}
}

func userTagKeys(app, user string) setKeys {
	k := userSuffix(app, user)
	return setKeys{set: userTagsPrefix + k, lease: userLeasePrefix + k, tmpPrefix: userTmpPrefix + k + ":"}
}

// updateScript applies a committed write to a marked set and ends any fill
// in flight. KEYS: set, lease. ARGV: add|rem, members...
var updateScript = redis.NewScript(`
redis.call('DEL', KEYS[2])
if redis.call('SISMEMBER', KEYS[1], '') == 1 then
  if ARGV[1] == 'add' then
    redis.call('SADD', KEYS[1], unpack(ARGV, 2))
  else
    redis.call('SREM', KEYS[1], unpack(ARGV, 2))
  end
end
return 0`)

// commitFillScript puts a finished fill in place if no write came since
// its lease was taken. KEYS: set, lease, tmp. ARGV: token, ttl ms.
var commitFillScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  redis.call('DEL', KEYS[3])
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[3], '')
redis.call('RENAME', KEYS[3], KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// fillJob loads one set from MySQL: page returns up to n entries after the
// given one, in byte order.
type fillJob struct {
	keys setKeys
	page func(ctx context.Context, after string, n int) ([]string, error)
}

// tagCache is the Redis side of tags with its bounded background filler.
type tagCache struct {
	rdb redis.UniversalClient
	m   *tagMetrics
	log *slog.Logger

	queue   chan fillJob
	mu      sync.Mutex
	queued  map[string]bool // sets queued or being filled
	stop    context.CancelFunc
	stopCtx context.Context
	wg      sync.WaitGroup
}

func newTagCache(rdb redis.UniversalClient, m *tagMetrics, log *slog.Logger) *tagCache {
	ctx, cancel := context.WithCancel(context.Background())
	c := &tagCache{rdb: rdb, m: m, log: log, queue: make(chan fillJob, tagFillQueueLen), queued: map[string]bool{},
		stop: cancel, stopCtx: ctx}
	for range tagFillWorkers {
		c.wg.Add(1)
		go c.worker()
	}
	return c
}

// close stops the fillers; a fill cut short leaves its set unmarked.
func (c *tagCache) close() {
	c.stop()
	c.wg.Wait()
}

// update applies a committed write: the tag's set and each user's set.
func (c *tagCache) update(ctx context.Context, app, tag string, users []string, op string) error {
	if len(users) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, tagRedisTimeout)
	defer cancel()
	tk := tagSetKeys(app, tag)
	args := strArgs([]any{op}, users)
	if err := updateScript.Run(ctx, c.rdb, []string{tk.set, tk.lease}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("saver: tag update %s/%s: %w", app, tag, err)
	}
	// The script just ran on this Redis, so EVALSHA finds it; a Redis that
	// restarted since answers NOSCRIPT, which a pipeline cannot turn into
	// EVAL, so the script is loaded and the page (idempotent) sent again.
	reloaded := false
	for start := 0; start < len(users); {
		end := min(start+tagUserPipelineSz, len(users))
		p := c.rdb.Pipeline()
		for _, u := range users[start:end] {
			uk := userTagKeys(app, u)
			updateScript.EvalSha(ctx, p, []string{uk.set, uk.lease}, op, tag)
		}
		_, err := p.Exec(ctx)
		if err != nil && !reloaded && redis.HasErrorPrefix(err, "NOSCRIPT") {
			reloaded = true
			if err := updateScript.Load(ctx, c.rdb).Err(); err != nil {
				return fmt.Errorf("saver: load tag script: %w", err)
			}
			continue
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("saver: user tag update %s (%d users): %w", app, len(users), err)
		}
		start = end
	}
	return nil
}

// userTags returns the user's tags from a marked set; ok is false when the
// set is not there to answer.
func (c *tagCache) userTags(ctx context.Context, app, user string) (tags []string, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, tagRedisTimeout)
	defer cancel()
	all, err := c.rdb.SMembers(ctx, userTagKeys(app, user).set).Result()
	if err != nil {
		return nil, false, fmt.Errorf("saver: tags of %s/%s: %w", app, user, err)
	}
	tags = make([]string, 0, len(all))
	for _, t := range all {
		if t == tagMarker {
			ok = true
		} else {
			tags = append(tags, t)
		}
	}
	if !ok {
		return nil, false, nil
	}
	sort.Strings(tags)
	return tags, true, nil
}

// membership returns which of users are members, from a marked set.
func (c *tagCache) membership(ctx context.Context, app, tag string, users []string) (map[string]bool, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, tagRedisTimeout)
	defer cancel()
	args := strArgs([]any{tagMarker}, users)
	res, err := c.rdb.SMIsMember(ctx, tagSetKeys(app, tag).set, args...).Result()
	if err != nil {
		return nil, false, fmt.Errorf("saver: membership in %s/%s: %w", app, tag, err)
	}
	if len(res) != len(users)+1 || !res[0] {
		return nil, false, nil
	}
	out := make(map[string]bool, len(users))
	for i, u := range users {
		if res[i+1] {
			out[u] = true
		}
	}
	return out, true, nil
}

// queueFill asks for a set to be filled in the background; a full queue
// or a fill already queued drops the request (the next read asks again).
func (c *tagCache) queueFill(j fillJob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queued[j.keys.set] {
		return
	}
	select {
	case c.queue <- j:
		c.queued[j.keys.set] = true
	default:
		c.m.fills.WithLabelValues("dropped").Inc()
	}
}

func (c *tagCache) worker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stopCtx.Done():
			return
		case j := <-c.queue:
			ctx, cancel := context.WithTimeout(c.stopCtx, tagFillTimeout)
			done, err := c.fill(ctx, j)
			cancel()
			c.mu.Lock()
			delete(c.queued, j.keys.set)
			c.mu.Unlock()
			switch {
			case err != nil:
				c.m.fills.WithLabelValues("failed").Inc()
				c.log.Warn("tag set fill failed; reads keep using MySQL", "key", j.keys.set, "err", err)
			case done:
				c.m.fills.WithLabelValues("done").Inc()
			default:
				c.m.fills.WithLabelValues("raced").Inc()
			}
		}
	}
}

// fill copies one set from MySQL to Redis under a lease; false means a
// write came meanwhile and the copy was dropped.
func (c *tagCache) fill(ctx context.Context, j fillJob) (bool, error) {
	b := make([]byte, tagTokenBytes)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	tmp := j.keys.tmpPrefix + token
	if err := c.rdb.Set(ctx, j.keys.lease, token, tagFillLease).Err(); err != nil {
		return false, fmt.Errorf("lease: %w", err)
	}
	after := ""
	for {
		page, err := j.page(ctx, after, tagFillPage)
		if err != nil {
			c.rdb.Del(context.WithoutCancel(ctx), tmp)
			return false, err
		}
		if len(page) > 0 {
			p := c.rdb.Pipeline()
			p.SAdd(ctx, tmp, strArgs(nil, page)...)
			p.PExpire(ctx, tmp, tagFillLease)
			if _, err := p.Exec(ctx); err != nil {
				return false, fmt.Errorf("build %s: %w", tmp, err)
			}
			after = page[len(page)-1]
		}
		if len(page) < tagFillPage {
			break
		}
	}
	n, err := commitFillScript.Run(ctx, c.rdb, []string{j.keys.set, j.keys.lease, tmp}, token, tagTrustWindow.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("commit %s: %w", j.keys.set, err)
	}
	return n == 1, nil
}
