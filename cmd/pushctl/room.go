package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/url"
)

// Room commands call center's admin API (docs/openapi.yaml, /v1/admin/)
// with the admin key, not an app's API key.
const roomUsage = "usage: pushctl room drain ID [--rate N] [--deadline D]\n       pushctl room undrain ID\n       pushctl room ls\n"

// defaultAdminKey is center's development default (-admin-key), so
// `make run` needs no setting.
const defaultAdminKey = "dev-admin-key"

func (c cli) room(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("want a subcommand: drain, undrain or ls\n%s", roomUsage)}
	}
	switch args[0] {
	case "drain":
		return c.roomDrain(ctx, args[1:])
	case "undrain":
		return c.roomUndrain(ctx, args[1:])
	case "ls":
		return c.roomList(ctx, args[1:])
	}
	return usageError{fmt.Errorf("unknown subcommand %q\n%s", args[0], roomUsage)}
}

func roomDrainURL(center, id string) string {
	return center + "/v1/admin/rooms/" + url.PathEscape(id) + "/drain"
}

// adminCommand is one room subcommand's flags: center, the admin key and
// its own (added by extra); run parses them and checks the key and the
// positional arguments' count (want).
type adminCommand struct {
	c      cli
	fs     *flag.FlagSet
	center *string
	key    *string
}

func (c cli) adminCommand(name string) adminCommand {
	fs := c.flagSet(name)
	return adminCommand{c: c, fs: fs,
		center: fs.String("center", defaultCenter, "center base URL"),
		key:    fs.String("admin-key", defaultAdminKey, "center's admin key (its -admin-key)"),
	}
}

// parse parses args and returns the positional ones, of which it wants
// exactly want (what says what they are).
func (a adminCommand) parse(args []string, want int, what string) ([]string, error) {
	pos, err := a.c.parse(a.fs, args)
	if err != nil {
		return nil, err
	}
	if err := require("admin-key", *a.key); err != nil {
		return nil, err
	}
	if len(pos) != want {
		if want == 0 {
			return nil, usageError{fmt.Errorf("takes no arguments")}
		}
		return nil, usageError{fmt.Errorf("want exactly one %s, got %d", what, len(pos))}
	}
	return pos, nil
}

func (c cli) roomDrain(ctx context.Context, args []string) error {
	a := c.adminCommand("room drain")
	rate := a.fs.Int("rate", 0, "clients redirected per second (0: the room's -drain-rate)")
	deadline := a.fs.Duration("deadline", 0, "longest the drain paces; then the rest go at once and the room exits (0: the room's -drain-deadline)")
	pos, err := a.parse(args, 1, "room ID argument (as `pushctl room ls` or the sessions API's room_id show it)")
	if err != nil {
		return err
	}
	if *rate < 0 {
		return usageError{fmt.Errorf("--rate must not be negative")}
	}
	if *deadline < 0 {
		return usageError{fmt.Errorf("--deadline must not be negative")}
	}
	body, _ := json.Marshal(map[string]int{"rate": *rate, "deadline_seconds": int(math.Ceil(deadline.Seconds()))})
	return c.call(ctx, http.MethodPost, roomDrainURL(*a.center, pos[0]), *a.key, body)
}

func (c cli) roomUndrain(ctx context.Context, args []string) error {
	a := c.adminCommand("room undrain")
	pos, err := a.parse(args, 1, "room ID argument")
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, roomDrainURL(*a.center, pos[0]), *a.key, nil)
}

func (c cli) roomList(ctx context.Context, args []string) error {
	a := c.adminCommand("room ls")
	if _, err := a.parse(args, 0, ""); err != nil {
		return err
	}
	return c.call(ctx, http.MethodGet, *a.center+"/v1/admin/rooms", *a.key, nil)
}
