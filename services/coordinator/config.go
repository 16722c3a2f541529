package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/pushgw/pushgw/pkg/service"
)

const (
	serviceName               = "coordinator"
	defaultGRPCAddr           = "127.0.0.1:7600"
	defaultAdminAddr          = "127.0.0.1:7601"
	defaultWebhookTimeout     = 2500 * time.Millisecond // under the room's 3 s uplink deadline, so a slow webhook is reported as UPLINK_FAILED, not a timeout
	defaultWebhookConcurrency = 256
	// One attempt may take 1 s, so a webhook that hangs still leaves time
	// for a second attempt inside the 2.5 s budget.
	defaultWebhookAttemptTimeout = time.Second
	defaultWebhookAttempts       = 4
	defaultWebhookAppConcurrency = 64
	defaultWebhookAppQueue       = 128
)

// Config is the coordinator's command line.
type Config struct {
	Common             service.Common
	GRPCAddr           string
	WebhookTimeout     time.Duration
	WebhookConcurrency int

	WebhookAttemptTimeout time.Duration
	WebhookAttempts       int
	WebhookAppConcurrency int
	WebhookAppQueue       int

	// Events: callbacks and receipts from saver's outbox (events_config.go).
	Events eventLimits
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.Common.Bind(fs, serviceName, defaultAdminAddr)
	fs.StringVar(&c.GRPCAddr, "grpc", service.Env("COORDINATOR_GRPC", defaultGRPCAddr), "internal gRPC listen address, dialed by rooms (PUSHGW_COORDINATOR_GRPC)")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", defaultWebhookTimeout, "deadline of one uplink's delivery to the webhook, retries and back-off included (also cut to the room's deadline)")
	fs.IntVar(&c.WebhookConcurrency, "webhook-concurrency", defaultWebhookConcurrency, "uplinks being delivered (POSTs and back-off waits) at most, all apps together; more are answered UNAVAILABLE")
	fs.DurationVar(&c.WebhookAttemptTimeout, "webhook-attempt-timeout", defaultWebhookAttemptTimeout, "deadline of one webhook POST, reading the reply included")
	fs.IntVar(&c.WebhookAttempts, "webhook-attempts", defaultWebhookAttempts, "POSTs of one uplink at most (5xx, timeouts and refused connections are retried)")
	fs.IntVar(&c.WebhookAppConcurrency, "webhook-app-concurrency", defaultWebhookAppConcurrency, "one app's webhook calls in flight at most")
	fs.IntVar(&c.WebhookAppQueue, "webhook-app-queue", defaultWebhookAppQueue, "one app's uplinks waiting for a call slot at most; more are answered UPLINK_QUEUE_FULL")
	bindEventFlags(fs, &c.Events)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.Events.validate(); err != nil {
		return c, err
	}
	if c.WebhookTimeout <= 0 {
		return c, fmt.Errorf("-webhook-timeout must be positive")
	}
	if c.WebhookConcurrency <= 0 {
		return c, fmt.Errorf("-webhook-concurrency must be positive")
	}
	if c.WebhookAttemptTimeout <= 0 {
		return c, fmt.Errorf("-webhook-attempt-timeout must be positive")
	}
	if c.WebhookAttempts < 1 {
		return c, fmt.Errorf("-webhook-attempts must be at least 1")
	}
	if c.WebhookAppConcurrency <= 0 {
		return c, fmt.Errorf("-webhook-app-concurrency must be positive")
	}
	if c.WebhookAppQueue < 0 {
		return c, fmt.Errorf("-webhook-app-queue must not be negative")
	}
	return c, nil
}

func (c Config) webhookLimits() webhookLimits {
	return webhookLimits{
		budget: c.WebhookTimeout, attemptTimeout: c.WebhookAttemptTimeout, attempts: c.WebhookAttempts,
		concurrency: c.WebhookConcurrency, appConcurrency: c.WebhookAppConcurrency, appQueue: c.WebhookAppQueue,
	}
}
