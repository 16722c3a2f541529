package main

import (
	"time"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/pkg/protocol"
)

// Limits of the center API (documented in docs/openapi.yaml).
const (
	maxBodyBytes    = 1 << 20                 // whole request body
	maxPayloadBytes = protocol.MaxPayloadSize // after base64 decoding; fits a default-size PUSH frame
	maxUserBytes    = limits.MaxUserLen
	maxDeviceBytes  = limits.MaxDeviceLen
	maxReasonBytes  = 256
	// maxIdempotencyKeyBytes matches saver's idempotency_keys.ikey column.
	maxIdempotencyKeyBytes = 128
	maxMultiUsers          = 100_000 // POST /v1/push/multi; see multi.go
	defaultTTL             = 24 * time.Hour
	maxTTL                 = 7 * 24 * time.Hour
	saverStoreChunk        = 500 // messages per Saver.Store call
	registerLookupCh       = 500 // users per Register.Lookup call
)

// Deadlines. Downstream calls are tighter than the whole request so a slow
// peer yields a clean 503 rather than a dropped connection.
const (
	defaultRequestTimeout = 5 * time.Second
	downstreamTimeout     = 2 * time.Second
	// storeTimeout is longer than other downstream calls: a Store that
	// times out here may still have committed, and the business cannot
	// tell, so it gets most of the request's budget.
	storeTimeout         = 4 * time.Second
	asyncDeliveryTimeout = 10 * time.Second
	shutdownTimeout      = 10 * time.Second
	redisDialTimeout     = time.Second
	redisIOTimeout       = time.Second
)
