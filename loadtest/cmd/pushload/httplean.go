package main

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// HTTP clients of the push senders (-http-client).
const (
	// httpClientLean is leanConn: one keep-alive HTTP/1.1 connection per
	// worker, requests written from a reused buffer. It costs the
	// generator a fraction of net/http's CPU per push, so at saturation
	// the generator steals less of the box from the cluster it measures.
	httpClientLean = "lean"
	// httpClientStd is net/http's client with a JSON-marshalled map per
	// push, kept to compare against.
	httpClientStd = "std"
	// leanReadBuffer is the per-connection read buffer; it also bounds a
	// status or header line.
	leanReadBuffer = 4 << 10
	// leanIdleMax closes a connection idle this long before reusing it,
	// well inside center's 2-minute idle timeout, so a request does not
	// race the server closing an idle connection.
	leanIdleMax = time.Minute
)

func httpClients() []string { return []string{httpClientLean, httpClientStd} }

// leanConn is one worker's keep-alive connection to center. Not safe for
// concurrent use. A request is never retried: a POST may have reached
// center before its connection failed (net/http does not retry one
// either).
type leanConn struct {
	addr    string // host:port dialled
	prefix  []byte // request line tail and fixed headers, up to Content-Length's value
	timeout time.Duration

	conn     net.Conn
	br       *bufio.Reader
	req      []byte // reused request buffer
	lastUsed time.Time
	dials    int
	// get marks a client of GETs (newLeanGetConn): prefix then ends the
	// request, and answers keep their 200 bodies.
	get bool
}

// newLeanGetConn prepares a client that GETs from base (an http:// URL,
// the dispatcher's) and keeps the answers' bodies; it dials on first use.
func newLeanGetConn(base string, timeout time.Duration) (*leanConn, error) {
	addr, host, err := leanAddr(base)
	if err != nil {
		return nil, err
	}
	return &leanConn{addr: addr, prefix: leanPrefix(host, "\r\n\r\n"), timeout: timeout, get: true}, nil
}

// leanPrefix is what follows a request's method and path: the version,
// Host and then rest.
func leanPrefix(host, rest string) []byte {
	p := []byte(" HTTP/1.1\r\nHost: ")
	p = append(p, host...)
	return append(p, rest...)
}

// leanAddr is the host:port to dial for an http:// base URL, and its Host.
func leanAddr(base string) (addr, host string, err error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", "", fmt.Errorf("lean http: %q: %w", base, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return "", "", fmt.Errorf("lean http: %q: want http://host:port", base)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, u.Host, nil
}

// newLeanConn prepares a client of center (an http:// base URL) that
// sends with apiKey as its Bearer token; it dials on first use.
func newLeanConn(center, apiKey string, timeout time.Duration) (*leanConn, error) {
	addr, host, err := leanAddr(center)
	if err != nil {
		return nil, err
	}
	p := leanPrefix(host, "\r\nAuthorization: Bearer "+apiKey+"\r\nContent-Type: application/json\r\nContent-Length: ")
	return &leanConn{addr: addr, prefix: p, timeout: timeout}, nil
}

// post sends body to path and reads the answer; t0 is when the request
// started, its deadline t0 + timeout. On an error the connection is
// closed and the next post dials again.
func (c *leanConn) post(path string, body []byte, t0 time.Time) (leanResponse, error) {
	if c.get {
		return leanResponse{}, fmt.Errorf("lean http: POST %s on a GET client", path)
	}
	return c.do("POST", path, body, t0)
}

// fetch GETs path (with its query) on a newLeanGetConn client; the
// answer's body is kept whatever its status.
func (c *leanConn) fetch(path string, t0 time.Time) (leanResponse, error) {
	if !c.get {
		return leanResponse{}, fmt.Errorf("lean http: GET %s on a POST client", path)
	}
	return c.do("GET", path, nil, t0)
}

func (c *leanConn) do(method, path string, body []byte, t0 time.Time) (leanResponse, error) {
	if c.conn != nil && t0.Sub(c.lastUsed) > leanIdleMax {
		c.close()
	}
	deadline := t0.Add(c.timeout)
	if c.conn == nil {
		d := net.Dialer{Deadline: deadline}
		conn, err := d.Dial("tcp", c.addr)
		if err != nil {
			return leanResponse{}, fmt.Errorf("lean http: %s %s: %w", method, path, err)
		}
		c.conn, c.dials = conn, c.dials+1
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, leanReadBuffer)
		} else {
			c.br.Reset(conn)
		}
	}
	r, err := c.roundTrip(method, path, body, deadline)
	if err != nil {
		c.close()
		return r, fmt.Errorf("lean http: %s %s: %w", method, path, err)
	}
	if r.close {
		c.close()
	}
	c.lastUsed = t0
	return r, nil
}

func (c *leanConn) roundTrip(method, path string, body []byte, deadline time.Time) (leanResponse, error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return leanResponse{}, err
	}
	c.req = append(c.req[:0], method...)
	c.req = append(c.req, ' ')
	c.req = append(c.req, path...)
	c.req = append(c.req, c.prefix...)
	if !c.get { // a GET's prefix ended the request
		c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
		c.req = append(c.req, "\r\n\r\n"...)
		c.req = append(c.req, body...)
	}
	if _, err := c.conn.Write(c.req); err != nil {
		return leanResponse{}, err
	}
	return readResponseKeep(c.br, c.get)
}

// close closes the connection; a nil client has none.
func (c *leanConn) close() {
	if c != nil && c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}
