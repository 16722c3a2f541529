package main

import (
	"context"
	"encoding/json"
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

func (c cli) roomDrain(ctx context.Context, args []string) error {
	fs := c.flagSet("room drain")
	center := fs.String("center", defaultCenter, "center base URL")
	key := fs.String("admin-key", defaultAdminKey, "center's admin key (its -admin-key)")
	rate := fs.Int("rate", 0, "clients redirected per second (0: the room's -drain-rate)")
	deadline := fs.Duration("deadline", 0, "longest the drain paces; then the rest go at once and the room exits (0: the room's -drain-deadline)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("admin-key", *key); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Errorf("want exactly one room ID argument (as `pushctl room ls` or the sessions API's room_id show it), got %d", len(pos))}
	}
	if *rate < 0 {
		return usageError{fmt.Errorf("--rate must not be negative")}
	}
	if *deadline < 0 {
		return usageError{fmt.Errorf("--deadline must not be negative")}
	}
	body, _ := json.Marshal(map[string]int{"rate": *rate, "deadline_seconds": int(math.Ceil(deadline.Seconds()))})
	return c.call(ctx, http.MethodPost, roomDrainURL(*center, pos[0]), *key, body)
}

func (c cli) roomUndrain(ctx context.Context, args []string) error {
	fs := c.flagSet("room undrain")
	center := fs.String("center", defaultCenter, "center base URL")
	key := fs.String("admin-key", defaultAdminKey, "center's admin key (its -admin-key)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("admin-key", *key); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Errorf("want exactly one room ID argument, got %d", len(pos))}
	}
	return c.call(ctx, http.MethodDelete, roomDrainURL(*center, pos[0]), *key, nil)
}

func (c cli) roomList(ctx context.Context, args []string) error {
	fs := c.flagSet("room ls")
	center := fs.String("center", defaultCenter, "center base URL")
	key := fs.String("admin-key", defaultAdminKey, "center's admin key (its -admin-key)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("admin-key", *key); err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{fmt.Errorf("takes no arguments")}
	}
	return c.call(ctx, http.MethodGet, *center+"/v1/admin/rooms", *key, nil)
}
