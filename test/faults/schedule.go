package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/test"
)

// step is one fault: inject it, keep it for hold, heal it. The window
// blamed for a message runs from injection to the end of the settle time
// that follows healing.
type step struct {
	name   string
	hold   time.Duration
	inject func(h *harness)
	heal   func(h *harness)
	// target is what the fault acts on; two faults of a pair never share
	// one. infra marks Redis and MariaDB, healed before any process of a
	// pair is restarted, since services check them at start.
	target string
	infra  bool
	away   bool // users go offline on purpose (window.Away)
	// noRoom: the step leaves no room serving (window.NoRoom).
	noRoom bool
	// redisCluster: the step needs the run on a Redis Cluster
	// (schedule.RedisCluster); singleRedis: on one redis-server.
	redisCluster, singleRedis bool
}

// pair runs a and b at once: both injected, both held for the longer
// hold, infrastructure healed first.
func pair(a, b step) step {
	first, second := a, b
	if b.infra && !a.infra {
		first, second = b, a
	}
	return step{
		name: a.name + " + " + b.name, hold: max(a.hold, b.hold), target: a.target + "+" + b.target,
		// Every fault of the pool that targets a room takes it out of
		// service (killed, drained, hung): two of them leave none.
		noRoom: isRoom(a.target) && isRoom(b.target),
		inject: func(h *harness) { a.inject(h); b.inject(h) },
		heal: func(h *harness) {
			for _, st := range []step{first, second} {
				if st.heal != nil {
					st.heal(h)
				}
			}
		},
	}
}

// isRoom reports whether target is one of the cluster's rooms.
func isRoom(target string) bool {
	for i := range 2 {
		if target == test.RoomName(i) {
			return true
		}
	}
	return false
}

// randomPairs draws n pairs of distinct-target faults from pool.
func randomPairs(rng *rand.Rand, pool []step, n int) []step {
	var out []step
	for len(out) < n {
		a, b := pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))]
		if a.target == b.target {
			continue
		}
		out = append(out, pair(a, b))
	}
	return out
}

func killRestart(proc string, down time.Duration) step {
	return step{
		name: "kill -9 " + proc, hold: down, target: proc,
		inject: func(h *harness) { h.c.Kill(proc) },
		heal:   func(h *harness) { h.c.Start(proc) },
	}
}

func drainRestart(room string) step {
	return step{
		name: "SIGTERM (drain) " + room, hold: time.Second, target: room,
		inject: func(h *harness) { h.c.Stop(room) },
		heal:   func(h *harness) { h.c.Start(room) },
	}
}

func hang(proc string, d time.Duration) step {
	return step{
		name: "SIGSTOP " + proc, hold: d, target: proc,
		inject: func(h *harness) { h.c.Signal(proc, syscall.SIGSTOP) },
		heal:   func(h *harness) { h.c.Signal(proc, syscall.SIGCONT) },
	}
}

func redisFlushAll() step {
	return step{
		name: "redis FLUSHALL", target: "redis", infra: true,
		inject: func(h *harness) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Every master of a Redis Cluster: FLUSHALL is node-local.
			err := h.c.ForEachRedis(ctx, func(ctx context.Context, rdb *redis.Client) error { return rdb.FlushAll(ctx).Err() })
			if err != nil {
				h.t.Errorf("FLUSHALL: %v", err)
			}
		},
	}
}

func redisRestart(down time.Duration) step {
	return step{
		name: "redis kill -9 and restart (data gone)", hold: down, target: "redis", infra: true, singleRedis: true,
		inject: func(h *harness) { h.redis.Kill() },
		heal:   func(h *harness) { h.redis.Restart() },
	}
}

// redisClusterMasterKill kills one master of the run's 3-master Redis
// Cluster (no replicas: its third of the slots fails, the others keep
// serving) and restarts it with its slots but no data.
func redisClusterMasterKill(down time.Duration) step {
	return step{
		name: "redis-cluster: kill -9 one master, restart it empty", hold: down, target: "redis", infra: true, redisCluster: true,
		inject: func(h *harness) { h.c.RedisCluster.Nodes[0].Kill() },
		heal: func(h *harness) {
			if err := h.c.RedisCluster.Nodes[0].TryRestart(); err != nil {
				h.t.Errorf("restart redis-cluster master: %v", err)
				return
			}
			if err := h.c.RedisCluster.TryWaitOK(); err != nil {
				h.t.Errorf("redis-cluster after the master came back: %v", err)
			}
		},
	}
}

// optionalSteps belong to no plan: they run only when -faults.steps names
// them, since they put the whole run on a Redis Cluster, where the plans'
// single-server Redis restart cannot run.
func optionalSteps() []step {
	return []step{redisClusterMasterKill(3 * time.Second)}
}

func mariadbRestart(down time.Duration) step {
	return step{
		name: "mariadb kill -9 and restart", hold: down, target: "mariadb", infra: true,
		inject: func(h *harness) { h.maria.Kill() },
		heal:   func(h *harness) { h.maria.Restart() },
	}
}

func etcdOutage(down time.Duration) step {
	return step{
		name: "etcd stopped", hold: down,
		inject: func(h *harness) { h.c.EtcdServer.Stop() },
		heal:   func(h *harness) { h.c.EtcdServer.Restart() },
	}
}

func reconnectStorm() step {
	return step{
		name:   "reconnect storm",
		target: "clients",
		inject: func(h *harness) { h.fleet.reconnectAll() },
	}
}

// awayUsers and backlogPerUser shape the backlog step: that many users go
// away while each gets more than two pages (a page is 64) of messages.
const (
	awayUsers      = 10
	backlogPerUser = 150
)

// backlog takes awayUsers clients away, pushes each a backlog on top of
// the steady load, and brings them back: each must get all of it on its
// new connection, page by page.
func backlog() step {
	var back func() error
	return step{
		name: fmt.Sprintf("%d users away for a backlog of %d each", awayUsers, backlogPerUser), target: "clients", hold: 5 * time.Second, away: true,
		inject: func(h *harness) {
			back = h.fleet.offline(awayUsers)
			users := make([]string, awayUsers)
			for i := range users {
				users[i] = h.users[i]
			}
			h.writer.burst(users, backlogPerUser)
		},
		heal: func(h *harness) {
			if err := back(); err != nil {
				h.t.Errorf("bringing clients back: %v", err)
			}
		},
	}
}

// schedule is a named fault plan with its load.
type schedule struct {
	Name    string `json:"name"`
	Clients int    `json:"clients"`
	Rate    int    `json:"rate_per_s"`
	// Retries is how often the writer retries an unacknowledged push (with
	// its idempotency key, on the other center).
	Retries int           `json:"writer_retries"`
	Settle  time.Duration `json:"-"`
	// Drain bounds the wait for redelivery once the writer stopped, with
	// every client still connected as it was.
	Drain time.Duration `json:"-"`
	// Private servers the plan needs: a fault that takes one down must
	// not touch the shared ones.
	PrivateMariaDB bool `json:"-"`
	PrivateEtcd    bool `json:"-"`
	// RedisCluster runs the cluster on a private 3-master Redis Cluster;
	// set when a step needs it.
	RedisCluster bool `json:"redis_cluster,omitempty"`
	// Seed drew the random pairs of the plan; the same seed replays them.
	Seed uint64 `json:"seed"`
	// BroadcastEvery paces a stream of QoS 1 broadcasts beside the
	// pushes (broadcasts.go); 0 sends none.
	BroadcastEvery time.Duration `json:"broadcast_every_ns,omitempty"`
	steps          []step
}

// pairsInFull is how many random pairs of simultaneous faults follow the
// fixed sequence of the full plan.
const pairsInFull = 8

// fullSchedule is `make faults`: every fault of the suite, one after the
// other, under steady load, then random pairs of faults at once (etcd
// excluded: a process restarted without etcd exits by design).
func fullSchedule(seed uint64) schedule {
	s := schedule{
		Name: "full", Clients: 200, Rate: 50, Retries: 2, Settle: 6 * time.Second, Drain: 100 * time.Second,
		PrivateMariaDB: true, PrivateEtcd: true, Seed: seed, BroadcastEvery: time.Second,
		steps: []step{
			killRestart(test.RoomName(0), 2*time.Second),
			killRestart(test.RoomName(1), 2*time.Second),
			drainRestart(test.RoomName(0)),
			hang(test.RoomName(1), 8*time.Second),
			killRestart(test.CenterName(0), 2*time.Second),
			killRestart(test.CenterName(1), 2*time.Second),
			killRestart("register", 2*time.Second),
			killRestart("saver", 2*time.Second),
			killRestart("dispatcher", 2*time.Second),
			killRestart("coordinator", 2*time.Second),
			redisFlushAll(),
			redisRestart(3 * time.Second),
			mariadbRestart(2 * time.Second),
			etcdOutage(20 * time.Second),
			reconnectStorm(),
			backlog(),
		},
	}
	pool := []step{
		killRestart(test.RoomName(0), 2*time.Second), killRestart(test.RoomName(1), 2*time.Second),
		hang(test.RoomName(1), 6*time.Second), drainRestart(test.RoomName(0)),
		killRestart(test.CenterName(0), 2*time.Second), killRestart(test.CenterName(1), 2*time.Second),
		killRestart("register", 2*time.Second), killRestart("saver", 2*time.Second),
		killRestart("dispatcher", 2*time.Second),
		redisFlushAll(), redisRestart(3 * time.Second), mariadbRestart(2 * time.Second),
		reconnectStorm(),
	}
	s.steps = append(s.steps, randomPairs(rand.New(rand.NewPCG(seed, seed)), pool, pairsInFull)...)
	return s
}

// shortSchedule runs inside `make test`: one fault of each kind that
// exercises a different recovery path, on the shared MariaDB and etcd.
func shortSchedule() schedule {
	return schedule{
		Name: "short", Clients: 30, Rate: 20, Retries: 2, Settle: 4 * time.Second, Drain: 60 * time.Second,
		BroadcastEvery: time.Second,
		steps: []step{
			killRestart(test.RoomName(0), time.Second),
			hang(test.RoomName(1), 5*time.Second),
			killRestart(test.CenterName(0), time.Second),
			killRestart("saver", time.Second),
			redisFlushAll(),
			reconnectStorm(),
			backlog(),
		},
	}
}
