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
)

// Config is the coordinator's command line.
type Config struct {
	Common             service.Common
	GRPCAddr           string
	WebhookTimeout     time.Duration
	WebhookConcurrency int
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.Common.Bind(fs, serviceName, defaultAdminAddr)
	fs.StringVar(&c.GRPCAddr, "grpc", service.Env("COORDINATOR_GRPC", defaultGRPCAddr), "internal gRPC listen address, dialed by rooms (PUSHGW_COORDINATOR_GRPC)")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", defaultWebhookTimeout, "deadline of one webhook call, reading the reply included")
	fs.IntVar(&c.WebhookConcurrency, "webhook-concurrency", defaultWebhookConcurrency, "webhook calls in flight at most; more uplinks are answered UNAVAILABLE")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.WebhookTimeout <= 0 {
		return c, fmt.Errorf("-webhook-timeout must be positive")
	}
	if c.WebhookConcurrency <= 0 {
		return c, fmt.Errorf("-webhook-concurrency must be positive")
	}
	return c, nil
}
