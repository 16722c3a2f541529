package main

import (
	"context"
	"database/sql"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
)

// replicaBackoff is how long reads skip a replica that just failed, so a
// dead or hung replica costs one failed call per period, not one per read.
const replicaBackoff = 5 * time.Second

// replica is the optional -mysql-replica pool for the reads that tolerate
// replication lag (Status). Every failure, and every "not found" (the row
// may not have replicated yet), is answered from the primary instead, so a
// replica that is unset, down or behind never makes a read fail or miss a
// message; at worst Status shows a state a moment old.
type replica struct {
	db        *sql.DB
	log       *slog.Logger
	downUntil atomic.Int64 // unix ns; reads go to the primary before it
	fallbacks *prometheus.CounterVec
}

// openReplica opens the replica pool without requiring it to answer: a
// saver starts, and serves from the primary, while its replica is down.
func openReplica(ctx context.Context, cfg *mysql.Config, dc dbConfig, reg prometheus.Registerer, log *slog.Logger) (*replica, error) {
	conn, err := mysql.NewConnector(withTimeouts(cfg, dc))
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(dc.maxOpen)
	db.SetMaxIdleConns(dc.maxIdle)
	db.SetConnMaxLifetime(dc.connMaxLife)
	r := newReplica(db, reg, log)
	pctx, cancel := context.WithTimeout(ctx, dbPingTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		r.failed("ping", err)
	}
	return r, nil
}

func newReplica(db *sql.DB, reg prometheus.Registerer, log *slog.Logger) *replica {
	r := &replica{db: db, log: log, fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_saver_replica_fallbacks_total",
		Help: "Lag-tolerant reads answered by the primary instead of -mysql-replica, by reason (error, down, not_found).",
	}, []string{"reason"})}
	reg.MustRegister(r.fallbacks)
	return r
}

// usable says whether a read should try the replica now.
func (r *replica) usable() bool {
	if r == nil {
		return false
	}
	if time.Now().UnixNano() < r.downUntil.Load() {
		r.fallbacks.WithLabelValues("down").Inc()
		return false
	}
	return true
}

// failed takes the replica out of reads for replicaBackoff.
func (r *replica) failed(op string, err error) {
	r.fallbacks.WithLabelValues("error").Inc()
	until := time.Now().Add(replicaBackoff).UnixNano()
	if prev := r.downUntil.Swap(until); prev < time.Now().UnixNano() {
		// Log once per outage period, not once per read.
		r.log.Warn("mysql replica failed; reading from the primary", "op", op, "retry_in", replicaBackoff.String(), "err", err)
	}
}

func (r *replica) close() {
	if r != nil {
		r.db.Close()
	}
}
