// Command pushctl is the pushgw operator and developer CLI: mint client
// tokens, listen as a client, push and query messages through center, and
// store app configs in etcd.
//
// Every flag can also be set through the environment as PUSHGW_<FLAG>
// (upper case, '-' as '_'); a few use the names `make run` writes to
// .run/env.sh instead (see envOverrides). Flags override the environment.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: pushctl <command> [flags]

commands:
  token   --app A --user U [--device D] [--ttl 1h] [--secret S]
  listen  --app A --user U [--device D] [--count N] [--timeout T] [--token TOK] [--dispatcher URL]
          [--bind APP=TOKEN,...]   (carry further apps of the vendor on the connection)
  push    --app A --user U [--device D] [--qos 1] [--ttl 60s] [--base64] [--collapse-key K] [--priority high] [--grpc ADDR] PAYLOAD
  status  ID
  broadcast [--app A] [--qos 1] [--ttl 0] [--online-only] [--tag T] [--base64] PAYLOAD
  app put --name N --secret S --api-key K [--webhook URL] [--etcd addr] [--cluster c]
  tag add|rm --app A --tag T USER...   (add or remove users, 1000 per request)
  tag ls  --app A (--user U | --tag T) (a user's tags, or every page of a tag's members)
  tx      prepare|commit|rollback|status|serve-check (run 'pushctl tx' for flags)
  room    drain|undrain|ls [ID] [--rate N] [--deadline D]   (admin key: take a room out of service, paced)
  app set --name N [--push-rate N] [--push-burst N] [--multi-rate N] [--multi-burst N] [--broadcast-rate N]
          [--broadcast-burst N] [--deliveries-per-second N] [--webhook URL] [--check-url URL]
          [--check-first D] [--check-interval D] [--check-max N]   (changes only the settings given)
          [--vendor V] [--login-policy multi|one-per-platform|one]

Run 'pushctl <command> -h' for a command's flags and their environment variables.
`

// cli carries the process's streams and environment, so tests run commands
// in-process.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli{stdout: os.Stdout, stderr: os.Stderr, getenv: withEnvFile(os.Getenv)}.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status: 0 success, 1
// failure, 2 usage error.
func (c cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "token":
		err = c.token(args[1:])
	case "listen":
		err = c.listen(ctx, args[1:])
	case "push":
		err = c.push(ctx, args[1:])
	case "status":
		err = c.status(ctx, args[1:])
	case "broadcast":
		err = c.broadcast(ctx, args[1:])
	case "app":
		switch {
		case len(args) >= 2 && args[1] == "put":
			err = c.appPut(ctx, args[2:])
		case len(args) >= 2 && args[1] == "set":
			err = c.appSet(ctx, args[2:])
		default:
			fmt.Fprint(c.stderr, "usage: pushctl app put --name N --secret S --api-key K [--webhook URL] [--etcd addr] [--cluster c]\n"+
				"       pushctl app set --name N [--push-rate N] ... (see pushctl -h)\n")
			return 2
		}
	case "tag":
		err = c.tag(ctx, args[1:])
	case "tx":
		err = c.tx(ctx, args[1:])
	case "room":
		err = c.room(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(c.stdout, usage)
		return 0
	default:
		fmt.Fprintf(c.stderr, "pushctl: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return c.exit(args[0], err)
}

func (c cli) exit(cmd string, err error) int {
	switch e := err.(type) {
	case nil:
		return 0
	case usageError:
		fmt.Fprintf(c.stderr, "pushctl %s: %v\n", cmd, e.error)
		return 2
	default:
		if err == errHelp {
			return 0
		}
		fmt.Fprintf(c.stderr, "pushctl %s: %v\n", cmd, err)
		return 1
	}
}
