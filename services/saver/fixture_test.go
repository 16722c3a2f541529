package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

var nextID atomic.Uint64

func init() { nextID.Store(uint64(time.Now().UnixNano())) }

// newID returns ids far above 2^53, like real ones, so that score
// precision is exercised.
func newID() uint64 { return nextID.Add(1) }

type fixture struct {
	srv   *server
	cli   internalpb.SaverClient
	rdb   redis.UniversalClient
	sqldb *sql.DB
	mcfg  *mysql.Config
	sweep *sweeper
}

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testDSN names a fresh database, dropped when the test ends.
func testDSN(t testing.TB) *mysql.Config {
	t.Helper()
	cfg, err := parseDSN(fmt.Sprintf("%spushgw_saver_test_%d_%d", testMySQLRoot(), os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		root := cfg.Clone()
		root.DBName = ""
		db, err := openDB(context.Background(), root)
		if err != nil {
			t.Errorf("drop test database: %v", err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP DATABASE IF EXISTS " + quoteIdent(cfg.DBName)); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return cfg
}

// newFixture migrates a fresh database, starts a private Redis and
// serves saver on a real loopback socket.
func newFixture(t testing.TB, maxDeliveries uint32) *fixture {
	t.Helper()
	// A private redis-server per test: tests flush and inspect it freely,
	// and parallel runs (other packages, other checkouts) never share keys.
	return newFixtureOn(t, maxDeliveries, redistest.Start(t).Addr())
}

// newFixtureOn is newFixture on the given -redis value (one server or a
// cluster's nodes).
func newFixtureOn(t testing.TB, maxDeliveries uint32, redisAddrs string) *fixture {
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
	rdb, err := newRedis(ctx, redisAddrs, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry())
	mdb, in := &msgDB{db: sqldb}, &inbox{rdb: rdb}
	com := newCommitter(mdb, in, m, testLog(), groupCommitWriters, storeQueueLen)
	srv := &server{db: mdb, inbox: in, committer: com, metrics: m, log: testLog(), maxDeliveries: maxDeliveries, multi: make(chan struct{}, multiSlots)}
	sw := &sweeper{db: mdb, inbox: in, metrics: m, log: testLog(), interval: time.Hour, retention: time.Hour}

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
		com.close()
		rdb.Close()
		sqldb.Close()
	})
	return &fixture{srv: srv, cli: internalpb.NewSaverClient(cc), rdb: rdb, sqldb: sqldb, mcfg: mcfg, sweep: sw}
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), grpcconn.DefaultCallTimeout)
	t.Cleanup(cancel)
	return ctx
}

func msg(app, user, device string, expiresMs int64) *internalpb.Message {
	id := newID()
	return &internalpb.Message{Id: id, App: app, User: user, Device: device, Qos: 1,
		Payload: []byte("payload-" + strconv.FormatUint(id, 10)), ExpiresMs: expiresMs}
}

func (f *fixture) store(t testing.TB, msgs ...*internalpb.Message) {
	t.Helper()
	if _, err := f.cli.Store(callCtx(t), &internalpb.StoreRequest{Messages: msgs}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) pending(t testing.TB, app, user, device string) []*internalpb.Message {
	t.Helper()
	r, err := f.cli.Pending(callCtx(t), &internalpb.PendingRequest{App: app, User: user, Device: device})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetMessages()
}

func (f *fixture) ack(t testing.TB, refs ...*internalpb.Message) {
	t.Helper()
	req := &internalpb.ReportRequest{}
	for _, m := range refs {
		req.Acked = append(req.Acked, &internalpb.MessageRef{App: m.GetApp(), User: m.GetUser(), Id: m.GetId()})
	}
	if _, err := f.cli.Report(callCtx(t), req); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) status(t testing.TB, app string, id uint64) *internalpb.StatusReply {
	t.Helper()
	r, err := f.cli.Status(callCtx(t), &internalpb.StatusRequest{App: app, Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rowCount counts rows of table matching id.
func (f *fixture) rowCount(t testing.TB, table string, id uint64) int {
	t.Helper()
	var n int
	if err := f.sqldb.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE id = ?", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// inInbox reports whether id is indexed and has a body in Redis.
func (f *fixture) inInbox(t testing.TB, m *internalpb.Message) (indexed, body bool) {
	t.Helper()
	ctx := callCtx(t)
	_, err := f.rdb.ZScore(ctx, inboxKey(m.GetApp(), m.GetUser()), member(m.GetId())).Result()
	indexed = err == nil
	body = f.rdb.HExists(ctx, bodyKey(m.GetApp(), m.GetUser()), member(m.GetId())).Val()
	return indexed, body
}

func ids(msgs []*internalpb.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.GetId()
	}
	return out
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return -1
	}
	return d.GetCounter().GetValue()
}
