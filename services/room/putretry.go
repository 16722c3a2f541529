package main

import (
	"context"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Logins whose register put failed (register killed, restarting, or its
// Redis down) are invisible to center until a put lands: every message
// stored meanwhile waits in saver. They used to be tried again after 1, 2,
// 4, 8 and 16 s, so a register back after 5 s could leave a login unseen
// for 15 s more (the fault suite's register + room kill pair: clients that
// moved waited 28 s). Now one loop tries every such session again each
// putRetryInterval while its connection lives, and a put that lands pulls
// what was stored meanwhile.
const (
	// putRetryInterval paces the second chances: one Register.Refresh per
	// refreshBatch sessions each interval while register is down, which
	// costs nothing next to the messages waiting on it.
	putRetryInterval = 500 * time.Millisecond
	// maxUnplaced bounds the sessions waiting for a put; beyond it they
	// wait for the periodic -session-refresh instead.
	maxUnplaced = 1 << 17
)

// putRetrier holds the sessions whose put failed, by connection id.
type putRetrier struct {
	ss *sessionSync

	mu sync.Mutex
	m  map[uint64]*internalpb.Session

	stop chan struct{}
	done chan struct{}
}

func newPutRetrier(ss *sessionSync) *putRetrier {
	p := &putRetrier{ss: ss, m: map[uint64]*internalpb.Session{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// add queues sessions whose put failed; it never blocks.
func (p *putRetrier) add(sessions []*internalpb.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range sessions {
		if len(p.m) >= maxUnplaced {
			p.ss.r.m.batchDropped.WithLabelValues("register_retry").Inc()
			continue
		}
		p.m[s.GetConnId()] = s
	}
}

// len is the number of sessions waiting for a put.
func (p *putRetrier) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

func (p *putRetrier) run() {
	defer close(p.done)
	t := time.NewTicker(putRetryInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.round()
		}
	}
}

// round refreshes the waiting sessions still open here, a batch at a
// time, and stops at the first failure (register still down: one failed
// call per round). Those register answered for leave the set (the missing
// ones are put again, and a put that fails once more comes back through
// add).
func (p *putRetrier) round() {
	p.mu.Lock()
	if len(p.m) == 0 {
		p.mu.Unlock()
		return
	}
	live := make([]*internalpb.Session, 0, len(p.m))
	for id, reg := range p.m {
		if s, ok := p.ss.r.hub.Get(id); !ok || !s.holds(reg) {
			delete(p.m, id) // closed: its delete is queued, it must not come back
			continue
		}
		live = append(live, reg)
	}
	p.mu.Unlock()
	for len(live) > 0 {
		batch := live[:min(len(live), refreshBatch)]
		live = live[len(batch):]
		if p.put(batch) != nil {
			return
		}
		p.mu.Lock()
		for _, reg := range batch {
			if p.m[reg.GetConnId()] == reg {
				delete(p.m, reg.GetConnId())
			}
		}
		p.mu.Unlock()
		// While register did not know them, center found nobody to push
		// to: pull what was stored meanwhile.
		// One closed since the check above may have had its delete land
		// before this put: delete it again (register deletes only the
		// entry this connection owns).
		for _, reg := range batch {
			if s, ok := p.ss.r.hub.Get(reg.GetConnId()); ok && s.holds(reg) {
				p.ss.r.requestPull(s)
			} else {
				p.ss.Delete(reg)
			}
		}
	}
}

// put puts the sessions again. A put, not a refresh: the device's entry
// at register may still be the one of its previous connection (a room
// killed without deleting it), which a refresh reports as superseded and
// leaves in place until its TTL ends (30 s: the fault suite's register +
// room kill pair waited that long). The connection is open here, so it is
// the device's latest, as the failed put meant to say.
func (p *putRetrier) put(batch []*internalpb.Session) error {
	r := p.ss.r
	ctx, cancel := context.WithTimeout(r.life, grpcconn.DefaultCallTimeout)
	defer cancel()
	if _, err := r.register.Put(ctx, &internalpb.PutSessionsRequest{Sessions: batch}); err != nil {
		r.m.peerErrors.WithLabelValues("Register.Put").Inc()
		r.log.Debug("room: session put retry failed", "sessions", len(batch), "err", err)
		return err
	}
	return nil
}

// close stops the loop; what it held is left to the periodic refresh.
func (p *putRetrier) close() {
	close(p.stop)
	<-p.done
}

// holds reports whether s is the authenticated login a register record
// was built from (a resumed session holds its predecessor's).
func (s *session) holds(reg *internalpb.Session) bool {
	return s.isAuthed() && s.regConnID() == reg.GetConnId() && s.loginMs == reg.GetLoginMs() &&
		s.key.app == reg.GetApp() && s.key.user == reg.GetUser() && s.key.device == reg.GetDevice()
}
