package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// envOverrides maps flag names to the environment names `make run` and the
// services use, where PUSHGW_<FLAG> would not match them.
var envOverrides = map[string]string{
	"secret":     "PUSHGW_APP_SECRET",
	"center":     "PUSHGW_CENTER_URL",
	"dispatcher": "PUSHGW_DISPATCHER_URL",
	"name":       "PUSHGW_APP",
	"webhook":    "PUSHGW_WEBHOOK_URL",
}

// Defaults matching docs/DEVELOPING.md's ports.
const (
	defaultCenter     = "http://127.0.0.1:7000"
	defaultDispatcher = "http://127.0.0.1:7080"
	defaultEtcd       = "127.0.0.1:2379"
	defaultCluster    = "local"
)

var errHelp = errors.New("help requested")

type usageError struct{ error }

func envName(flagName string) string {
	if n, ok := envOverrides[flagName]; ok {
		return n
	}
	return "PUSHGW_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (c cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("pushctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// parse applies the environment to every flag of fs, then args on top, and
// returns the positional arguments (which may be mixed with flags).
func (c cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		f.Usage += " ($" + name + ")"
		if v := c.getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = usageError{fmt.Errorf("$%s: %w", name, err)}
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func require(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usageError{fmt.Errorf("--%s is required (or $%s)", pairs[i], envName(pairs[i]))}
		}
	}
	return nil
}
