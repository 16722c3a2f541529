package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/pushgw/pushgw/pkg/service"
)

const (
	serviceName         = "center"
	defaultHTTPAddr     = "127.0.0.1:7000"
	defaultAdminAddr    = "127.0.0.1:7001"
	defaultDeliveryPool = 256
)

// Config is center's command line.
type Config struct {
	Common         service.Common
	HTTPAddr       string
	RequestTimeout time.Duration
	DeliveryPool   int
	// RedeliverInterval is the period of the redelivery sweep.
	RedeliverInterval time.Duration
	// BroadcastResends is how many times a broadcast is sent again, within
	// seconds, to a room that could not be reached (broadcast_resend.go);
	// 0 leaves such rooms to the broadcast sweep.
	BroadcastResends int
	// Tx configures the transactional check-back worker (tx_config.go).
	Tx txConfig
	// RedisAddr and RedisDB hold the per-app rate limits, the pacing
	// state and multicast progress, shared by every center.
	RedisAddr string
	RedisDB   int
	// GRPCAPIAddr serves the business gRPC API (docs/GRPC.md).
	GRPCAPIAddr string
	// AdminKey authenticates /v1/admin/ (admin_drain.go); empty turns
	// the admin API off.
	AdminKey string
	// RouteCacheSize and RouteCacheTTL bound the route cache (routes.go).
	RouteCacheSize int
	RouteCacheTTL  time.Duration
	// GC is -gc-percent (service.ServerGCPercent).
	GC service.GCConfig
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.Common.Bind(fs, serviceName, defaultAdminAddr)
	fs.StringVar(&c.HTTPAddr, "http", service.Env("CENTER_HTTP", defaultHTTPAddr), "business API listen address (PUSHGW_CENTER_HTTP)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", defaultRequestTimeout, "deadline of one API request, downstream calls included")
	fs.IntVar(&c.DeliveryPool, "delivery-workers", defaultDeliveryPool, "concurrent room calls while delivering batches of stored messages")
	fs.DurationVar(&c.RedeliverInterval, "redeliver-interval", defaultRedeliverInterval, "period of the sweeps that redeliver stored messages no room reported delivered and resend broadcasts to rooms that did not confirm them")
	fs.IntVar(&c.BroadcastResends, "broadcast-resends", defaultBroadcastResends, fmt.Sprintf("quick resends (after 0.25, 0.5, 1, 2 s, then 2 s each) of a broadcast to a room that could not be reached, while it stays listed, before the broadcast sweep's resend; 0..%d, 0 leaves them to the sweep alone", maxBroadcastResends))
	c.Tx.bind(fs)
	fs.StringVar(&c.RedisAddr, "redis", service.Env("REDIS", service.DefaultRedis), "Redis address of the per-app rate limits, pacing and multicast progress, shared by all centers (PUSHGW_REDIS)")
	fs.IntVar(&c.RedisDB, "redis-db", service.EnvInt("REDIS_DB", 0), "Redis database number (PUSHGW_REDIS_DB)")
	fs.StringVar(&c.GRPCAPIAddr, "grpc-api", service.Env("CENTER_GRPC_API", defaultGRPCAPIAddr), "business gRPC API listen address, beside -http (PUSHGW_CENTER_GRPC_API; docs/GRPC.md)")
	fs.StringVar(&c.AdminKey, "admin-key", service.Env("ADMIN_KEY", defaultAdminKey), "bearer key of the admin API (/v1/admin/: room drain); change it outside development, empty turns the admin API off (PUSHGW_ADMIN_KEY)")
	fs.IntVar(&c.RouteCacheSize, "route-cache-size", defaultRouteCacheSize, "users whose last Register answer center keeps, to deliver by it while Register cannot answer (0 turns the cache off)")
	fs.DurationVar(&c.RouteCacheTTL, "route-cache-ttl", defaultRouteCacheTTL, "oldest Register answer the route cache still delivers by")
	c.GC.Bind(fs, service.ServerGCPercent, "higher: less GC CPU per push for a few tens of MB of RSS")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.GC.Validate(); err != nil {
		return c, err
	}
	if err := c.Tx.validate(); err != nil {
		return c, err
	}
	if c.RequestTimeout <= 0 {
		return c, fmt.Errorf("-request-timeout must be positive")
	}
	if c.DeliveryPool <= 0 {
		return c, fmt.Errorf("-delivery-workers must be positive")
	}
	if c.RouteCacheSize < 0 || c.RouteCacheTTL < 0 {
		return c, fmt.Errorf("-route-cache-size and -route-cache-ttl must not be negative")
	}
	if c.BroadcastResends < 0 || c.BroadcastResends > maxBroadcastResends {
		return c, fmt.Errorf("-broadcast-resends must be 0..%d", maxBroadcastResends)
	}
	if c.RedeliverInterval <= 0 {
		return c, fmt.Errorf("-redeliver-interval must be positive")
	}
	return c, nil
}
