package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
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
	"github.com/pushgw/pushgw/proto/internalpb"
)

// maxWebhookReply bounds what is read of a webhook's answer; the reply
// payload must also fit one client frame.
const maxWebhookReply = 64 << 10

// Headers of the webhook request. The signature lets the business check the
// call came from pushgw: hex HMAC-SHA256, keyed with the app's secret, of
// "<timestamp>.<body>".
const (
	headerApp       = "X-Pushgw-App"
	headerTimestamp = "X-Pushgw-Timestamp"
	headerSignature = "X-Pushgw-Signature"
	signaturePrefix = "v1="
)

// webhookRequest is the JSON body POSTed to the app's webhook.
type webhookRequest struct {
	App           string `json:"app"`
	User          string `json:"user"`
	Device        string `json:"device"`
	Route         string `json:"route"`
	PayloadBase64 string `json:"payload_base64"`
	SessionID     string `json:"session_id"`
}

// errWebhook is a failure of the business's webhook (not of pushgw).
type errWebhook struct{ reason string }

func (e *errWebhook) Error() string { return "webhook: " + e.reason }

type webhookClient struct {
	http    *http.Client
	timeout time.Duration
	now     func() time.Time
}

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

func sign(secret string, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// call POSTs the uplink to app's webhook and returns the reply payload.
func (c *webhookClient) call(ctx context.Context, app appconfig.App, req *internalpb.UplinkRequest) ([]byte, error) {
	u, err := url.Parse(app.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &errWebhook{reason: "app's webhook_url is not an http(s) URL"}
	}
	body, _ := json.Marshal(webhookRequest{
		App: req.GetApp(), User: req.GetUser(), Device: req.GetDevice(), Route: req.GetRoute(),
		PayloadBase64: base64.StdEncoding.EncodeToString(req.GetPayload()), SessionID: req.GetSessionId(),
	})
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, &errWebhook{reason: "cannot build request"}
	}
	ts := strconv.FormatInt(c.now().Unix(), 10)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "pushgw-coordinator")
	hreq.Header.Set(headerApp, app.Name)
	hreq.Header.Set(headerTimestamp, ts)
	hreq.Header.Set(headerSignature, sign(app.Secret, ts, body))
	resp, err := c.http.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return nil, &errWebhook{reason: "timed out"}
		}
		return nil, &errWebhook{reason: "unreachable"}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookReply+1))
	if err != nil {
		return nil, &errWebhook{reason: "reply could not be read"}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &errWebhook{reason: fmt.Sprintf("answered HTTP %d", resp.StatusCode)}
	}
	if len(raw) > maxWebhookReply {
		return nil, &errWebhook{reason: fmt.Sprintf("reply is over %d bytes", maxWebhookReply)}
	}
	return replyPayload(raw)
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
