package main

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// Limits of one generator process.
const (
	// maxConnsPerProc leaves room under the 20,000-descriptor hard limit for
	// the runtime, HTTP clients and stdio.
	maxConnsPerProc = 18000
	// pingTick is the pinger's granularity; a heartbeat period is split
	// into slots of this length so pings are spread, not bursty.
	pingTick = 100 * time.Millisecond
	// defaultHeartbeat is used until a room has announced its own.
	defaultHeartbeat = 30 * time.Second
)

// fleet is the set of connections one process holds.
type fleet struct {
	d      *dialer
	addrs  []string
	onPush func(*clientpb.Push)
	// onAcked, when set, is told when the ACK of a QoS 1 PUSH was written
	// (the unicast scenario's "acked" hop).
	onAcked func(*clientpb.Push, time.Time)
	// ackDelay holds each ACK back this long (the unicast scenario's
	// -ack-delay).
	ackDelay time.Duration

	mu      sync.Mutex
	clients []*client
	readers sync.WaitGroup

	ok        atomic.Int64
	failures  counts // during connect
	drops     counts // connections lost after auth, by reason
	connLat   latencies
	pingFails atomic.Int64
	hb        atomic.Int64 // heartbeat announced by the room (ns)
}

func checkPerProc(n int) error {
	if n > maxConnsPerProc {
		return fmt.Errorf("%d connections in one process exceed the limit of %d (the hard fd limit is 20,000 per process); use -procs K so each child holds N/K", n, maxConnsPerProc)
	}
	return nil
}

// connectRange opens users prefix+first .. prefix+first+n-1 with at most
// conc dials in flight, spreading them over the fleet's addresses. It
// returns when every attempt finished or deadline passed. The users' AUTH
// frames are built before start, so the timed phase is dialling and
// authenticating only (minting a JWT per connection inside it made the
// generator, not the room, set the connect rate).
func (f *fleet) connectRange(prefix string, first, n, conc int, deadline time.Time) (start, end time.Time) {
	users, frames := f.prepare(prefix, first, n)
	next := atomic.Int64{}
	start = time.Now()
	var wg sync.WaitGroup
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker asks the dispatcher over a keep-alive connection
			// of its own (nil without a dispatcher).
			lc := f.lookupConn()
			defer lc.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || time.Now().After(deadline) {
					return
				}
				f.connectOne(lc, f.addrs[(first+i)%len(f.addrs)], users[i], frames[i])
			}
		}()
	}
	wg.Wait()
	return start, time.Now()
}

// prepare names users prefix+first .. and builds their AUTH frames, on
// every core; a frame that could not be built stays nil and is minted
// (and its error counted) at connect.
func (f *fleet) prepare(prefix string, first, n int) (users []string, frames [][]byte) {
	users, frames = make([]string, n), make([][]byte, n)
	procs := min(runtime.GOMAXPROCS(0), max(n, 1))
	var wg sync.WaitGroup
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += procs {
				users[i] = prefix + strconv.Itoa(first+i)
				frames[i], _ = f.d.authFrame(users[i])
			}
		}()
	}
	wg.Wait()
	return users, frames
}

// lookupConn is a connect worker's client of the dispatcher, nil when
// there is none (or its URL is not plain http: the shared client then
// asks).
func (f *fleet) lookupConn() *leanConn {
	if f.d.dispatcher == "" {
		return nil
	}
	lc, err := newLeanGetConn(f.d.dispatcher, f.d.timeout)
	if err != nil {
		return nil
	}
	return lc
}

// connectOne connects user with its prepared AUTH frame (nil: minted
// now), asking the dispatcher over lc when it is set.
func (f *fleet) connectOne(lc *leanConn, addr, user string, frame []byte) {
	t0 := time.Now()
	c, err := f.d.connectVia(lc, addr, user, frame)
	if err != nil {
		f.failures.Add(failureKind(err), 1)
		return
	}
	f.connLat.Add(time.Since(t0))
	f.ok.Add(1)
	if c.hb > 0 {
		f.hb.Store(int64(c.hb))
	}
	f.mu.Lock()
	f.clients = append(f.clients, c)
	f.mu.Unlock()
	f.readers.Add(1)
	go func() {
		defer f.readers.Done()
		if err := c.readLoop(f.onPush, f.onAcked, f.ackDelay); err != nil {
			f.drops.Add(failureKind(err), 1)
			c.close()
		}
	}()
}

// Len is the number of connections that authenticated (live or since lost).
func (f *fleet) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.clients)
}

// pinger pings every connection once per announced heartbeat, connection
// i in slot i mod slots, until stop closes.
func (f *fleet) pinger(stop <-chan struct{}) {
	tk := time.NewTicker(pingTick)
	defer tk.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		hb := time.Duration(f.hb.Load())
		if hb <= 0 {
			hb = defaultHeartbeat
		}
		// Ping a little faster than required, so a late tick never costs a
		// connection.
		slots := max(int((hb*3/4)/pingTick), 1)
		f.mu.Lock()
		cs := f.clients
		f.mu.Unlock()
		for i := tick % slots; i < len(cs); i += slots {
			if c := cs[i]; !c.closed.Load() {
				if err := c.ping(); err != nil {
					f.pingFails.Add(1)
				}
			}
		}
	}
}

// closeAll resets every connection and waits for the readers.
func (f *fleet) closeAll() {
	f.mu.Lock()
	cs := f.clients
	f.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
	f.readers.Wait()
}

// live counts connections not lost so far.
func (f *fleet) live() int {
	f.mu.Lock()
	cs := f.clients
	f.mu.Unlock()
	n := 0
	for _, c := range cs {
		if !c.closed.Load() {
			n++
		}
	}
	return n
}
