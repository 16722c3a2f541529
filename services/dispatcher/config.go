package main

import (
	"flag"

	"github.com/pushgw/pushgw/pkg/service"
)

const (
	serviceName      = "dispatcher"
	defaultHTTPAddr  = "127.0.0.1:7080"
	defaultAdminAddr = "127.0.0.1:7081"
)

// Config is the dispatcher's command line.
type Config struct {
	Common   service.Common
	HTTPAddr string
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.Common.Bind(fs, serviceName, defaultAdminAddr)
	fs.StringVar(&c.HTTPAddr, "http", service.Env("DISPATCHER_HTTP", defaultHTTPAddr), "client-facing HTTP listen address (PUSHGW_DISPATCHER_HTTP)")
	err := fs.Parse(args)
	return c, err
}
