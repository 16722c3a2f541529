package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Redis layout.
//
// One hash per user, key "reg:{<len(app)>:<app>:<user>}" (the length prefix
// keeps ("a:b","c") and ("a","b:c") apart; the braces are a Redis Cluster
// hash tag, the same as saver's inbox keys of that user, so the user's keys
// share a slot). Each device owns three fields:
//
//	d:<device>  the marshalled internalpb.Session
//	o:<device>  owner = room_id "\x00" conn_id, compared by Delete/Refresh
//	e:<device>  expiry in unix milliseconds (Redis clock)
//
// Redis 7.0 has no per-field TTL (HEXPIRE is 7.4), so each device's expiry
// lives in its e: field and every read ignores expired devices; Put prunes
// them. The hash itself carries a TTL that only ever grows to the newest
// device expiry, so a user whose devices all stop refreshing disappears on
// its own. Every write runs in Lua on a single key, so each is atomic
// (Delete's owner check cannot race a newer Put); lookup only reads (see
// there). All of them take the time from Redis, so register instances
// with skewed clocks agree.
const keyPrefix = "reg:"

func userKey(app, user string) string {
	return keyPrefix + "{" + strconv.Itoa(len(app)) + ":" + app + ":" + user + "}"
}

func owner(s *internalpb.Session) string {
	return s.GetRoomId() + "\x00" + strconv.FormatUint(s.GetConnId(), 10)
}

// luaNow is shared by every script: milliseconds on the Redis clock.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(key, dev)
  redis.call('HDEL', key, 'd:' .. dev, 'o:' .. dev, 'e:' .. dev)
end
local function grow_ttl(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
`

// putScript: ARGV = device, owner, session, ttl_ms. Last write wins: a
// room only puts a session for a connection that just authenticated.
var putScript = redis.NewScript(luaNow + `
local key, dev, ttl = KEYS[1], ARGV[1], tonumber(ARGV[4])
redis.call('HSET', key, 'd:' .. dev, ARGV[3], 'o:' .. dev, ARGV[2], 'e:' .. dev, now + ttl)
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, 2) == 'e:' and tonumber(all[i + 1]) <= now then
    drop(key, string.sub(f, 3))
  end
end
grow_ttl(key, ttl)
return 1
`)

// Refresh outcomes returned by refreshScript.
const (
	refreshMissing    = 0 // not stored (or expired): the room must re-put it
	refreshOK         = 1
	refreshSuperseded = 2 // the device logged in elsewhere since; leave it
)

// refreshScript: ARGV = device, owner, ttl_ms.
var refreshScript = redis.NewScript(luaNow + `
local key, dev, ttl = KEYS[1], ARGV[1], tonumber(ARGV[3])
local v = redis.call('HMGET', key, 'o:' .. dev, 'e:' .. dev)
if not v[1] then return 0 end
if tonumber(v[2]) <= now then
  drop(key, dev)
  return 0
end
if v[1] ~= ARGV[2] then return 2 end
redis.call('HSET', key, 'e:' .. dev, now + ttl)
grow_ttl(key, ttl)
return 1
`)

// deleteScript: ARGV = device, owner. Removes the device only while it
// still belongs to the same connection, so an old connection's logout never
// deletes a newer login.
var deleteScript = redis.NewScript(`
local dev = ARGV[1]
if redis.call('HGET', KEYS[1], 'o:' .. dev) == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'd:' .. dev, 'o:' .. dev, 'e:' .. dev)
  return 1
end
return 0
`)

// store runs the scripts above, pipelined per batch.
type store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

var allScripts = []*redis.Script{putScript, refreshScript, deleteScript}

// loadScripts puts every script into Redis's cache so pipelines can use
// EVALSHA; also the start-up reachability check.
func (s *store) loadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("register: load script: %w", err)
		}
	}
	return nil
}

// pipelined queues n EVALSHAs of sc and executes them. If Redis forgot the
// script (restart, SCRIPT FLUSH) it reloads it and runs the batch again;
// every script is idempotent, so re-running the ones that did succeed is
// harmless.
func (s *store) pipelined(ctx context.Context, sc *redis.Script, n int, queue func(p redis.Pipeliner, i int) *redis.Cmd) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, n)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < n; i++ {
				cmds[i] = queue(p, i)
			}
			return nil
		})
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if lerr := sc.Load(ctx, s.rdb).Err(); lerr != nil {
				return nil, fmt.Errorf("reload script: %w", lerr)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return cmds, nil
	}
}

func (s *store) put(ctx context.Context, sessions []*internalpb.Session) error {
	blobs := make([][]byte, len(sessions))
	for i, ss := range sessions {
		b, err := proto.Marshal(ss)
		if err != nil {
			return fmt.Errorf("register: marshal session %s/%s: %w", ss.GetApp(), ss.GetUser(), err)
		}
		blobs[i] = b
	}
	ttl := s.ttl.Milliseconds()
	_, err := s.pipelined(ctx, putScript, len(sessions), func(p redis.Pipeliner, i int) *redis.Cmd {
		ss := sessions[i]
		return putScript.EvalSha(ctx, p, []string{userKey(ss.GetApp(), ss.GetUser())}, ss.GetDevice(), owner(ss), blobs[i], ttl)
	})
	if err != nil {
		return fmt.Errorf("register: put %d sessions: %w", len(sessions), err)
	}
	return nil
}

// refresh extends the sessions and returns those Redis no longer had.
func (s *store) refresh(ctx context.Context, sessions []*internalpb.Session) (missing []*internalpb.Session, superseded int, err error) {
	ttl := s.ttl.Milliseconds()
	cmds, err := s.pipelined(ctx, refreshScript, len(sessions), func(p redis.Pipeliner, i int) *redis.Cmd {
		ss := sessions[i]
		return refreshScript.EvalSha(ctx, p, []string{userKey(ss.GetApp(), ss.GetUser())}, ss.GetDevice(), owner(ss), ttl)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("register: refresh %d sessions: %w", len(sessions), err)
	}
	for i, c := range cmds {
		switch v, _ := c.Int64(); v {
		case refreshMissing:
			missing = append(missing, sessions[i])
		case refreshSuperseded:
			superseded++
		}
	}
	return missing, superseded, nil
}

// del removes the sessions still owned by their connection and returns
// how many it removed.
func (s *store) del(ctx context.Context, sessions []*internalpb.Session) (int, error) {
	cmds, err := s.pipelined(ctx, deleteScript, len(sessions), func(p redis.Pipeliner, i int) *redis.Cmd {
		ss := sessions[i]
		return deleteScript.EvalSha(ctx, p, []string{userKey(ss.GetApp(), ss.GetUser())}, ss.GetDevice(), owner(ss))
	})
	if err != nil {
		return 0, fmt.Errorf("register: delete %d sessions: %w", len(sessions), err)
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int64(); v == 1 {
			n++
		}
	}
	return n, nil
}

// lookup returns the sessions of the users' live devices. It is the call
// center makes for every batch of pushes, so it reads without a script:
// one pipeline of TIME and an HGETALL per user, the expiry check done here
// against the Redis clock that TIME read (as the scripts use it). A script
// doing the same costs Redis about half again as much per user
// (BenchmarkLookup). Reading is all it does, so nothing needs the
// atomicity of a script.
func (s *store) lookup(ctx context.Context, users []*internalpb.UserKey) ([]*internalpb.Session, error) {
	var now *redis.TimeCmd
	hashes := make([]*redis.MapStringStringCmd, len(users))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		for i, u := range users {
			hashes[i] = p.HGetAll(ctx, userKey(u.GetApp(), u.GetUser()))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("register: lookup %d users: %w", len(users), err)
	}
	nowMs := now.Val().UnixMilli()
	var out []*internalpb.Session
	for i, h := range hashes {
		for f, blob := range h.Val() {
			dev, ok := strings.CutPrefix(f, "d:")
			if !ok {
				continue
			}
			// A device without a readable expiry is treated as expired, as
			// the scripts' tonumber would not match it either.
			exp, err := strconv.ParseInt(h.Val()["e:"+dev], 10, 64)
			if err != nil || exp <= nowMs {
				continue
			}
			ss := &internalpb.Session{}
			if err := proto.Unmarshal([]byte(blob), ss); err != nil {
				return nil, fmt.Errorf("register: decode session of %s/%s: %w", users[i].GetApp(), users[i].GetUser(), err)
			}
			out = append(out, ss)
		}
	}
	return out, nil
}
