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
func (c *Client) fetchEndpoints(ctx context.Context, failed []string) (dispatchAnswer, error) {
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
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher request: %w", err)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, dispatcherBody))
	if err != nil {
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return parseEndpoints(body)
}

// maxEndpoints bounds how many endpoints of one dispatcher answer are
// tried; a real answer lists a handful.
const maxEndpoints = 16

// maxStaleAnswers is how many answers in a row older than the last one
// kept are refused before one is taken anyway: an etcd restored from a
// backup goes back in revisions, and the client must not ignore its
// dispatcher for ever.
const maxStaleAnswers = 3

// dispatchAnswer is one answer of the dispatcher.
type dispatchAnswer struct {
	endpoints []string
	// version is the etcd revision of the room list (0 from a dispatcher
	// that does not send one); versions compare only within one
	// etcdCluster.
	version     int64
	etcdCluster string
}

// olderThan tells whether a is a staler room list than b: another
// dispatcher instance whose etcd watch lags behind.
func (a dispatchAnswer) olderThan(b dispatchAnswer) bool {
	return a.version > 0 && b.version > 0 && a.etcdCluster == b.etcdCluster && a.version < b.version
}

// parseEndpoints reads the dispatcher's answer, which comes from the
// network and is checked like any other input.
func parseEndpoints(body []byte) (dispatchAnswer, error) {
	var out struct {
		Endpoints   []string `json:"endpoints"`
		Version     int64    `json:"version"`
		EtcdCluster string   `json:"etcd_cluster"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher: decode: %w", err)
	}
	if out.Version < 0 {
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher: version %d is negative", out.Version)
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
		return dispatchAnswer{}, fmt.Errorf("sdk: dispatcher returned no endpoints")
	}
	return dispatchAnswer{endpoints: eps, version: out.Version, etcdCluster: out.EtcdCluster}, nil
}

// endpoints builds the list for the next round of attempts: redirect
// targets first, then the dispatcher's answer. When the dispatcher does
// not answer, its last answer and the static list stand in, with the
// endpoints that just failed moved to the end: a dispatcher restarting
// while a room dies must not leave clients with nowhere to go. An answer
// older than the last one kept (a lagging dispatcher instance) is treated
// the same way, so a room just marked draining is not offered again.
func (c *Client) endpoints(ctx context.Context, redirect []string) []string {
	var fromDispatcher []string
	if c.cfg.DispatcherURL != "" {
		ans, err := c.fetchEndpoints(ctx, c.failed)
		switch {
		case err != nil:
			c.log.Warn("sdk: dispatcher failed; using its last answer and the static endpoints", "err", err)
		case ans.olderThan(c.lastAnswer) && c.staleAnswers < maxStaleAnswers:
			c.staleAnswers++
			c.log.Debug("sdk: dispatcher answer older than the last one; keeping the last", "version", ans.version, "last", c.lastAnswer.version)
		default:
			c.staleAnswers = 0
			fromDispatcher = ans.endpoints
			c.lastAnswer = ans
			c.failed = c.failed[:0]
		}
	}
	if fromDispatcher == nil {
		fromDispatcher = fallbackEndpoints(c.lastAnswer.endpoints, c.cfg.Endpoints, c.failed)
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
