package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
)

// broadcastRequest is center's POST /v1/broadcast body.
type broadcastRequest struct {
	App           string  `json:"app,omitempty"`
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 string  `json:"payload_base64,omitempty"`
	QoS           int     `json:"qos"`
	TTL           int64   `json:"ttl"`
	OnlineOnly    *bool   `json:"online_only,omitempty"`
	Tag           *string `json:"tag,omitempty"`
}

func (c cli) broadcast(ctx context.Context, args []string) error {
	fs := c.flagSet("broadcast")
	app := fs.String("app", "", "app name (optional: the API key's app)")
	qos := fs.Int("qos", 1, "0: only devices online now, 1: acked, and caught up by devices that connect before the ttl ends")
	ttl := fs.Duration("ttl", 0, "lifetime (whole seconds; 0: center's default, 24h)")
	onlineOnly := fs.Bool("online-only", false, "only devices online now get it (implied by --qos 0)")
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	tag := fs.String("tag", "", "only the tag's members get it (default: every device of the app)")
	b64 := fs.Bool("base64", false, "PAYLOAD is base64 of binary data (sent as payload_base64)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("api-key", *apiKey); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Errorf("want exactly one PAYLOAD argument, got %d", len(pos))}
	}
	if *qos != 0 && *qos != 1 {
		return usageError{fmt.Errorf("--qos must be 0 or 1")}
	}
	if *ttl < 0 {
		return usageError{fmt.Errorf("--ttl must not be negative")}
	}
	req := broadcastRequest{App: *app, QoS: *qos, TTL: int64(math.Ceil(ttl.Seconds()))}
	if *onlineOnly {
		req.OnlineOnly = onlineOnly
	}
	tagSet := false
	fs.Visit(func(f *flag.Flag) { tagSet = tagSet || f.Name == "tag" })
	if tagSet {
		if *tag == "" {
			return usageError{fmt.Errorf("--tag must not be empty (omit it to broadcast to the whole app)")}
		}
		req.Tag = tag
	}
	if *b64 {
		if _, err := base64.StdEncoding.DecodeString(pos[0]); err != nil {
			return usageError{fmt.Errorf("--base64: PAYLOAD: %w", err)}
		}
		req.PayloadBase64 = pos[0]
	} else {
		req.Payload = &pos[0]
	}
	body, _ := json.Marshal(req)
	return c.call(ctx, http.MethodPost, *center+"/v1/broadcast", *apiKey, body)
}
