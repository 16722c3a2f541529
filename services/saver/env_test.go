package main

import "os"

// testMySQLRoot is the DSN prefix of the MySQL server the unit tests use:
// PUSHGW_TEST_MYSQL (as in test/, e.g. "root@tcp(127.0.0.1:3306)/"), else
// the server scripts/deps.sh starts. Each test creates and drops its own
// database there.
func testMySQLRoot() string {
	if v := os.Getenv("PUSHGW_TEST_MYSQL"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/"
}
