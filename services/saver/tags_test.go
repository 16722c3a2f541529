package main

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// tagFixture is saver with tags on a fresh MySQL database and a private
// redis-server; bounds are small so tests reach them.
type tagFixture struct {
	*fixture
	tags  *tagStore
	tm    *tagMetrics
	redis *redistest.Server
}

func newTagFixture(t testing.TB, maxMembers uint64, maxPerUser uint32) *tagFixture {
	t.Helper()
	ctx := context.Background()
	mcfg := testDSN(t)
	if err := migrate(ctx, mcfg, testLog(), false); err != nil {
		t.Fatal(err)
	}
	sqldb, err := openDB(ctx, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	rdb, err := newRedis(ctx, rs.Addr(), 0)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, tm := newMetrics(reg), newTagMetrics(reg)
	mdb := &msgDB{db: sqldb}
	tags := newTagStore(mdb, rdb, tm, testLog())
	tags.db.maxMembers, tags.db.maxPerUser = maxMembers, maxPerUser
	srv := &server{db: mdb, inbox: &inbox{rdb: rdb}, metrics: m, log: testLog(), maxDeliveries: 10, tags: tags}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(grpcconn.ServerOptions(), grpc.ChainUnaryInterceptor(m.interceptor))...)
	internalpb.RegisterSaverServer(gs, srv)
	go gs.Serve(ln)
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		tags.close()
		rdb.Close()
		sqldb.Close()
	})
	return &tagFixture{fixture: &fixture{srv: srv, cli: internalpb.NewSaverClient(cc), rdb: rdb, sqldb: sqldb, mcfg: mcfg}, tags: tags, tm: tm, redis: rs}
}

func (f *tagFixture) add(t testing.TB, app, tag string, users ...string) *internalpb.TagUsersReply {
	t.Helper()
	r, err := f.cli.AddTagUsers(callCtx(t), &internalpb.TagUsersRequest{App: app, Tag: tag, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *tagFixture) remove(t testing.TB, app, tag string, users ...string) *internalpb.TagUsersReply {
	t.Helper()
	r, err := f.cli.RemoveTagUsers(callCtx(t), &internalpb.TagUsersRequest{App: app, Tag: tag, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *tagFixture) userTags(t testing.TB, app, user string) []string {
	t.Helper()
	r, err := f.cli.UserTags(callCtx(t), &internalpb.UserTagsRequest{App: app, User: user})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetTags()
}

func (f *tagFixture) membership(t testing.TB, app, tag string, users ...string) []string {
	t.Helper()
	r, err := f.cli.TagMembership(callCtx(t), &internalpb.TagMembershipRequest{App: app, Tag: tag, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetMembers()
}

func (f *tagFixture) allMembers(t testing.TB, app, tag string, page uint32) []string {
	t.Helper()
	var out []string
	after := ""
	for {
		r, err := f.cli.TagMembers(callCtx(t), &internalpb.TagMembersRequest{App: app, Tag: tag, After: after, Limit: page})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.GetUsers()...)
		if !r.GetMore() {
			return out
		}
		if len(r.GetUsers()) == 0 {
			t.Fatal("more without users")
		}
		after = r.GetUsers()[len(r.GetUsers())-1]
	}
}

// sqlCount runs a COUNT query.
func (f *tagFixture) sqlCount(t testing.TB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.sqldb.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkCounts asserts the count tables agree with the membership rows.
func (f *tagFixture) checkCounts(t testing.TB) {
	t.Helper()
	if n := f.sqlCount(t, `SELECT COUNT(*) FROM tag_sizes s WHERE members <> (SELECT COUNT(*) FROM tag_members m WHERE m.app = s.app AND m.tag = s.tag)`); n != 0 {
		t.Fatalf("%d tag_sizes rows disagree with tag_members", n)
	}
	if n := f.sqlCount(t, "SELECT COUNT(*) FROM user_tag_counts c WHERE tags <> (SELECT COUNT(*) FROM tag_members m WHERE m.app = c.app AND m.`user` = c.`user`)"); n != 0 {
		t.Fatalf("%d user_tag_counts rows disagree with tag_members", n)
	}
	if n := f.sqlCount(t, "SELECT COUNT(*) FROM tag_sizes WHERE members = 0") + f.sqlCount(t, "SELECT COUNT(*) FROM user_tag_counts WHERE tags = 0"); n != 0 {
		t.Fatalf("%d empty count rows left behind", n)
	}
}

// marked reports whether a set is complete in Redis.
func (f *tagFixture) marked(t testing.TB, k setKeys) bool {
	t.Helper()
	ok, err := f.rdb.SIsMember(callCtx(t), k.set, tagMarker).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func eq[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func TestTagsAddRemoveList(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	r := f.add(t, "app", "news", "c", "a", "b", "a")
	eq(t, "changed", r.GetChanged(), uint32(3))
	eq(t, "members", r.GetMembers(), uint64(3))
	r = f.add(t, "app", "news", "b", "d")
	eq(t, "changed on re-add", r.GetChanged(), uint32(1))
	eq(t, "members", r.GetMembers(), uint64(4))
	f.add(t, "app", "vip", "b")
	f.add(t, "other-app", "news", "z")

	eq(t, "tags of b", f.userTags(t, "app", "b"), []string{"news", "vip"})
	eq(t, "tags of nobody", len(f.userTags(t, "app", "nobody")), 0)
	eq(t, "tags of z in app", len(f.userTags(t, "app", "z")), 0)
	eq(t, "members, pages of 3", f.allMembers(t, "app", "news", 3), []string{"a", "b", "c", "d"})
	eq(t, "members, pages of 1", f.allMembers(t, "app", "news", 1), []string{"a", "b", "c", "d"})
	eq(t, "members, one page", f.allMembers(t, "app", "news", 0), []string{"a", "b", "c", "d"})
	eq(t, "other app's tag", f.allMembers(t, "other-app", "news", 0), []string{"z"})
	eq(t, "membership", f.membership(t, "app", "news", "d", "x", "a", "d", "z"), []string{"d", "a"})

	r = f.remove(t, "app", "news", "a", "x", "a")
	eq(t, "removed", r.GetChanged(), uint32(1))
	eq(t, "members after remove", r.GetMembers(), uint64(3))
	eq(t, "tags of a", len(f.userTags(t, "app", "a")), 0)
	eq(t, "membership after remove", f.membership(t, "app", "news", "a", "b"), []string{"b"})
	r = f.remove(t, "app", "nosuchtag", "a")
	eq(t, "remove from an unknown tag", r.GetChanged(), uint32(0))
	f.checkCounts(t)
	f.remove(t, "app", "news", "b", "c", "d")
	f.remove(t, "app", "vip", "b")
	eq(t, "rows of app", f.sqlCount(t, "SELECT COUNT(*) FROM tag_members WHERE app = 'app'"), 0)
	f.checkCounts(t)
	if n := f.sqlCount(t, "SELECT COUNT(*) FROM tag_sizes WHERE app = 'app'") + f.sqlCount(t, "SELECT COUNT(*) FROM user_tag_counts WHERE app = 'app'"); n != 0 {
		t.Fatalf("%d count rows of emptied tags and users remain", n)
	}
}

func TestTagsBounds(t *testing.T) {
	f := newTagFixture(t, 3, 2)
	// A tag over its size: nothing written, not even the rows the
	// transaction created before it found out.
	r := f.add(t, "app", "small", "a", "b", "c", "d")
	eq(t, "limit", r.GetLimit(), internalpb.TagLimit_TAG_LIMIT_TAG_FULL)
	eq(t, "changed", r.GetChanged(), uint32(0))
	eq(t, "rows", f.sqlCount(t, "SELECT COUNT(*) FROM tag_members")+f.sqlCount(t, "SELECT COUNT(*) FROM tag_sizes")+f.sqlCount(t, "SELECT COUNT(*) FROM user_tag_counts"), 0)
	eq(t, "exactly full", f.add(t, "app", "small", "a", "b", "c").GetLimit(), internalpb.TagLimit_TAG_LIMIT_NONE)
	eq(t, "re-adding members of a full tag", f.add(t, "app", "small", "a").GetLimit(), internalpb.TagLimit_TAG_LIMIT_NONE)
	r = f.add(t, "app", "small", "e")
	eq(t, "one more", r.GetLimit(), internalpb.TagLimit_TAG_LIMIT_TAG_FULL)
	eq(t, "members", r.GetMembers(), uint64(3))

	// A user at its tag bound: the whole batch is refused and names them.
	f.add(t, "app", "t2", "a")
	r = f.add(t, "app", "t3", "v", "a", "b", "a")
	eq(t, "limit", r.GetLimit(), internalpb.TagLimit_TAG_LIMIT_USER_FULL)
	eq(t, "full users", r.GetFullUsers(), []uint32{1, 3})
	eq(t, "v not added", f.membership(t, "app", "t3", "v", "b"), []string(nil))
	f.checkCounts(t)

	invalidCalls := map[string]error{}
	ctx := callCtx(t)
	call := func(name string, err error) { invalidCalls[name] = err }
	_, err := f.cli.AddTagUsers(ctx, &internalpb.TagUsersRequest{App: "app", Tag: "t"})
	call("no users", err)
	many := make([]string, maxTagUsersPerCall+1)
	for i := range many {
		many[i] = fmt.Sprint("u", i)
	}
	_, err = f.cli.AddTagUsers(ctx, &internalpb.TagUsersRequest{App: "app", Tag: "t", Users: many})
	call("too many users", err)
	_, err = f.cli.TagMembership(ctx, &internalpb.TagMembershipRequest{App: "app", Tag: "t", Users: many})
	call("too many users asked", err)
	// (Invalid UTF-8 cannot even be sent: proto3 strings refuse it.)
	for name, tag := range map[string]string{"empty tag": "", "long tag": strings.Repeat("t", 129), "control": "t\n"} {
		_, err = f.cli.AddTagUsers(ctx, &internalpb.TagUsersRequest{App: "app", Tag: tag, Users: []string{"u"}})
		call(name, err)
	}
	_, err = f.cli.AddTagUsers(ctx, &internalpb.TagUsersRequest{App: "app", Tag: "t", Users: []string{"u", ""}})
	call("empty user", err)
	_, err = f.cli.AddTagUsers(ctx, &internalpb.TagUsersRequest{Tag: "t", Users: []string{"u"}})
	call("no app", err)
	_, err = f.cli.RemoveTagUsers(ctx, &internalpb.TagUsersRequest{App: "app", Tag: "t", Users: []string{strings.Repeat("u", 129)}})
	call("long user", err)
	_, err = f.cli.TagMembers(ctx, &internalpb.TagMembersRequest{App: "app", Tag: "t", Limit: tagPageMax + 1})
	call("page too large", err)
	_, err = f.cli.UserTags(ctx, &internalpb.UserTagsRequest{App: "app"})
	call("no user", err)
	for name, err := range invalidCalls {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

// Redis is only a cache: with its sets gone every read stays right, and
// the sets come back from MySQL.
func TestTagsRedisLoss(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	users := make([]string, 0, 12000)
	for i := range cap(users) {
		users = append(users, fmt.Sprintf("user-%05d", i))
	}
	for start := 0; start < len(users); start += maxTagUsersPerCall {
		f.tags.db.maxMembers = uint64(len(users))
		f.add(t, "app", "big", users[start:start+maxTagUsersPerCall]...)
	}
	f.add(t, "app", "vip", "user-00007")
	reads := func(call, source string) float64 { return counterValue(f.tm.reads.WithLabelValues(call, source)) }
	check := func(stage string) {
		t.Helper()
		eq(t, stage+": tags", f.userTags(t, "app", "user-00007"), []string{"big", "vip"})
		eq(t, stage+": membership", f.membership(t, "app", "big", "user-11999", "nobody", "user-00000"), []string{"user-11999", "user-00000"})
	}
	tk, uk := tagSetKeys("app", "big"), userTagKeys("app", "user-00007")
	for round := range 2 {
		mysqlBefore := reads("membership", "mysql")
		check(fmt.Sprintf("round %d, cold", round))
		eq(t, "membership reads from MySQL", reads("membership", "mysql"), mysqlBefore+1)
		// The reads queued fills; a tag of 12,000 takes several pages.
		waitUntil(t, "the tag set to be filled", func() bool { return f.marked(t, tk) })
		waitUntil(t, "the user set to be filled", func() bool { return f.marked(t, uk) })
		eq(t, "tag set size", f.rdb.SCard(callCtx(t), tk.set).Val(), int64(len(users)+1))
		redisBefore := reads("membership", "redis") + reads("user_tags", "redis")
		check(fmt.Sprintf("round %d, warm", round))
		eq(t, "reads from Redis", reads("membership", "redis")+reads("user_tags", "redis"), redisBefore+2)
		if ttl := f.rdb.PTTL(callCtx(t), tk.set).Val(); ttl <= 0 || ttl > tagTrustWindow {
			t.Fatalf("tag set TTL %v, want within the trust window", ttl)
		}
		// Writes keep a complete set up to date.
		f.add(t, "app", "extra", "user-00007")
		f.remove(t, "app", "big", "user-00000")
		eq(t, "membership after writes", f.membership(t, "app", "big", "user-00000", "user-00001"), []string{"user-00001"})
		eq(t, "tags after writes", f.userTags(t, "app", "user-00007"), []string{"big", "extra", "vip"})
		eq(t, "answered from Redis", reads("membership", "redis")+reads("user_tags", "redis"), redisBefore+4)
		f.add(t, "app", "big", "user-00000")
		f.remove(t, "app", "extra", "user-00007")
		if err := f.rdb.FlushAll(callCtx(t)).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// A fill that a write overtakes is dropped, never stored as complete: the
// race the lease exists for.
func TestTagsFillRace(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	f.add(t, "app", "news", "a", "b")
	tk := tagSetKeys("app", "news")
	ctx := callCtx(t)
	var once sync.Once
	done, err := f.tags.cache.fill(ctx, fillJob{keys: tk, page: func(ctx context.Context, after string, n int) ([]string, error) {
		users, err := f.tags.db.members(ctx, "app", "news", after, n)
		// Between the fill's read of MySQL and its commit, b leaves.
		once.Do(func() { f.remove(t, "app", "news", "b") })
		return users, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if done || f.marked(t, tk) {
		t.Fatal("a fill overtaken by a write was stored")
	}
	if n := len(f.rdb.Keys(ctx, "tagt:*").Val()); n != 0 {
		t.Fatalf("%d fill keys left behind", n)
	}
	eq(t, "membership", f.membership(t, "app", "news", "a", "b"), []string{"a"})
	waitUntil(t, "the next fill", func() bool { return f.marked(t, tk) })
	eq(t, "filled set", f.rdb.SCard(ctx, tk.set).Val(), int64(2))
	eq(t, "membership from Redis", f.membership(t, "app", "news", "a", "b"), []string{"a"})
}

// Concurrent adds never pass a bound and keep the count tables exact.
func TestTagsConcurrentAdds(t *testing.T) {
	const (
		maxMembers = 50
		maxPerUser = 4
		writers    = 8
	)
	f := newTagFixture(t, maxMembers, maxPerUser)
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for w := range writers {
		wg.Add(2)
		// Overlapping batches of 10 into one tag: 80 users offered, 50 fit.
		go func() {
			defer wg.Done()
			users := make([]string, 10)
			for i := range users {
				users[i] = fmt.Sprintf("u%02d", (w*7+i)%80)
			}
			if _, err := f.cli.AddTagUsers(callCtx(t), &internalpb.TagUsersRequest{App: "app", Tag: "crowded", Users: users}); err != nil {
				errs <- err
			}
		}()
		// One user into 8 tags at once: 4 fit.
		go func() {
			defer wg.Done()
			if _, err := f.cli.AddTagUsers(callCtx(t), &internalpb.TagUsersRequest{App: "app", Tag: fmt.Sprint("tag", w), Users: []string{"hot", fmt.Sprint("w", w)}}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(f.allMembers(t, "app", "crowded", 0)); n > maxMembers || n == 0 {
		t.Fatalf("crowded tag has %d members, bound %d", n, maxMembers)
	}
	eq(t, "tags of hot", len(f.userTags(t, "app", "hot")), maxPerUser)
	f.checkCounts(t)
}

// With Redis down, tag writes still commit and reads answer from MySQL;
// a Redis that comes back empty is refilled.
func TestTagsRedisDown(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	f.add(t, "app", "news", "a", "b")
	eq(t, "tags, warm-up", f.userTags(t, "app", "a"), []string{"news"})
	waitUntil(t, "the user set to be filled", func() bool { return f.marked(t, userTagKeys("app", "a")) })
	f.redis.Kill()
	errorsBefore := counterValue(f.srv.metrics.redisErrors.WithLabelValues("tag_add"))
	eq(t, "add without Redis", f.add(t, "app", "vip", "a").GetChanged(), uint32(1))
	eq(t, "Redis failure counted", counterValue(f.srv.metrics.redisErrors.WithLabelValues("tag_add")), errorsBefore+1)
	eq(t, "remove without Redis", f.remove(t, "app", "news", "b").GetChanged(), uint32(1))
	eq(t, "tags without Redis", f.userTags(t, "app", "a"), []string{"news", "vip"})
	eq(t, "membership without Redis", f.membership(t, "app", "news", "a", "b"), []string{"a"})
	f.redis.Restart()
	eq(t, "tags after restart", f.userTags(t, "app", "a"), []string{"news", "vip"})
	waitUntil(t, "the user set to be refilled", func() bool { return f.marked(t, userTagKeys("app", "a")) })
	eq(t, "tags from the refilled set", f.userTags(t, "app", "a"), []string{"news", "vip"})
	eq(t, "membership after restart", f.membership(t, "app", "news", "a", "b"), []string{"a"})
}
