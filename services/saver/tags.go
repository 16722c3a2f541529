package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Tag bounds (pkg/limits documents them); a call over one is refused
// whole.
const (
	maxTagUsersPerCall = limits.MaxTagUsersPerCall
	tagPageDefault     = 100
	tagPageMax         = 1000
	// tagCallTimeout bounds one tag RPC whatever deadline the caller set
	// (center sets 2 s): a 1,000-user add is one transaction of ~75 ms.
	tagCallTimeout = 5 * time.Second
)

// tagStore serves the tag RPCs: MySQL (tagDB) is the durable copy, Redis
// (tagCache) answers the hot reads when it holds a complete set.
type tagStore struct {
	db    *tagDB
	cache *tagCache
	m     *tagMetrics
	log   *slog.Logger
}

func newTagStore(db *msgDB, rdb redis.UniversalClient, m *tagMetrics, log *slog.Logger) *tagStore {
	return &tagStore{
		db:    &tagDB{db: db.db, retry: db.retry, maxMembers: limits.MaxTagMembers, maxPerUser: limits.MaxTagsPerUser},
		cache: newTagCache(rdb, m, log), m: m, log: log,
	}
}

func (t *tagStore) close() { t.cache.close() }

func (t *tagStore) fillTag(app, tag string) {
	t.cache.queueFill(fillJob{keys: tagSetKeys(app, tag), page: func(ctx context.Context, after string, n int) ([]string, error) {
		return t.db.members(ctx, app, tag, after, n)
	}})
}

func (t *tagStore) fillUser(app, user string) {
	t.cache.queueFill(fillJob{keys: userTagKeys(app, user), page: func(ctx context.Context, after string, n int) ([]string, error) {
		if after != "" {
			return nil, nil // one read holds all of a user's tags
		}
		return t.db.userTags(ctx, app, user)
	}})
}

func checkTagName(app, tag string) error {
	if app == "" || len(app) > maxAppLen {
		return invalid("app must be 1..%d bytes", maxAppLen)
	}
	if err := limits.CheckTag(tag); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func checkTagUsers(users []string) error {
	if len(users) > maxTagUsersPerCall {
		return invalid("%d users exceed %d per call", len(users), maxTagUsersPerCall)
	}
	for i, u := range users {
		if u == "" || len(u) > limits.MaxUserLen || !utf8.ValidString(u) {
			return invalid("user %d: must be 1..%d bytes of UTF-8", i, limits.MaxUserLen)
		}
	}
	return nil
}

func (s *server) tagsOrFail() (*tagStore, error) {
	if s.tags == nil {
		return nil, status.Error(codes.Unimplemented, "saver: tags not configured")
	}
	return s.tags, nil
}

func (s *server) AddTagUsers(ctx context.Context, req *internalpb.TagUsersRequest) (*internalpb.TagUsersReply, error) {
	return s.writeTag(ctx, req, tagUpdateAdd)
}

func (s *server) RemoveTagUsers(ctx context.Context, req *internalpb.TagUsersRequest) (*internalpb.TagUsersReply, error) {
	return s.writeTag(ctx, req, tagUpdateRemove)
}

func (s *server) writeTag(ctx context.Context, req *internalpb.TagUsersRequest, op string) (*internalpb.TagUsersReply, error) {
	t, err := s.tagsOrFail()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, tagCallTimeout)
	defer cancel()
	app, tag, users := req.GetApp(), req.GetTag(), req.GetUsers()
	if err := checkTagName(app, tag); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, invalid("no users")
	}
	if err := checkTagUsers(users); err != nil {
		return nil, err
	}
	var res tagWrite
	if op == tagUpdateAdd {
		res, err = t.db.add(ctx, app, tag, users, time.Now())
	} else {
		res, err = t.db.remove(ctx, app, tag, users)
	}
	if err != nil {
		return nil, s.fail(ctx, "tag_"+op, err)
	}
	reply := &internalpb.TagUsersReply{Changed: uint32(len(res.changed)), Members: res.members, Limit: res.limit}
	if len(res.full) > 0 {
		full := make(map[string]bool, len(res.full))
		for _, u := range res.full {
			full[u] = true
		}
		for i, u := range users {
			if full[u] {
				reply.FullUsers = append(reply.FullUsers, uint32(i))
			}
		}
	}
	// Committed: a Redis failure now leaves a set that is either unmarked
	// (read from MySQL) or stale for at most tagTrustWindow.
	if err := t.cache.update(ctx, app, tag, res.changed, op); err != nil {
		s.redisFailed("tag_"+op, err)
	}
	return reply, nil
}

func (s *server) UserTags(ctx context.Context, req *internalpb.UserTagsRequest) (*internalpb.UserTagsReply, error) {
	t, err := s.tagsOrFail()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, tagCallTimeout)
	defer cancel()
	app, user := req.GetApp(), req.GetUser()
	if err := checkUser(app, user); err != nil {
		return nil, invalid("%v", err)
	}
	tags, ok, rerr := t.cache.userTags(ctx, app, user)
	if rerr != nil {
		s.redisFailed("user_tags", rerr)
	}
	if ok {
		t.m.reads.WithLabelValues("user_tags", "redis").Inc()
		return &internalpb.UserTagsReply{Tags: tags}, nil
	}
	t.m.reads.WithLabelValues("user_tags", "mysql").Inc()
	tags, err = t.db.userTags(ctx, app, user)
	if err != nil {
		return nil, s.fail(ctx, "user_tags", err)
	}
	if rerr == nil {
		// Redis answered without a complete set; a Redis that failed
		// would fail the fill too.
		t.fillUser(app, user)
	}
	return &internalpb.UserTagsReply{Tags: tags}, nil
}

func (s *server) TagMembership(ctx context.Context, req *internalpb.TagMembershipRequest) (*internalpb.TagMembershipReply, error) {
	t, err := s.tagsOrFail()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, tagCallTimeout)
	defer cancel()
	app, tag, users := req.GetApp(), req.GetTag(), req.GetUsers()
	if err := checkTagName(app, tag); err != nil {
		return nil, err
	}
	if err := checkTagUsers(users); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return &internalpb.TagMembershipReply{}, nil
	}
	have, ok, rerr := t.cache.membership(ctx, app, tag, users)
	if rerr != nil {
		s.redisFailed("tag_membership", rerr)
	}
	if ok {
		t.m.reads.WithLabelValues("membership", "redis").Inc()
	} else {
		t.m.reads.WithLabelValues("membership", "mysql").Inc()
		if have, err = t.db.membersOf(ctx, app, tag, users); err != nil {
			return nil, s.fail(ctx, "tag_membership", err)
		}
		if rerr == nil {
			t.fillTag(app, tag)
		}
	}
	reply := &internalpb.TagMembershipReply{}
	for _, u := range users {
		if have[u] {
			reply.Members = append(reply.Members, u)
			delete(have, u) // a user asked twice is answered once
		}
	}
	return reply, nil
}

// TagMembers pages from MySQL, not Redis: keyset paging on the primary key
// gives a stable byte-order cursor that survives a Redis loss or refill,
// which SSCAN cursors do not, and costs one index range read per page.
func (s *server) TagMembers(ctx context.Context, req *internalpb.TagMembersRequest) (*internalpb.TagMembersReply, error) {
	t, err := s.tagsOrFail()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, tagCallTimeout)
	defer cancel()
	app, tag := req.GetApp(), req.GetTag()
	if err := checkTagName(app, tag); err != nil {
		return nil, err
	}
	if len(req.GetAfter()) > limits.MaxUserLen {
		return nil, invalid("after is longer than %d bytes", limits.MaxUserLen)
	}
	limit := tagPageDefault
	if n := req.GetLimit(); n > tagPageMax {
		return nil, invalid("limit %d exceeds %d", n, tagPageMax)
	} else if n > 0 {
		limit = int(n)
	}
	users, err := t.db.members(ctx, app, tag, req.GetAfter(), limit+1)
	if err != nil {
		return nil, s.fail(ctx, "tag_members", fmt.Errorf("page after %q: %w", req.GetAfter(), err))
	}
	more := len(users) > limit
	if more {
		users = users[:limit]
	}
	return &internalpb.TagMembersReply{Users: users, More: more}, nil
}
