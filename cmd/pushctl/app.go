package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
)

const etcdTimeout = 5 * time.Second

// appPut stores an app config in etcd, where every service watches it.
func (c cli) appPut(ctx context.Context, args []string) error {
	fs := c.flagSet("app put")
	name := fs.String("name", "", "app name")
	secret := fs.String("secret", "", "secret client tokens are signed with (>= 16 bytes)")
	apiKey := fs.String("api-key", "", "API key of the business backend on center (>= 16 bytes)")
	webhook := fs.String("webhook", "", "URL receiving client uplink data (optional)")
	etcd := fs.String("etcd", defaultEtcd, "comma-separated etcd endpoints")
	cluster := fs.String("cluster", defaultCluster, "cluster name")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	a := appconfig.App{Name: *name, Secret: *secret, APIKey: *apiKey, WebhookURL: *webhook}
	if err := a.Validate(); err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	cli, err := discovery.Connect(ctx, strings.Split(*etcd, ","), etcdTimeout)
	if err != nil {
		return err
	}
	defer cli.Close()
	if err := appconfig.Put(ctx, cli, *cluster, a); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "app %s stored in cluster %s\n", a.Name, *cluster)
	return nil
}
