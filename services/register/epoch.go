package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// The session store's epoch tells rooms that Redis lost its data. Each
// Redis server (each master of a Redis Cluster) holds a marker key with a
// random value, written only if absent: a restart without persistence or a
// FLUSHALL removes it, the next read writes a new one, and the epoch (the
// markers joined) changes. Rooms poll Epoch and put their sessions back as
// soon as it changes; without it a lost session stayed invisible, and its
// user unreachable, until the room's next refresh (-session-refresh, 60 s).

const (
	epochKey = keyPrefix + "epoch"
	// epochCacheFor bounds the Redis reads: every room polls about once a
	// second, and one answer serves all polls within this time.
	epochCacheFor = 250 * time.Millisecond
	// epochKeyTries bounds the search, on a cluster master, for a marker
	// key in one of its slots.
	epochKeyTries = 256
	// epochSettleFor is how long after a new epoch began lookups answer
	// settling: rooms poll the epoch every second and then put their
	// sessions back, so by then the store holds them again.
	epochSettleFor = 5 * time.Second
)

type epochs struct {
	rdb redis.UniversalClient

	mu  sync.Mutex
	val string
	at  time.Time
	// born is when the youngest marker of val was written, set when val
	// changed from one this register had read (zero: no change seen, or a
	// marker of an older register that carries no time).
	born time.Time
	// keysMu guards keys: ForEachMaster reads the masters concurrently.
	keysMu sync.Mutex
	keys   map[string]string // cluster master address → marker key it serves
}

func newEpochs(rdb redis.UniversalClient) *epochs {
	return &epochs{rdb: rdb, keys: map[string]string{}}
}

// current returns the epoch, read at most epochCacheFor ago.
func (e *epochs) current(ctx context.Context) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.val != "" && time.Since(e.at) < epochCacheFor {
		return e.val, nil
	}
	v, err := e.read(ctx)
	if err != nil {
		return "", err
	}
	if e.val != "" && v != e.val {
		// Only a change this register saw: the first epoch a fresh
		// register reads (a new cluster) has lost nothing.
		e.born = bornOf(v)
	}
	e.val, e.at = v, time.Now()
	return v, nil
}

// settling reports whether the current epoch began less than
// epochSettleFor ago; false when the epoch cannot be read (a lookup that
// answered has no reason to doubt its answer on that account).
func (e *epochs) settling(ctx context.Context) bool {
	if _, err := e.current(ctx); err != nil {
		return false
	}
	e.mu.Lock()
	born := e.born
	e.mu.Unlock()
	return !born.IsZero() && time.Since(born) < epochSettleFor
}

// bornOf returns the write time of the youngest marker in epoch v: each
// marker is "random@unix-ms" (markerValue).
func bornOf(v string) time.Time {
	var born int64
	for part := range strings.SplitSeq(v, ",") {
		_, ms, ok := strings.Cut(part[strings.LastIndexByte(part, '=')+1:], "@")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil && n > born {
			born = n
		}
	}
	if born == 0 {
		return time.Time{}
	}
	return time.UnixMilli(born)
}

func (e *epochs) read(ctx context.Context) (string, error) {
	cc, ok := e.rdb.(*redis.ClusterClient)
	if !ok {
		return marker(ctx, e.rdb, epochKey)
	}
	var mu sync.Mutex
	var parts []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		v, err := e.clusterMarker(ctx, node)
		if err != nil {
			return err
		}
		mu.Lock()
		parts = append(parts, node.Options().Addr+"="+v)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(parts)
	return strings.Join(parts, ","), nil
}

// clusterMarker reads (or writes) the marker of one master, in a key of a
// slot that master serves: a marker elsewhere would not vanish with its
// data. The key found is kept until a reshard moves its slot.
func (e *epochs) clusterMarker(ctx context.Context, node *redis.Client) (string, error) {
	addr := node.Options().Addr
	e.keysMu.Lock()
	key, known := e.keys[addr]
	e.keysMu.Unlock()
	if known {
		v, err := marker(ctx, node, key)
		if err == nil || !isMoved(err) {
			return v, err
		}
	}
	for i := range epochKeyTries {
		key = epochKey + ":{" + strconv.Itoa(i) + "}"
		v, err := marker(ctx, node, key)
		if isMoved(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		e.keysMu.Lock()
		e.keys[addr] = key
		e.keysMu.Unlock()
		return v, nil
	}
	return "", fmt.Errorf("register: no epoch key served by master %s in %d tries", addr, epochKeyTries)
}

func isMoved(err error) bool {
	return err != nil && (strings.HasPrefix(err.Error(), "MOVED ") || strings.HasPrefix(err.Error(), "ASK "))
}

// marker returns key's value, first setting it to a new one if absent.
func marker(ctx context.Context, c redis.Cmdable, key string) (string, error) {
	fresh := markerValue(time.Now())
	set, err := c.SetNX(ctx, key, fresh, 0).Result()
	if err != nil {
		return "", err
	}
	if set {
		return fresh, nil
	}
	v, err := c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("register: epoch key %s vanished between SETNX and GET", key)
	}
	return v, err
}

// markerValue is a new marker: random, so two registers writing one at
// once cannot agree by chance, and stamped with its time (settling).
func markerValue(now time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "@" + strconv.FormatInt(now.UnixMilli(), 10)
}

func (s *server) Epoch(ctx context.Context, _ *internalpb.EpochRequest) (*internalpb.EpochReply, error) {
	v, err := s.epochs.current(ctx)
	if err != nil {
		return nil, s.unavailable("epoch", err)
	}
	return &internalpb.EpochReply{Epoch: v}, nil
}
