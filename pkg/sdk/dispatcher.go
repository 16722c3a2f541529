package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// fetchEndpoints asks the dispatcher for an ordered endpoint list, telling it
// which endpoints this client failed on since the last successful connect.
func (c *Client) fetchEndpoints(ctx context.Context, failed []string) ([]string, error) {
	q := url.Values{}
	q.Set("app", c.cfg.App)
	q.Set("user", c.cfg.User)
	if c.cfg.Device != "" {
		q.Set("device", c.cfg.Device)
	}
	if len(failed) > 0 {
		q.Set("failed", strings.Join(failed, ","))
	}
	u := strings.TrimRight(c.cfg.DispatcherURL, "/") + "/v1/endpoints?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("sdk: dispatcher request: %w", err)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: dispatcher: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, dispatcherBody))
	if err != nil {
		return nil, fmt.Errorf("sdk: dispatcher: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sdk: dispatcher: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return parseEndpoints(body)
}

// maxEndpoints bounds how many endpoints of one dispatcher answer are
// tried; a real answer lists a handful.
const maxEndpoints = 16

// parseEndpoints reads the dispatcher's answer, which comes from the
// network and is checked like any other input.
func parseEndpoints(body []byte) ([]string, error) {
	var out struct {
		Endpoints []string `json:"endpoints"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("sdk: dispatcher: decode: %w", err)
	}
	eps := make([]string, 0, min(len(out.Endpoints), maxEndpoints))
	for _, e := range out.Endpoints {
		// Tolerate a scheme, since endpoints are grouped by kind elsewhere.
		if e = strings.TrimPrefix(strings.TrimSpace(e), "tcp://"); e != "" {
			eps = append(eps, e)
		}
		if len(eps) == maxEndpoints {
			break
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("sdk: dispatcher returned no endpoints")
	}
	return eps, nil
}

// endpoints builds the list for the next round of attempts: redirect
// targets first, then the dispatcher's answer. When the dispatcher does
// not answer, its last answer and the static list stand in, with the
// endpoints that just failed moved to the end: a dispatcher restarting
// while a room dies must not leave clients with nowhere to go.
func (c *Client) endpoints(ctx context.Context, redirect []string) []string {
	var fromDispatcher []string
	if c.cfg.DispatcherURL != "" {
		eps, err := c.fetchEndpoints(ctx, c.failed)
		if err != nil {
			c.log.Warn("sdk: dispatcher failed; using its last answer and the static endpoints", "err", err)
		} else {
			fromDispatcher = eps
			c.lastDispatched = eps
			c.failed = c.failed[:0]
		}
	}
	if fromDispatcher == nil {
		fromDispatcher = fallbackEndpoints(c.lastDispatched, c.cfg.Endpoints, c.failed)
	}
	seen := make(map[string]bool, len(redirect)+len(fromDispatcher))
	out := make([]string, 0, len(redirect)+len(fromDispatcher))
	for _, e := range append(append([]string(nil), redirect...), fromDispatcher...) {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

func (c *Client) noteFailed(ep string) {
	for _, f := range c.failed {
		if f == ep {
			return
		}
	}
	if len(c.failed) >= maxFailedKept {
		c.failed = c.failed[1:]
	}
	c.failed = append(c.failed, ep)
}

// fallbackEndpoints orders last and static, each once, failed ones last.
func fallbackEndpoints(last, static, failed []string) []string {
	bad := make(map[string]bool, len(failed))
	for _, f := range failed {
		bad[f] = true
	}
	seen := make(map[string]bool, len(last)+len(static))
	var good, rest []string
	for _, e := range append(append([]string(nil), last...), static...) {
		if seen[e] {
			continue
		}
		seen[e] = true
		if bad[e] {
			rest = append(rest, e)
		} else {
			good = append(good, e)
		}
	}
	return append(good, rest...)
}
