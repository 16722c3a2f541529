package main

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

func TestStorePendingAck(t *testing.T) {
	f := newFixture(t, 10)
	all := msg("app1", "alice", "", 0)
	phone := msg("app1", "alice", "phone", 0)
	pc := msg("app1", "alice", "pc", 0)
	f.store(t, all, phone, pc)
	for _, m := range []*internalpb.Message{all, phone, pc} {
		if idx, body := f.inInbox(t, m); !idx || !body || f.rowCount(t, "messages", m.GetId()) != 1 {
			t.Fatalf("message %d not in both stores after Store", m.GetId())
		}
	}

	got := f.pending(t, "app1", "alice", "phone")
	if !slices.Equal(ids(got), []uint64{all.GetId(), phone.GetId()}) {
		t.Fatalf("pending for phone = %v, want %v then %v", ids(got), all.GetId(), phone.GetId())
	}
	if !bytes.Equal(got[1].GetPayload(), phone.GetPayload()) || got[1].GetDeliveryCount() != 1 ||
		got[1].GetState() != internalpb.MessageState_MESSAGE_STATE_DELIVERED || got[1].GetCreatedMs() == 0 {
		t.Fatalf("pending message: %v", got[1])
	}
	if n := counterValue(f.srv.metrics.pendingFallback); n != 1 {
		// The first read of a user fills the inbox from MySQL and marks it.
		t.Fatalf("fallbacks after first pending = %v, want 1", n)
	}
	if got := f.pending(t, "app1", "alice", "phone"); len(got) != 2 || got[0].GetDeliveryCount() != 2 {
		t.Fatalf("second pending: %v", got)
	}
	if n := counterValue(f.srv.metrics.pendingFallback); n != 1 {
		t.Fatalf("second pending did not come from the inbox (fallbacks %v)", n)
	}

	f.ack(t, all, phone)
	for _, m := range []*internalpb.Message{all, phone} {
		if idx, body := f.inInbox(t, m); idx || body {
			t.Fatalf("acked %d still in Redis", m.GetId())
		}
		if f.rowCount(t, "messages", m.GetId()) != 0 || f.rowCount(t, "message_outcomes", m.GetId()) != 1 {
			t.Fatalf("acked %d not moved to outcomes", m.GetId())
		}
	}
	if got := f.pending(t, "app1", "alice", "phone"); len(got) != 0 {
		t.Fatalf("pending after ack: %v", ids(got))
	}
	if got := f.pending(t, "app1", "alice", "pc"); !slices.Equal(ids(got), []uint64{pc.GetId()}) {
		t.Fatalf("pc's message lost: %v", ids(got))
	}
	// Acking again is harmless.
	f.ack(t, all)
	if r := f.status(t, "app1", all.GetId()); r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_ACKED {
		t.Fatalf("status after double ack: %v", r)
	}
}

func TestPendingAfterRedisFlush(t *testing.T) {
	f := newFixture(t, 10)
	a, b := msg("app1", "bob", "", 0), msg("app1", "bob", "", time.Now().Add(time.Hour).UnixMilli())
	f.store(t, a, b)
	if got := f.pending(t, "app1", "bob", "d1"); len(got) != 2 {
		t.Fatalf("before flush: %v", ids(got))
	}
	if err := f.rdb.FlushDB(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	got := f.pending(t, "app1", "bob", "d1")
	if !slices.Equal(ids(got), []uint64{a.GetId(), b.GetId()}) || got[0].GetDeliveryCount() != 2 {
		t.Fatalf("after flush: %v", got)
	}
	if idx, body := f.inInbox(t, b); !idx || !body {
		t.Fatalf("inbox not refilled from MySQL")
	}
	// Redis lost the data, then a new Store recreated the inbox: it holds
	// only the new message and must not be taken for the whole inbox.
	if err := f.rdb.FlushDB(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	c := msg("app1", "bob", "", 0)
	f.store(t, c)
	if got := f.pending(t, "app1", "bob", "d1"); !slices.Equal(ids(got), []uint64{a.GetId(), b.GetId(), c.GetId()}) {
		t.Fatalf("after flush and new store: %v", ids(got))
	}
	// A stale inbox entry (acked while Redis held an old copy) is not
	// delivered: MySQL has the last word.
	if _, err := f.sqldb.Exec("DELETE FROM messages WHERE id = ?", a.GetId()); err != nil {
		t.Fatal(err)
	}
	if got := f.pending(t, "app1", "bob", "d1"); slices.Contains(ids(got), a.GetId()) {
		t.Fatalf("message gone from MySQL still delivered: %v", ids(got))
	}
	if idx, _ := f.inInbox(t, a); idx {
		t.Fatalf("stale inbox entry not removed")
	}
}

func TestExpiredNeverReturnedAndSwept(t *testing.T) {
	f := newFixture(t, 10)
	soon := msg("app1", "carol", "", time.Now().Add(300*time.Millisecond).UnixMilli())
	keep := msg("app1", "carol", "", time.Now().Add(time.Hour).UnixMilli())
	f.store(t, soon, keep)
	if got := f.pending(t, "app1", "carol", ""); len(got) != 2 {
		t.Fatalf("before expiry: %v", ids(got))
	}
	time.Sleep(400 * time.Millisecond)
	if got := f.pending(t, "app1", "carol", ""); !slices.Equal(ids(got), []uint64{keep.GetId()}) {
		t.Fatalf("expired message returned: %v", ids(got))
	}
	// Also from the MySQL fallback path.
	f.rdb.FlushDB(callCtx(t))
	if got := f.pending(t, "app1", "carol", ""); !slices.Equal(ids(got), []uint64{keep.GetId()}) {
		t.Fatalf("expired message returned by fallback: %v", ids(got))
	}
	f.store(t, soon) // put it back into Redis (the row is still in MySQL)
	if n := f.sweep.sweep(context.Background(), time.Now()); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	if f.rowCount(t, "messages", soon.GetId()) != 0 || f.rowCount(t, "messages", keep.GetId()) != 1 {
		t.Fatalf("sweep removed the wrong rows")
	}
	if idx, body := f.inInbox(t, soon); idx || body {
		t.Fatalf("swept message still in Redis")
	}
	r := f.status(t, "app1", soon.GetId())
	if !r.GetFound() || r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_EXPIRED {
		t.Fatalf("status of swept message: %v", r)
	}
	// A Store retried after the sweep does not bring it back.
	f.store(t, soon)
	if f.rowCount(t, "messages", soon.GetId()) != 0 {
		t.Fatalf("retried store revived an expired message")
	}
	// Outcomes past retention are pruned.
	f.sweep.retention = time.Minute
	f.sweep.sweep(context.Background(), time.Now().Add(2*time.Minute))
	if f.rowCount(t, "message_outcomes", soon.GetId()) != 0 {
		t.Fatalf("old outcome not pruned")
	}
}

func TestDeadAfterMaxDeliveries(t *testing.T) {
	const max = 3
	f := newFixture(t, max)
	m := msg("app1", "dave", "", 0)
	other := msg("app1", "dave", "", 0)
	f.store(t, m)
	for i := 1; i <= max; i++ {
		got := f.pending(t, "app1", "dave", "")
		if len(got) != 1 || got[0].GetDeliveryCount() != uint32(i) {
			t.Fatalf("delivery %d: %v", i, got)
		}
	}
	f.store(t, other)
	if got := f.pending(t, "app1", "dave", ""); !slices.Equal(ids(got), []uint64{other.GetId()}) {
		t.Fatalf("after %d deliveries: %v", max, ids(got))
	}
	if idx, body := f.inInbox(t, m); idx || body || f.rowCount(t, "messages", m.GetId()) != 0 {
		t.Fatalf("dead message still stored")
	}
	r := f.status(t, "app1", m.GetId())
	if r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_DEAD || r.GetMessage().GetDeliveryCount() != max {
		t.Fatalf("status of dead message: %v", r)
	}
	// Deliveries reported by rooms count too.
	for i := 0; i < max; i++ {
		if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{Delivered: []*internalpb.MessageRef{{App: "app1", User: "dave", Id: other.GetId()}}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.pending(t, "app1", "dave", ""); len(got) != 0 {
		t.Fatalf("message reported delivered %d times still returned", max+1)
	}
}

func TestStatusStates(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app1", "erin", "tv", time.Now().Add(time.Hour).UnixMilli())
	f.store(t, m)
	r := f.status(t, "app1", m.GetId())
	if !r.GetFound() || r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_STORED ||
		r.GetMessage().GetUser() != "erin" || r.GetMessage().GetDevice() != "tv" || r.GetUpdatedMs() == 0 {
		t.Fatalf("stored: %v", r)
	}
	f.pending(t, "app1", "erin", "tv")
	if r := f.status(t, "app1", m.GetId()); r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_DELIVERED || r.GetMessage().GetDeliveryCount() != 1 {
		t.Fatalf("delivered: %v", r)
	}
	if r := f.status(t, "app2", m.GetId()); r.GetFound() {
		t.Fatalf("another app sees the message: %v", r)
	}
	f.ack(t, m)
	if r := f.status(t, "app1", m.GetId()); r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_ACKED {
		t.Fatalf("acked: %v", r)
	}
	if r := f.status(t, "app2", m.GetId()); r.GetFound() {
		t.Fatalf("another app sees the outcome: %v", r)
	}
	if r := f.status(t, "app1", newID()); r.GetFound() {
		t.Fatalf("unknown id found: %v", r)
	}
}

func TestIdempotentStore(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app1", "frank", "", 0)
	dup := &internalpb.Message{Id: m.GetId(), App: "app1", User: "frank", Qos: 1, Payload: []byte("other")}
	f.store(t, m, dup) // the same id twice in one batch
	// and concurrently in separate calls, landing in one group commit.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{m}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if f.rowCount(t, "messages", m.GetId()) != 1 {
		t.Fatalf("duplicate rows")
	}
	got := f.pending(t, "app1", "frank", "")
	if len(got) != 1 || !bytes.Equal(got[0].GetPayload(), m.GetPayload()) {
		t.Fatalf("pending after retried stores: %v", got)
	}
	f.ack(t, m)
	f.store(t, m) // a retry that arrives after the ack
	if got := f.pending(t, "app1", "frank", ""); len(got) != 0 {
		t.Fatalf("acked message redelivered after a retried store: %v", ids(got))
	}
}

// A business retry carries the same idempotency key under a new id: saver
// stores nothing new and names the first message, whether the retry comes
// later, in the same group commit, or from many callers at once; the same
// key in another app is another message.
func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t, 10)
	keyed := func(app, user, key string) *internalpb.Message {
		m := msg(app, user, "", 0)
		m.IdempotencyKey = key
		return m
	}
	first := keyed("app1", "ida", "order-17")
	f.store(t, first)
	retry := keyed("app1", "ida", "order-17")
	r, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{retry}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetReplaced()[retry.GetId()] != first.GetId() || f.rowCount(t, "messages", retry.GetId()) != 0 {
		t.Fatalf("retry: replaced %v, want %d -> %d and no row", r.GetReplaced(), retry.GetId(), first.GetId())
	}

	// Many callers with one new key at once: exactly one message stored,
	// and every caller told its id.
	const callers = 8
	var wg sync.WaitGroup
	msgs := make([]*internalpb.Message, callers)
	answers := make([]uint64, callers)
	for i := range msgs {
		msgs[i] = keyed("app1", "ida", "order-18")
	}
	for i := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{msgs[i]}})
			if err != nil {
				t.Error(err)
				return
			}
			answers[i] = msgs[i].GetId()
			if to, ok := r.GetReplaced()[msgs[i].GetId()]; ok {
				answers[i] = to
			}
		}()
	}
	wg.Wait()
	stored := 0
	for i, m := range msgs {
		stored += f.rowCount(t, "messages", m.GetId())
		if answers[i] != answers[0] {
			t.Fatalf("callers told different ids: %v", answers)
		}
	}
	if stored != 1 {
		t.Fatalf("%d messages stored for one key", stored)
	}

	// Two messages with one key in one request: the first wins.
	a, b := keyed("app1", "ida", "order-19"), keyed("app1", "ida", "order-19")
	r, err = f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{a, b}})
	if err != nil || r.GetReplaced()[b.GetId()] != a.GetId() || f.rowCount(t, "messages", a.GetId()) != 1 {
		t.Fatalf("one key twice in a request: %v %v", r.GetReplaced(), err)
	}

	other := keyed("app2", "ida", "order-17")
	f.store(t, other)
	if f.rowCount(t, "messages", other.GetId()) != 1 {
		t.Fatal("another app's message with the same key was not stored")
	}
	if _, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: []*internalpb.Message{keyed("app1", "ida", strings.Repeat("k", 129))}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("129-byte key: %v", err)
	}
}

func TestOtherAppCannotAckOrSee(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app1", "gina", "", 0)
	f.store(t, m)
	if got := f.pending(t, "app2", "gina", ""); len(got) != 0 {
		t.Fatalf("app2 sees app1's message: %v", ids(got))
	}
	if got := f.pending(t, "app1", "GINA", ""); len(got) != 0 {
		t.Fatalf("user names must compare exactly: %v", ids(got))
	}
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{
		Acked:     []*internalpb.MessageRef{{App: "app2", User: "gina", Id: m.GetId()}, {App: "app1", User: "other", Id: m.GetId()}},
		Delivered: []*internalpb.MessageRef{{App: "app2", User: "gina", Id: m.GetId()}},
	}); err != nil {
		t.Fatal(err)
	}
	if f.rowCount(t, "messages", m.GetId()) != 1 {
		t.Fatalf("foreign ack deleted the message")
	}
	if idx, body := f.inInbox(t, m); !idx || !body {
		t.Fatalf("foreign ack touched the owner's inbox")
	}
	got := f.pending(t, "app1", "gina", "")
	if len(got) != 1 || got[0].GetDeliveryCount() != 1 {
		t.Fatalf("owner's view after foreign report: %v", got)
	}
}

func TestValidation(t *testing.T) {
	f := newFixture(t, 10)
	big := make([]*internalpb.Message, maxBatch+1)
	for i := range big {
		big[i] = msg("a", "u", "", 0)
	}
	bad := func(mut func(m *internalpb.Message)) []*internalpb.Message {
		m := msg("a", "u", "", 0)
		mut(m)
		return []*internalpb.Message{m}
	}
	stores := map[string][]*internalpb.Message{
		"qos 0":      bad(func(m *internalpb.Message) { m.Qos = 0 }),
		"id 0":       bad(func(m *internalpb.Message) { m.Id = 0 }),
		"empty app":  bad(func(m *internalpb.Message) { m.App = "" }),
		"empty user": bad(func(m *internalpb.Message) { m.User = "" }),
		"long user":  bad(func(m *internalpb.Message) { m.User = string(make([]byte, limits.MaxUserLen+1)) }),
		"payload":    bad(func(m *internalpb.Message) { m.Payload = make([]byte, maxPayload+1) }),
		"batch":      big,
	}
	for name, msgs := range stores {
		_, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: msgs})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("store %s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := f.cli.Pending(callCtx(t), &internalpb.PendingRequest{App: "a"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("pending without user: %v", err)
	}
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{Acked: []*internalpb.MessageRef{{App: "a", User: "u"}}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ack of id 0: %v", err)
	}
	if _, err := f.cli.Status(callCtx(t), &internalpb.StatusRequest{Id: 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("status without app: %v", err)
	}
	// The largest valid payload round-trips.
	m := msg("a", "u", "", 0)
	m.Payload = bytes.Repeat([]byte{0xff}, maxPayload)
	f.store(t, m)
	if got := f.pending(t, "a", "u", ""); len(got) != 1 || !bytes.Equal(got[0].GetPayload(), m.GetPayload()) {
		t.Fatalf("64 KiB payload did not round-trip")
	}
}

func TestPendingLimitOldestFirst(t *testing.T) {
	f := newFixture(t, 10)
	var want []uint64
	var batch []*internalpb.Message
	for i := 0; i < 7; i++ {
		m := msg("app1", "hank", "", 0)
		batch = append(batch, m)
		want = append(want, m.GetId())
	}
	// Stored out of order; returned by id.
	slices.Reverse(batch)
	f.store(t, batch...)
	r, err := f.cli.Pending(callCtx(t), &internalpb.PendingRequest{App: "app1", User: "hank", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(r.GetMessages()), want[:3]) {
		t.Fatalf("limit 3 from MySQL: %v, want %v", ids(r.GetMessages()), want[:3])
	}
	r, err = f.cli.Pending(callCtx(t), &internalpb.PendingRequest{App: "app1", User: "hank", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(r.GetMessages()), want[:5]) {
		t.Fatalf("limit 5 from Redis: %v, want %v", ids(r.GetMessages()), want[:5])
	}
}

// A backlog larger than a page is read page by page with after_id, from
// MySQL (no trusted inbox yet) and from the refilled inbox alike.
func TestPendingPagesWithAfterID(t *testing.T) {
	f := newFixture(t, 10)
	var want []uint64
	var batch []*internalpb.Message
	for i := 0; i < 10; i++ {
		m := msg("app1", "paula", "", 0)
		batch = append(batch, m)
		want = append(want, m.GetId())
	}
	f.store(t, batch...)
	for _, source := range []string{"MySQL", "Redis"} {
		if source == "MySQL" {
			if err := f.rdb.FlushDB(callCtx(t)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var got []uint64
		after := uint64(0)
		for page := 0; page < 5; page++ {
			r, err := f.cli.Pending(callCtx(t), &internalpb.PendingRequest{App: "app1", User: "paula", Limit: 4, AfterId: after})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.GetMessages()) == 0 {
				break
			}
			got = append(got, ids(r.GetMessages())...)
			after = got[len(got)-1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pages from %s: %v, want %v", source, got, want)
		}
	}
}

func TestQueueFullIsResourceExhausted(t *testing.T) {
	f := newFixture(t, 10)
	// No writers and room for one request: the second must be shed.
	com := newCommitter(f.srv.db, f.srv.inbox, newMetrics(prometheus.NewRegistry()), testLog(), 0, 1)
	srv := *f.srv
	srv.committer = com
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go srv.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{msg("a", "u", "", 0)}})
	deadline := time.Now().Add(time.Second)
	for len(com.queue) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err := srv.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{msg("a", "u", "", 0)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("store into a full queue: %v", err)
	}
	com.close()
	if _, err := srv.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{msg("a", "u", "", 0)}}); status.Code(err) != codes.Unavailable {
		t.Fatalf("store after close: %v", err)
	}
}

func TestConcurrentMigrations(t *testing.T) {
	cfg := testDSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = migrate(context.Background(), cfg, testLog(), false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := openDB(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM schema_migrations WHERE version = 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema_migrations rows for version 1: %d, %v", n, err)
	}
}

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- c\nCREATE TABLE a (\n x INT\n);\n\nCREATE TABLE b (y INT);\n")
	if len(got) != 2 || got[0] != "CREATE TABLE a (\nx INT\n)" || got[1] != "CREATE TABLE b (y INT)" {
		t.Fatalf("%q", got)
	}
}

func TestRedisDownMySQLServes(t *testing.T) {
	f := newFixture(t, 10)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	srv := *f.srv
	srv.inbox = &inbox{rdb: dead}
	srv.committer = newCommitter(srv.db, srv.inbox, srv.metrics, testLog(), 1, 16)
	defer srv.committer.close()
	ctx := callCtx(t)
	m := msg("app1", "ivan", "", 0)
	if _, err := srv.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{m}}); err != nil {
		t.Fatalf("store with Redis down: %v", err)
	}
	r, err := srv.Pending(ctx, &internalpb.PendingRequest{App: "app1", User: "ivan"})
	if err != nil || !slices.Equal(ids(r.GetMessages()), []uint64{m.GetId()}) {
		t.Fatalf("pending with Redis down: %v %v", r, err)
	}
	if _, err := srv.Report(ctx, &internalpb.ReportRequest{Acked: []*internalpb.MessageRef{{App: "app1", User: "ivan", Id: m.GetId()}}}); err != nil {
		t.Fatalf("ack with Redis down: %v", err)
	}
	if f.rowCount(t, "messages", m.GetId()) != 0 {
		t.Fatalf("ack with Redis down did not delete")
	}
}

// A Redis that accepts connections and never answers (hung, or half-way
// through a restart) must not hold a committed Store past the caller's
// deadline: the caller would report "not stored" for a stored message.
func TestRedisHungStoreAnswersInTime(t *testing.T) {
	f := newFixture(t, 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	hung := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: redisTimeout, WriteTimeout: redisTimeout,
		ContextTimeoutEnabled: true}) // as newRedis
	defer hung.Close()
	srv := *f.srv
	srv.inbox = &inbox{rdb: hung}
	srv.committer = newCommitter(srv.db, srv.inbox, srv.metrics, testLog(), 1, 16)
	defer srv.committer.close()
	// hungStoreDeadline is below center's wait for Store, and leaves the
	// commit itself ample time on a loaded machine.
	const hungStoreDeadline = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), hungStoreDeadline)
	defer cancel()
	m := msg("app1", "hung", "", 0)
	if _, err := srv.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{m}}); err != nil {
		t.Fatalf("store with a hung Redis: %v", err)
	}
	if f.rowCount(t, "messages", m.GetId()) != 1 {
		t.Fatal("message not in MySQL")
	}
}
