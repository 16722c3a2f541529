package main

import (
	"flag"
	"fmt"
	"time"
)

// Check-back worker defaults (docs/DEVELOPING.md flag table). The per-app
// schedule (first check, interval, max) is in the app's etcd config.
const (
	defaultTxCheckPoll    = time.Second
	defaultTxCheckWorkers = 16
	defaultTxCheckTimeout = 5 * time.Second
	defaultTxCheckLease   = 30 * time.Second
	maxTxCheckWorkers     = 500
	// txLeaseMargin: a lease must outlast the call it covers by this much
	// so that two centers never check one record at the same time, the
	// saver call that records the answer included.
	txLeaseMargin = 2 * downstreamTimeout
)

// txConfig is the check-back worker's command line.
type txConfig struct {
	// Poll is how often a center looks for due records.
	Poll time.Duration
	// Workers bounds concurrent check-back calls per center.
	Workers int
	// Timeout bounds one check-back call, body included.
	Timeout time.Duration
	// Lease is how long a claimed record is this center's: if it dies,
	// another center checks the record once the lease ends.
	Lease time.Duration
}

func (c *txConfig) bind(fs *flag.FlagSet) {
	fs.DurationVar(&c.Poll, "tx-check-poll", defaultTxCheckPoll, "how often center claims transactional records due for a check-back")
	fs.IntVar(&c.Workers, "tx-check-workers", defaultTxCheckWorkers, "concurrent check-back calls per center (0 disables check-back here)")
	fs.DurationVar(&c.Timeout, "tx-check-timeout", defaultTxCheckTimeout, "deadline of one check-back call to an app's check URL")
	fs.DurationVar(&c.Lease, "tx-check-lease", defaultTxCheckLease, "how long a claimed record is held before another center may check it; at least -tx-check-timeout + 4s")
}

func (c *txConfig) validate() error {
	switch {
	case c.Poll < 10*time.Millisecond:
		return fmt.Errorf("-tx-check-poll %s is below 10ms", c.Poll)
	case c.Workers < 0 || c.Workers > maxTxCheckWorkers:
		return fmt.Errorf("-tx-check-workers must be 0..%d", maxTxCheckWorkers)
	case c.Timeout <= 0:
		return fmt.Errorf("-tx-check-timeout must be positive")
	case c.Lease < c.Timeout+txLeaseMargin:
		return fmt.Errorf("-tx-check-lease %s must be at least -tx-check-timeout (%s) + %s, or two centers could check one record at once", c.Lease, c.Timeout, txLeaseMargin)
	}
	return nil
}
