package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Redis inbox layout, per (app, user), with L = len(app) so that
// ("a:b","c") and ("a","b:c") get different keys. The braces are a Redis
// Cluster hash tag: both keys of one user hash to the same slot, so fill's
// MULTI/EXEC and every pipeline touching one user stay on one node.
//
//	inbox:{L:app:user}   ZSET  member = id as 20 zero-padded digits,
//	                         score = id. Scores are float64 and lose the
//	                         low bits of 64-bit ids, but ties are broken by
//	                         member, and padded members sort like the ids,
//	                         so ZRANGE is exactly oldest first.
//	inboxm:{L:app:user}  HASH  field = the same member, value = marshalled
//	                         internalpb.Message (without state and count).
//
// The inbox is only a cache of MySQL. An inbox that was filled from MySQL
// carries a marker: member "~" with score -1 in the ZSET (outside the id
// range that reads scan) and field "~" in the HASH holding the fill time in
// ms. Pending trusts an inbox only while both markers exist and the fill is
// younger than inboxTrustWindow; otherwise it reads MySQL and refills.
// Store adds messages to the inbox but never sets the marker, so an inbox
// that Redis lost and Store recreated is never mistaken for a complete one,
// and a message whose Redis write failed after its commit is seen at the
// latest one window later.
const (
	inboxKeyPrefix   = "inbox:"
	bodyKeyPrefix    = "inboxm:"
	markerMember     = "~"
	inboxTrustWindow = 10 * time.Minute
	// inboxNoExpiryTTL is the key TTL for inboxes whose messages never
	// expire: an idle user's inbox leaves Redis and is refilled on demand.
	inboxNoExpiryTTL = 7 * 24 * time.Hour
	// inboxTTLSlack keeps the keys a little past the last expiry so a
	// message is never dropped from Redis before it is due.
	inboxTTLSlack = time.Minute
	redisTimeout  = 2 * time.Second
)

// userSuffix ends every key of one user and is its hash tag: Redis hashes
// what lies between the first "{" and the next "}". Prefixes hold no
// brace, so the tag starts at ours, and if app or user holds a "}" the tag
// ends early but identically in every key of the user: they still share a
// slot. Any new per-user key should end with it too.
func userSuffix(app, user string) string {
	return "{" + strconv.Itoa(len(app)) + ":" + app + ":" + user + "}"
}

func inboxKey(app, user string) string { return inboxKeyPrefix + userSuffix(app, user) }
func bodyKey(app, user string) string  { return bodyKeyPrefix + userSuffix(app, user) }

// member is id as 20 zero-padded digits (fmt's %020d, without its cost:
// it runs for every stored and read message). 20 digits hold any uint64.
func member(id uint64) string {
	var b [memberDigits]byte
	for i := memberDigits - 1; i >= 0; i-- {
		b[i] = byte('0' + id%10)
		id /= 10
	}
	return string(b[:])
}

const memberDigits = 20

type userRef struct{ app, user string }

// inbox is the Redis side of saver.
type inbox struct {
	rdb redis.UniversalClient
}

// keyDeadline is when the inbox keys may go: after the message is due.
func keyDeadline(m *internalpb.Message, now time.Time) int64 {
	if m.GetExpiresMs() > 0 {
		return m.GetExpiresMs() + inboxTTLSlack.Milliseconds()
	}
	return now.Add(inboxNoExpiryTTL).UnixMilli()
}

// addToPipe queues the messages into p and extends the keys' TTL; the TTL
// only grows (NX for a new key, GT otherwise), so one short-lived message
// never shortens the life of the others. Each user's keys are built once
// per call: this runs for every stored message.
func addToPipe(ctx context.Context, p redis.Pipeliner, msgs []*internalpb.Message, now time.Time) error {
	type userKeys struct {
		suffix, zset, hash string
		deadline           int64
	}
	users := make(map[userRef]*userKeys, len(msgs))
	for _, m := range msgs {
		body, err := proto.Marshal(&internalpb.Message{
			Id: m.GetId(), App: m.GetApp(), User: m.GetUser(), Device: m.GetDevice(), Payload: m.GetPayload(),
			Qos: m.GetQos(), CreatedMs: m.GetCreatedMs(), ExpiresMs: m.GetExpiresMs(),
			CollapseKey: m.GetCollapseKey(), Priority: m.GetPriority(), MulticastId: m.GetMulticastId(),
		})
		if err != nil {
			return fmt.Errorf("marshal %d: %w", m.GetId(), err)
		}
		u := userRef{m.GetApp(), m.GetUser()}
		k := users[u]
		if k == nil {
			sfx := userSuffix(u.app, u.user)
			k = &userKeys{suffix: sfx, zset: inboxKeyPrefix + sfx, hash: bodyKeyPrefix + sfx}
			users[u] = k
		}
		mem := member(m.GetId())
		p.ZAdd(ctx, k.zset, redis.Z{Score: float64(m.GetId()), Member: mem})
		p.HSet(ctx, k.hash, mem, body)
		if d := keyDeadline(m, now); d > k.deadline {
			k.deadline = d
		}
	}
	for _, k := range users {
		extendKeysTTL(ctx, p, k.zset, k.hash, k.deadline)
		// A batch probe that read MySQL before this write must not mark
		// the inbox complete (inbox_marker.go).
		p.Del(ctx, inboxLeasePrefix+k.suffix)
	}
	return nil
}

func extendTTL(ctx context.Context, p redis.Pipeliner, u userRef, deadlineMs int64) {
	extendKeysTTL(ctx, p, inboxKey(u.app, u.user), bodyKey(u.app, u.user), deadlineMs)
}

func extendKeysTTL(ctx context.Context, p redis.Pipeliner, zset, hash string, deadlineMs int64) {
	for _, k := range [...]string{zset, hash} {
		p.Do(ctx, "PEXPIREAT", k, deadlineMs, "NX")
		p.Do(ctx, "PEXPIREAT", k, deadlineMs, "GT")
	}
}

// add puts freshly stored messages into their inboxes.
func (in *inbox) add(ctx context.Context, msgs []*internalpb.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	p := in.rdb.Pipeline()
	if err := addToPipe(ctx, p, msgs, time.Now()); err != nil {
		return fmt.Errorf("saver: inbox add: %w", err)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("saver: inbox add %d messages: %w", len(msgs), err)
	}
	return nil
}

// fill writes what MySQL holds for one user; complete says it is all of
// it, which sets the marker.
func (in *inbox) fill(ctx context.Context, u userRef, msgs []*internalpb.Message, complete bool) error {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	now := time.Now()
	p := in.rdb.TxPipeline()
	if err := addToPipe(ctx, p, msgs, now); err != nil {
		return fmt.Errorf("saver: inbox fill %s/%s: %w", u.app, u.user, err)
	}
	if complete {
		p.ZAdd(ctx, inboxKey(u.app, u.user), redis.Z{Score: -1, Member: markerMember})
		p.HSet(ctx, bodyKey(u.app, u.user), markerMember, now.UnixMilli())
		// The marker must not outlive the window in which it is trusted
		// by much, and an empty inbox needs some TTL of its own.
		extendTTL(ctx, p, u, now.Add(inboxTrustWindow).UnixMilli())
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("saver: inbox fill %s/%s: %w", u.app, u.user, err)
	}
	return nil
}

// remove drops ids from their inboxes.
func (in *inbox) remove(ctx context.Context, refs []msgRef) error {
	if len(refs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	byUser := map[userRef][]any{}
	for _, r := range refs {
		u := userRef{r.app, r.user}
		byUser[u] = append(byUser[u], member(r.id))
	}
	p := in.rdb.Pipeline()
	for u, mems := range byUser {
		p.ZRem(ctx, inboxKey(u.app, u.user), mems...)
		fields := make([]string, len(mems))
		for i, m := range mems {
			fields[i] = m.(string)
		}
		p.HDel(ctx, bodyKey(u.app, u.user), fields...)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("saver: inbox remove %d: %w", len(refs), err)
	}
	return nil
}

// errInboxUntrusted means the inbox cannot answer alone; read MySQL.
var errInboxUntrusted = fmt.Errorf("saver: inbox not trusted")

// inboxScanChunk and inboxMaxScan bound one Pending read of Redis: entries
// for the user's other devices and expired ones are skipped, but never
// more than inboxMaxScan of them.
const (
	inboxScanChunk = 500
	inboxMaxScan   = 5000
)

// read returns up to limit unexpired messages for device, oldest first,
// or errInboxUntrusted.
func (in *inbox) read(ctx context.Context, u userRef, device string, after uint64, limit int, now time.Time) ([]*internalpb.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	zk, hk := inboxKey(u.app, u.user), bodyKey(u.app, u.user)
	var out []*internalpb.Message
	for offset := 0; offset < inboxMaxScan && len(out) < limit; offset += inboxScanChunk {
		p := in.rdb.Pipeline()
		var zmark *redis.FloatCmd
		var hmark *redis.StringCmd
		if offset == 0 {
			zmark = p.ZScore(ctx, zk, markerMember)
			hmark = p.HGet(ctx, hk, markerMember)
		}
		// float64 rounding is monotonic, so starting at after's own score
		// skips no larger id; the few equal-scored smaller ones are
		// dropped by visible.
		ids := p.ZRangeByScore(ctx, zk, &redis.ZRangeBy{Min: strconv.FormatFloat(float64(after), 'f', -1, 64), Max: "+inf", Offset: int64(offset), Count: inboxScanChunk})
		if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
			return nil, fmt.Errorf("saver: inbox read %s/%s: %w", u.app, u.user, err)
		}
		if offset == 0 {
			if zmark.Err() != nil || hmark.Err() != nil {
				return nil, errInboxUntrusted
			}
			filled, err := hmark.Int64()
			if err != nil || now.UnixMilli()-filled > inboxTrustWindow.Milliseconds() {
				return nil, errInboxUntrusted
			}
		}
		mems := ids.Val()
		if len(mems) == 0 {
			break
		}
		bodies, err := in.rdb.HMGet(ctx, hk, mems...).Result()
		if err != nil {
			return nil, fmt.Errorf("saver: inbox bodies %s/%s: %w", u.app, u.user, err)
		}
		for i, b := range bodies {
			s, ok := b.(string)
			if !ok {
				// Index without body: the inbox is damaged, rebuild it.
				return nil, errInboxUntrusted
			}
			m := &internalpb.Message{}
			if err := proto.Unmarshal([]byte(s), m); err != nil {
				return nil, fmt.Errorf("saver: inbox body %s: %w", mems[i], err)
			}
			if !visible(m, device, after, now) {
				continue
			}
			out = append(out, m)
			if len(out) == limit {
				break
			}
		}
		if len(mems) < inboxScanChunk {
			break
		}
	}
	return out, nil
}

// visible says whether device should receive m at now, in a page that
// starts after the id after.
func visible(m *internalpb.Message, device string, after uint64, now time.Time) bool {
	if m.GetId() <= after || m.GetExpiresMs() > 0 && m.GetExpiresMs() <= now.UnixMilli() {
		return false
	}
	return m.GetDevice() == "" || m.GetDevice() == device
}
