package main

import "os"

// testEtcd is the etcd the unit tests use: PUSHGW_TEST_ETCD, else the one
// scripts/deps.sh starts. Each test keeps to a cluster name of its own.
func testEtcd() string {
	if v := os.Getenv("PUSHGW_TEST_ETCD"); v != "" {
		return v
	}
	return "127.0.0.1:2379"
}
