package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	httpTimeout  = 10 * time.Second
	maxReplySize = 1 << 20
)

// pushRequest is center's POST /v1/push body.
type pushRequest struct {
	App           string  `json:"app"`
	User          string  `json:"user"`
	Device        string  `json:"device"`
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 string  `json:"payload_base64,omitempty"`
	QoS           int     `json:"qos"`
	TTL           int64   `json:"ttl"`
	CollapseKey   string  `json:"collapse_key,omitempty"`
	Priority      string  `json:"priority,omitempty"`
}

func (c cli) push(ctx context.Context, args []string) error {
	fs := c.flagSet("push")
	app := fs.String("app", "", "app name")
	user := fs.String("user", "", "user id")
	device := fs.String("device", "", "device id (optional: all devices)")
	qos := fs.Int("qos", 1, "0: at most once, 1: at least once")
	ttl := fs.Duration("ttl", 60*time.Second, "message lifetime (whole seconds)")
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	b64 := fs.Bool("base64", false, "PAYLOAD is base64 of binary data (sent as payload_base64)")
	collapseKey := fs.String("collapse-key", "", "replace the user's pending message with the same key (qos 1)")
	priority := fs.String("priority", "", "high or normal: order of the backlog a reconnecting client gets (qos 1)")
	grpcAddr := fs.String("grpc", "", "push through center's gRPC API at this address (its -grpc-api, e.g. 127.0.0.1:7002) instead of --center's HTTP API")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("app", *app, "user", *user, "api-key", *apiKey); err != nil {
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
	if *priority != "" && *priority != "high" && *priority != "normal" {
		return usageError{fmt.Errorf("--priority must be high or normal")}
	}
	req := pushRequest{App: *app, User: *user, Device: *device, QoS: *qos, TTL: int64(math.Ceil(ttl.Seconds())),
		CollapseKey: *collapseKey, Priority: *priority}
	if *b64 {
		if _, err := base64.StdEncoding.DecodeString(pos[0]); err != nil {
			return usageError{fmt.Errorf("--base64: PAYLOAD: %w", err)}
		}
		req.PayloadBase64 = pos[0]
	} else {
		req.Payload = &pos[0]
	}
	if *grpcAddr != "" {
		return c.pushGRPC(ctx, *grpcAddr, *apiKey, req)
	}
	body, _ := json.Marshal(req)
	return c.call(ctx, http.MethodPost, *center+"/v1/push", *apiKey, body)
}

func (c cli) status(ctx context.Context, args []string) error {
	fs := c.flagSet("status")
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("api-key", *apiKey); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Errorf("want exactly one message ID argument, got %d", len(pos))}
	}
	if _, err := strconv.ParseUint(pos[0], 10, 64); err != nil {
		return usageError{fmt.Errorf("message ID %q is not a decimal 64-bit id", pos[0])}
	}
	return c.call(ctx, http.MethodGet, *center+"/v1/messages/"+pos[0], *apiKey, nil)
}

// call sends one request to center and prints its JSON reply; a 4xx/5xx
// becomes an error carrying center's code and message.
func (c cli) call(ctx context.Context, method, url, apiKey string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(url, "/"), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplySize))
	if err != nil {
		return fmt.Errorf("%s %s: read reply: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Code    json.RawMessage `json:"code"`
			Message string          `json:"message"`
		}
		if json.Unmarshal(reply, &e) == nil && (len(e.Code) > 0 || e.Message != "") {
			return fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, strings.Trim(string(e.Code), `"`), e.Message)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(reply)))
	}
	var out bytes.Buffer
	if err := json.Compact(&out, reply); err != nil {
		return errors.Join(fmt.Errorf("HTTP %d: reply is not JSON: %q", resp.StatusCode, reply), err)
	}
	fmt.Fprintf(c.stdout, "%s\n", out.Bytes())
	return nil
}
