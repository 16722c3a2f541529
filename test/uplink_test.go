package test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/sdk"
)

// Uplink: client UPLINK → room → coordinator → the app's webhook (signed
// with the app secret), and the webhook's reply back to the client.
func TestUplinkThroughCoordinator(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: 2 * time.Second})

	type call struct {
		App, User, Device, Route, PayloadBase64 string
	}
	calls := make(chan call, 16) // the "fail" uplink is POSTed up to -webhook-attempts times
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(c.Secret))
		mac.Write([]byte(r.Header.Get("X-Pushgw-Timestamp") + "." + string(body)))
		if r.Header.Get("X-Pushgw-Signature") != "v1="+hex.EncodeToString(mac.Sum(nil)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var in struct {
			App           string `json:"app"`
			User          string `json:"user"`
			Device        string `json:"device"`
			Route         string `json:"route"`
			PayloadBase64 string `json:"payload_base64"`
		}
		_ = json.Unmarshal(body, &in)
		calls <- call{in.App, in.User, in.Device, in.Route, in.PayloadBase64}
		if in.Route == "fail" {
			http.Error(w, "nope", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"payload_base64": base64.StdEncoding.EncodeToString([]byte("pong:" + in.Route))})
	}))
	defer hook.Close()
	setWebhook(t, c, hook.URL)

	cl := startSDK(t, c, "talker", "phone")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The coordinator may see the webhook change a moment after etcd has it.
	var reply []byte
	var err error
	Eventually(t, 10*time.Second, "uplink answered", func() bool {
		reply, err = cl.Uplink(ctx, "chat", []byte("hi"))
		return err == nil
	})
	if string(reply) != "pong:chat" {
		t.Fatalf("uplink reply = %q", reply)
	}
	got := <-calls
	for len(calls) > 0 {
		got = <-calls
	}
	if got.App != c.App || got.User != "talker" || got.Device != "phone" || got.PayloadBase64 != base64.StdEncoding.EncodeToString([]byte("hi")) {
		t.Fatalf("webhook saw %+v", got)
	}

	_, err = cl.Uplink(ctx, "fail", []byte("x"))
	var se *sdk.ServerError
	if !errors.As(err, &se) || se.Code != protocol.CodeUplinkFailed {
		t.Fatalf("uplink to a failing webhook: %v, want UPLINK_FAILED", err)
	}
	// The connection stays usable after a failed uplink.
	if reply, err := cl.Uplink(ctx, "again", nil); err != nil || string(reply) != "pong:again" {
		t.Fatalf("uplink after a failure: %q, %v", reply, err)
	}
}

func setWebhook(t *testing.T, c *Cluster, url string) {
	t.Helper()
	putApp(t, c, appconfig.App{Name: c.App, Secret: c.Secret, APIKey: c.APIKey, WebhookURL: url})
}
