package main

import (
	"flag"
	"fmt"
	"time"
)

// Event delivery defaults (docs/OPERATIONS.md, "Callbacks and receipts").
const (
	defaultEventPoll      = 500 * time.Millisecond
	defaultEventLease     = 30 * time.Second
	defaultEventBatch     = 200
	defaultEventAppQueue  = 2000
	defaultEventWorkers   = 4
	defaultEventRetryBase = time.Second
	defaultEventRetryMax  = 30 * time.Second
	defaultEventMaxAge    = 24 * time.Hour
	maxEventBatchFlag     = 1000 // saver's LeaseEvents bound
)

// bindEventFlags adds the event delivery flags to fs.
func bindEventFlags(fs *flag.FlagSet, l *eventLimits) {
	fs.DurationVar(&l.poll, "event-poll", defaultEventPoll, "wait between outbox lease calls that found no event (a full lease is followed at once by the next)")
	fs.DurationVar(&l.lease, "event-lease", defaultEventLease, "how long leased events belong to this coordinator; unsettled ones are leased again after it")
	fs.IntVar(&l.batch, "event-lease-batch", defaultEventBatch, "events leased from saver per call (1..1000)")
	fs.IntVar(&l.appQueue, "event-app-queue", defaultEventAppQueue, "one app's leased events waiting in memory at most; more are counted as overflow and stay in the outbox")
	fs.IntVar(&l.workers, "event-app-workers", defaultEventWorkers, "POSTs of one app's events in flight at most (each user's events stay in order)")
	fs.DurationVar(&l.retryBase, "event-retry-base", defaultEventRetryBase, "back-off after an event's first failed POST; doubled per failure, with jitter")
	fs.DurationVar(&l.retryMax, "event-retry-max", defaultEventRetryMax, "longest back-off between POSTs of one event")
	fs.DurationVar(&l.maxAge, "event-max-age", defaultEventMaxAge, "an event still undelivered this long after it happened is dropped (counted and logged)")
}

func (l eventLimits) validate() error {
	switch {
	case l.poll <= 0:
		return fmt.Errorf("-event-poll must be positive")
	case l.lease < 5*time.Second:
		return fmt.Errorf("-event-lease must be at least 5s")
	case l.batch < 1 || l.batch > maxEventBatchFlag:
		return fmt.Errorf("-event-lease-batch must be 1..%d", maxEventBatchFlag)
	case l.appQueue < 1:
		return fmt.Errorf("-event-app-queue must be positive")
	case l.workers < 1:
		return fmt.Errorf("-event-app-workers must be positive")
	case l.retryBase <= 0 || l.retryMax < l.retryBase:
		return fmt.Errorf("-event-retry-base must be positive and -event-retry-max at least as long")
	case l.maxAge <= 0:
		return fmt.Errorf("-event-max-age must be positive")
	}
	return nil
}
