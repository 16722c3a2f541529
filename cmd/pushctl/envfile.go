package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxEnvFile bounds how much of the env file is read.
const maxEnvFile = 64 << 10

// envFilePath is where `make run` leaves the local cluster's settings
// (PUSHGW_ENV_FILE overrides), so pushctl works in a fresh shell with
// nothing but --app and --user.
func envFilePath(getenv func(string) string) string {
	if p := getenv("PUSHGW_ENV_FILE"); p != "" {
		return p
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "pushgw", "env.sh")
}

// readEnvFile parses `export KEY=VALUE` and `KEY=VALUE` lines of PUSHGW_*
// variables; anything else is ignored. A missing file is no error.
func readEnvFile(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxEnvFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "PUSHGW_") {
			continue
		}
		out[k] = strings.Trim(v, `"'`)
	}
	return out
}

// withEnvFile returns a getenv that falls back to the env file for
// variables the environment does not set.
func withEnvFile(getenv func(string) string) func(string) string {
	file := readEnvFile(envFilePath(getenv))
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return file[k]
	}
}
