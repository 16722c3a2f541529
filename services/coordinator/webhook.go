package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/webhooksig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// maxWebhookReply bounds what is read of a webhook's answer; the reply
// payload must also fit one client frame.
const maxWebhookReply = 64 << 10

// webhookRequest is the JSON body POSTed to the app's webhook. EventID is
// the same in every attempt of one uplink, so the business can tell a retry
// from a new uplink (docs/OPERATIONS.md, "Webhooks").
type webhookRequest struct {
	EventID       string `json:"event_id"`
	App           string `json:"app"`
	User          string `json:"user"`
	Device        string `json:"device"`
	Route         string `json:"route"`
	PayloadBase64 string `json:"payload_base64"`
	SessionID     string `json:"session_id"`
}

// errWebhook is a failure of the business's webhook (not of pushgw).
// retry marks failures another attempt may cure: 5xx, timeouts, refused
// connections. A 4xx or a malformed reply would fail the same way again.
type errWebhook struct {
	reason string
	retry  bool
}

func (e *errWebhook) Error() string { return "webhook: " + e.reason }

type webhookClient struct {
	http    *http.Client
	timeout time.Duration
	now     func() time.Time
}

// newWebhookClient: timeout bounds one POST (an attempt), not an uplink.
func newWebhookClient(timeout time.Duration, maxConns int) *webhookClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxConns
	tr.MaxConnsPerHost = maxConns
	tr.ResponseHeaderTimeout = timeout
	return &webhookClient{
		http: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// A redirect would resend the uplink somewhere the app did not
			// configure; treat it as a failed call instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: timeout,
		now:     time.Now,
	}
}

// newEventID returns a random id for one uplink (128 bits: collisions
// between events are not a concern for the business's de-duplication).
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// uplinkBody is the signed JSON body of an uplink's webhook call.
func uplinkBody(eventID string, req *internalpb.UplinkRequest) []byte {
	body, _ := json.Marshal(webhookRequest{
		EventID: eventID, App: req.GetApp(), User: req.GetUser(), Device: req.GetDevice(), Route: req.GetRoute(),
		PayloadBase64: base64.StdEncoding.EncodeToString(req.GetPayload()), SessionID: req.GetSessionId(),
	})
	return body
}

// attempt POSTs body once to app's webhook and returns the reply payload.
// Each attempt is signed with its own timestamp so that a retry late in the
// budget is not refused by the receiver's replay window.
func (c *webhookClient) attempt(ctx context.Context, app appconfig.App, eventID string, body []byte) ([]byte, error) {
	raw, err := c.post(ctx, app, eventID, body)
	if err != nil {
		return nil, err
	}
	return replyPayload(raw)
}

// post makes one signed POST of body and returns the 2xx reply's body;
// uplinks (attempt) and events (events_post.go) share it.
func (c *webhookClient) post(ctx context.Context, app appconfig.App, eventID string, body []byte) ([]byte, error) {
	u, err := url.Parse(app.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &errWebhook{reason: "app's webhook_url is not an http(s) URL"}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, &errWebhook{reason: "cannot build request"}
	}
	ts := c.now().Unix()
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "pushgw-coordinator")
	hreq.Header.Set(webhooksig.HeaderApp, app.Name)
	hreq.Header.Set(webhooksig.HeaderEventID, eventID)
	hreq.Header.Set(webhooksig.HeaderTimestamp, strconv.FormatInt(ts, 10))
	hreq.Header.Set(webhooksig.HeaderSignature, webhooksig.Sign(app.Secret, ts, body))
	resp, err := c.http.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return nil, &errWebhook{reason: "timed out", retry: true}
		}
		return nil, &errWebhook{reason: "unreachable", retry: true}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookReply+1))
	if err != nil {
		return nil, &errWebhook{reason: "reply could not be read", retry: true}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &errWebhook{reason: fmt.Sprintf("answered HTTP %d", resp.StatusCode), retry: resp.StatusCode >= 500}
	}
	if len(raw) > maxWebhookReply {
		return nil, &errWebhook{reason: fmt.Sprintf("reply is over %d bytes", maxWebhookReply)}
	}
	return raw, nil
}

// replyPayload extracts the payload from a webhook reply: the decoded
// "payload_base64" of a JSON object that has one, else the body as is.
func replyPayload(raw []byte) ([]byte, error) {
	var obj struct {
		PayloadBase64 *string `json:"payload_base64"`
	}
	if json.Unmarshal(raw, &obj) != nil || obj.PayloadBase64 == nil {
		return raw, nil
	}
	p, err := base64.StdEncoding.DecodeString(*obj.PayloadBase64)
	if err != nil {
		return nil, &errWebhook{reason: "reply payload_base64 is not valid base64"}
	}
	return p, nil
}
