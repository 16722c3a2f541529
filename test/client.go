package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Token mints a client token for the cluster's app.
func (c *Cluster) Token(user, device string, ttl time.Duration) string {
	c.t.Helper()
	tok, err := token.Mint([]byte(c.Secret), token.Claims{App: c.App, User: user, Device: device, Expiry: time.Now().Add(ttl)})
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// API calls center with the cluster's API key and decodes the JSON answer.
func (c *Cluster) API(method, path string, body any) (int, map[string]any) {
	return c.APIWithKey(c.APIKey, method, path, body)
}

// APIWithKey is API with an explicit key ("" sends no Authorization).
func (c *Cluster) APIWithKey(key, method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.CenterURL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return doJSON(c.t, req)
}

func doJSON(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: status %d, body not JSON: %q", req.Method, req.URL, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// Push sends a push through center and returns the message id.
func (c *Cluster) Push(user string, qos int, ttl time.Duration, payload string) uint64 {
	c.t.Helper()
	code, out := c.API("POST", "/v1/push", map[string]any{
		"app": c.App, "user": user, "payload": payload, "qos": qos, "ttl": int(ttl / time.Second)})
	if code != 200 {
		c.t.Fatalf("push: status %d: %v", code, out)
	}
	s, _ := out["id"].(string)
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		c.t.Fatalf("push: id %v: %v", out["id"], err)
	}
	return id
}

// Status returns a message's state via center ("" when unknown).
func (c *Cluster) Status(id uint64) string {
	c.t.Helper()
	code, out := c.API("GET", "/v1/messages/"+strconv.FormatUint(id, 10), nil)
	if code == 404 {
		return ""
	}
	if code != 200 {
		c.t.Fatalf("status %d: %d %v", id, code, out)
	}
	s, _ := out["state"].(string)
	return s
}

// RawClient speaks the frame protocol directly, for tests that need to
// send what a well-behaved SDK never would.
type RawClient struct {
	t    testing.TB
	Conn net.Conn
	r    *protocol.Reader
	seq  uint32
}

// Dial opens a raw connection to a room.
func Dial(t testing.TB, addr string) *RawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &RawClient{t: t, Conn: conn, r: protocol.NewReader(conn, protocol.DefaultMaxBodySize)}
}

// Send writes one frame with msg as body.
func (rc *RawClient) Send(op protocol.Op, msg proto.Message) uint32 {
	rc.t.Helper()
	rc.seq++
	b, err := protocol.AppendMessage(nil, op, rc.seq, msg)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.Write(b)
	return rc.seq
}

// Write writes raw bytes.
func (rc *RawClient) Write(b []byte) {
	rc.t.Helper()
	_ = rc.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Conn.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// Read returns the next frame and its decoded body, or an error (io.EOF
// when the server closed).
func (rc *RawClient) Read(timeout time.Duration) (protocol.Frame, proto.Message, error) {
	_ = rc.Conn.SetReadDeadline(time.Now().Add(timeout))
	f, err := rc.r.Read()
	if err != nil {
		return f, nil, err
	}
	m, err := protocol.DecodeBody(f)
	return f, m, err
}

// Auth sends AUTH and expects AUTH_REPLY.
func (rc *RawClient) Auth(tok string) *clientpb.AuthReply {
	rc.t.Helper()
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
	f, m, err := rc.Read(5 * time.Second)
	if err != nil {
		rc.t.Fatalf("auth: %v", err)
	}
	if f.Op != protocol.OpAuthReply {
		rc.t.Fatalf("auth: got %s %v, want AUTH_REPLY", f.Op, m)
	}
	return m.(*clientpb.AuthReply)
}

// ExpectError reads until an ERROR frame with code arrives, then expects
// the server to close the connection.
func (rc *RawClient) ExpectErrorAndClose(code protocol.Code) {
	rc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, m, err := rc.Read(time.Until(deadline))
		if err != nil {
			rc.t.Fatalf("want ERROR %s, got read error %v", code, err)
		}
		if f.Op != protocol.OpError {
			continue
		}
		e := m.(*clientpb.Error)
		if protocol.Code(e.Code) != code {
			rc.t.Fatalf("got ERROR %s (%q), want %s", protocol.Code(e.Code), e.Message, code)
		}
		break
	}
	rc.ExpectClosed()
}

// ExpectClosed expects the server to close the connection soon.
func (rc *RawClient) ExpectClosed() {
	rc.t.Helper()
	for {
		_, _, err := rc.Read(5 * time.Second)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			rc.t.Fatal("server did not close the connection within 5s")
		}
		return
	}
}

// Ping sends PING and expects PONG (skipping pushes in between).
func (rc *RawClient) Ping() {
	rc.t.Helper()
	rc.Send(protocol.OpPing, nil)
	for {
		f, _, err := rc.Read(5 * time.Second)
		if err != nil {
			rc.t.Fatalf("ping: %v", err)
		}
		if f.Op == protocol.OpPong {
			return
		}
	}
}

// NextPush reads frames until a PUSH arrives (answering nothing).
func (rc *RawClient) NextPush(timeout time.Duration) (*clientpb.Push, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, m, err := rc.Read(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		if f.Op == protocol.OpPush {
			return m.(*clientpb.Push), nil
		}
		if f.Op == protocol.OpError || f.Op == protocol.OpKick {
			return nil, fmt.Errorf("got %s %v", f.Op, m)
		}
	}
}

// Eventually retries cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
