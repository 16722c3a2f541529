package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Client-side limits.
const (
	writeTimeout = 5 * time.Second
	// tokenLifetime outlives any run; the room checks expiry at AUTH only.
	tokenLifetime = 2 * time.Hour
	// maxClientBody is what the generator accepts from the room.
	maxClientBody = protocol.DefaultMaxBodySize
	// maxDispatcherBody bounds an endpoints answer.
	maxDispatcherBody = 64 << 10
)

// codeError is an ERROR or KICK frame from the room.
type codeError struct {
	op   protocol.Op
	code protocol.Code
}

func (e *codeError) Error() string { return fmt.Sprintf("%s %s", e.op, e.code) }

// failureKind names err for the failure tables of the JSON result.
func failureKind(err error) string {
	var ce *codeError
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ce):
		return ce.code.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn_reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_local_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "other"
	}
}

// client is one authenticated connection: one goroutine reads, writers
// (ACKs from the reader, PINGs from the pinger) share a mutex.
type client struct {
	nc   net.Conn
	user string
	hb   time.Duration

	wmu    sync.Mutex
	seq    atomic.Uint32
	closed atomic.Bool
}

type dialer struct {
	// dispatcher, when set, is asked for the room of every connection.
	dispatcher string
	httpc      *http.Client
	app        string
	secret     []byte
	timeout    time.Duration
	src        []net.IP
	next       atomic.Uint64
}

// lookup asks the dispatcher for user's room, as a client does before
// it connects; the first endpoint is the one to dial.
func (d *dialer) lookup(user string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	q := url.Values{"app": {d.app}, "user": {user}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.dispatcher+"/v1/endpoints?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := d.httpc.Do(req)
	if err != nil {
		return "", fmt.Errorf("dispatcher: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDispatcherBody))
	if err != nil {
		return "", fmt.Errorf("dispatcher: %s: %w", resp.Status, err)
	}
	return firstEndpoint(resp.Status, resp.StatusCode, body)
}

// lookupLean is lookup over lc, a connect worker's own keep-alive
// connection to the dispatcher (newLeanGetConn): net/http's client and
// its JSON decoder cost the generator ≈ 70 µs per login, as much as the
// dispatcher's answer.
func (d *dialer) lookupLean(lc *leanConn, user string) (string, error) {
	q := url.Values{"app": {d.app}, "user": {user}}
	r, err := lc.fetch("/v1/endpoints?"+q.Encode(), time.Now())
	if err != nil {
		return "", fmt.Errorf("dispatcher: %w", err)
	}
	status := r.statusText
	if status == "" {
		status = strconv.Itoa(r.status)
	}
	return firstEndpoint(status, r.status, r.body)
}

// firstEndpoint is the room to dial from a dispatcher answer.
func firstEndpoint(status string, code int, body []byte) (string, error) {
	var ans struct {
		Endpoints []string `json:"endpoints"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return "", fmt.Errorf("dispatcher: %s: %w", status, err)
	}
	if code != http.StatusOK || len(ans.Endpoints) == 0 {
		return "", fmt.Errorf("dispatcher: %s, %d endpoints", status, len(ans.Endpoints))
	}
	ep := ans.Endpoints[0]
	if _, err := checkTCPAddrs(ep); err != nil {
		return "", fmt.Errorf("dispatcher: %w", err)
	}
	return ep, nil
}

// connect dials addr (or the dispatcher's answer), authenticates as user
// and waits for AUTH_REPLY.
func (d *dialer) connect(addr, user string) (*client, error) { return d.connectWith(addr, user, nil) }

// authFrame mints user's token and encodes its AUTH frame (seq 1): the
// connect phases build these before their clock starts, so the generator
// spends the timed phase dialling, not signing.
func (d *dialer) authFrame(user string) ([]byte, error) {
	tok, err := token.Mint(d.secret, token.Claims{App: d.app, User: user, Expiry: time.Now().Add(tokenLifetime)})
	if err != nil {
		return nil, err
	}
	return protocol.AppendMessage(nil, protocol.OpAuth, 1, &clientpb.Auth{
		Token: tok, Device: "load", Platform: "pushload", SdkVersion: "pushload/1"})
}

// connectWith is connect with user's AUTH frame from authFrame (nil: mint
// it now).
func (d *dialer) connectWith(addr, user string, frame []byte) (*client, error) {
	return d.connectVia(nil, addr, user, frame)
}

// connectVia is connectWith asking the dispatcher (when set) over lc, or
// through the shared net/http client when lc is nil.
func (d *dialer) connectVia(lc *leanConn, addr, user string, frame []byte) (*client, error) {
	if frame == nil {
		var err error
		if frame, err = d.authFrame(user); err != nil {
			return nil, err
		}
	}
	if d.dispatcher != "" {
		lookup := d.lookup
		if lc != nil {
			lookup = func(user string) (string, error) { return d.lookupLean(lc, user) }
		}
		ep, err := lookup(user)
		if err != nil {
			return nil, err
		}
		addr = ep
	}
	// No TCP keep-alive: Go's default sets it with four setsockopt calls
	// per dial (≈ 9 % of a generator's CPU in a connect phase), and the
	// connections PING the room anyway.
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: -1}
	if len(d.src) > 0 {
		ip := d.src[d.next.Add(1)%uint64(len(d.src))]
		nd.LocalAddr = &net.TCPAddr{IP: ip}
		nd.Control = bindNoPort
	}
	nc, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &client{nc: nc, user: user}
	c.seq.Store(1) // the AUTH's
	deadline := time.Now().Add(d.timeout)
	_ = nc.SetDeadline(deadline)
	if _, err := nc.Write(frame); err != nil {
		nc.Close()
		return nil, err
	}
	// Reading the header and body straight off the socket keeps an idle
	// client free of a buffered reader.
	f, err := protocol.NewReader(nc, maxClientBody).Read()
	if err != nil {
		nc.Close()
		return nil, err
	}
	switch f.Op {
	case protocol.OpAuthReply:
		var rep clientpb.AuthReply
		if err := proto.Unmarshal(f.Body, &rep); err != nil {
			nc.Close()
			return nil, fmt.Errorf("auth reply: %w", err)
		}
		c.hb = time.Duration(rep.GetHeartbeatSeconds()) * time.Second
	case protocol.OpError, protocol.OpKick:
		nc.Close()
		return nil, frameCode(f)
	default:
		nc.Close()
		return nil, fmt.Errorf("auth: unexpected %s", f.Op)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// frameCode extracts the code of an ERROR or KICK frame.
func frameCode(f protocol.Frame) error {
	m, err := protocol.DecodeBody(f)
	if err != nil {
		return err
	}
	switch b := m.(type) {
	case *clientpb.Error:
		return &codeError{op: f.Op, code: protocol.Code(b.GetCode())}
	case *clientpb.Kick:
		return &codeError{op: f.Op, code: protocol.Code(b.GetCode())}
	}
	return fmt.Errorf("unexpected %s", f.Op)
}

func (c *client) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(frame)
	return err
}

func (c *client) ping() error {
	return c.write(protocol.AppendFrame(make([]byte, 0, protocol.HeaderSize), protocol.OpPing, 0, c.seq.Add(1), nil))
}

func (c *client) ack(id uint64) error {
	frame, err := protocol.AppendMessage(nil, protocol.OpAck, c.seq.Add(1), &clientpb.Ack{Ids: []uint64{id}})
	if err != nil {
		return err
	}
	return c.write(frame)
}

// close resets the connection: a load generator must not leave tens of
// thousands of ports in TIME_WAIT for the next run.
func (c *client) close() {
	if c.closed.Swap(true) {
		return
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.nc.Close()
}

// readLoop reads frames until the connection ends; it calls onPush for
// every PUSH (then ACKs QoS 1, and calls onAcked, when set, once the ACK
// is written) and returns why the connection ended (nil when closed by us).
//
// With ackDelay > 0 each ACK is written that long after the PUSH was read,
// as a client on a real network's round trip would have it arrive.
func (c *client) readLoop(onPush func(*clientpb.Push), onAcked func(*clientpb.Push, time.Time), ackDelay time.Duration) error {
	r := protocol.NewReader(c.nc, maxClientBody)
	for {
		f, err := r.Read()
		if err != nil {
			if c.closed.Load() {
				return nil
			}
			return err
		}
		switch f.Op {
		case protocol.OpPush:
			var p clientpb.Push
			if err := proto.Unmarshal(f.Body, &p); err != nil {
				return fmt.Errorf("push body: %w", err)
			}
			// Timed before the ACK: latency ends when the frame is read.
			if onPush != nil {
				onPush(&p)
			}
			if p.GetQos() == 1 && ackDelay > 0 {
				time.AfterFunc(ackDelay, func() {
					if c.ack(p.GetId()) == nil && onAcked != nil {
						onAcked(&p, time.Now())
					}
				})
			} else if p.GetQos() == 1 {
				if err := c.ack(p.GetId()); err != nil {
					if !c.closed.Load() {
						return err
					}
				} else if onAcked != nil {
					onAcked(&p, time.Now())
				}
			}
		case protocol.OpError, protocol.OpKick:
			return frameCode(f)
		}
		if cap(f.Body) > 4<<10 {
			r.Release()
		}
	}
}

// bindNoPort lets connect, not bind, pick the source port of a dial from a
// chosen local address: bind would reserve the port for every destination
// and give each address one shared range of ~28k ports.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
