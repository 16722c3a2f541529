package main

import (
	"slices"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// Flash reconnects of a connection that carries bound apps (bind.go,
// resume.go; docs/protocol.md §4.4). The bound apps are parked with the
// connection: each gets a placeholder session of its own, indexed where
// the bound session was (its register connection id and device), with its
// own queue, in-flight window and broadcast bits, so a push to it during
// the gap queues like one to the primary app. The placeholders hang on the
// primary's placeholder (its bound set: no field added to session), count
// as one parked connection against -max-parked, and end with it: a parked
// connection that expires, is kicked or is drained ends each of them as a
// close would (register delete, offline event). A resumed login binds them
// to the new connection and names them in AuthReply.resumed_apps, so the
// client need not BIND them again: no register put, no saver pull.
//
// Only a binding that had answered its BIND and finished its catch-up is
// parked; any other ends with the old connection (the client binds again,
// as it is not in resumed_apps). A hand-over (resume.go: the client came
// back before the room saw its connection close) parks the open
// connection's bindings and claims them at once (handOverBound); a BIND
// its reader is still handling is not replied yet, so it stays behind and
// ends with that connection, and the client binds it again.

// boundResume is a parked bound app claimed by a resume, with what was
// queued for it.
type boundResume struct {
	p      *session
	frames []queuedFrame
}

// parkBound moves the bindings of closing session s to p, its parked
// placeholder, whose connection queue is pc. The caller holds f.mu, so a
// claim or end of p sees p.bound whole.
func (f *flash) parkBound(s, p *session, pc *parkConn) {
	set := s.boundSet()
	if set == nil {
		return
	}
	pset := &bindSet{}
	set.mu.Lock()
	for app, bs := range set.apps {
		pbs := f.parkBoundApp(bs, p, pset, pc)
		if pbs == nil {
			continue // ends with the connection (closeBound)
		}
		if pset.apps == nil {
			pset.apps = make(map[string]*session, len(set.apps))
		}
		pset.apps[app] = pbs
		delete(set.apps, app)
	}
	set.mu.Unlock()
	if pset.apps != nil {
		p.binding.Store(&bindState{bound: pset})
	}
}

// parkBoundApp returns the placeholder of binding bs, put in its place in
// the hub, or nil when bs is not parked.
func (f *flash) parkBoundApp(bs, p *session, pset *bindSet, pc *parkConn) *session {
	r := f.r
	if !bs.has(flagReplied) || bs.has(flagClosed) {
		return nil // its BIND_REPLY never went out: the client binds again
	}
	mu := r.bc.seen.of(bs)
	mu.Lock()
	bseq, bmask := bs.bseq, bs.bmask
	mu.Unlock()
	if bmask&catchingBit != 0 {
		return nil // its catch-up did not finish: the next BIND runs one
	}
	bpc := &parkConn{limit: r.cfg.sendQueue, addr: pc.addr}
	pbs := &session{r: r, c: bpc, id: bs.regConnID(), key: bs.key, platform: bs.platform, loginMs: bs.loginMs,
		bseq: bseq, bmask: bmask}
	pbs.binding.Store(&bindState{bind: &bindLink{primary: p, set: pset}})
	copyParkedPending(&pbs.pending, &bs.pending)
	pbs.set(flagAuthed)
	pbs.set(flagReplied)
	// A full queue ends the whole parked connection, as a slow consumer
	// ends a live one with all its apps. Not on the sender's goroutine:
	// it holds pbs's write lock (sendBound), which the end takes.
	bpc.onClose = func() { go pc.CloseWith(nil) }
	if !r.hub.replace(bs, pbs) {
		return nil // a newer login of that app replaced it meanwhile
	}
	// Nothing more is written for the old binding (its connection is gone).
	link := bs.bindLink()
	link.mu.Lock()
	link.gone = true
	link.mu.Unlock()
	bs.set(flagClosed)
	return pbs
}

// copyParkedPending copies the in-flight state of a dropped session to its
// placeholder, as park does for the primary app.
func copyParkedPending(dst, src *pendingState) {
	src.mu.Lock()
	defer src.mu.Unlock()
	acked, ackGen := src.ackedLocked()
	dst.setAckedLocked(slices.Clone(acked), ackGen)
	dst.cursor = src.cursor
	// Written to the dead connection but not acked, or pulled by a pull
	// still under way: the client may not have them, saver does.
	dst.behind = src.behind || len(src.inflightLocked()) > 0 || src.pulling || src.fails > 0
}

// endParkedBound ends the parked bindings of placeholder p, whose parked
// connection ended (why: expired or ended): each as a closed connection
// ends its bindings, with p's close reason for the offline event.
func (f *flash) endParkedBound(p *session, why string) {
	set := p.boundSet()
	if set == nil {
		return
	}
	for _, pbs := range set.takeAll() {
		pbs.c.CloseWith(nil) // drops its queue; what was queued stays stored
		pbs.setCloseReason(closeReason(p.closeWhy.Load()))
		f.r.dropBound(pbs)
		f.r.multi.m.unbinds.WithLabelValues(why).Inc()
	}
}

// claimBound takes the parked bindings of p, whose queue a resume just
// took, with their queues. A binding whose queue closed in the same
// instant ends as on close.
func (f *flash) claimBound(p *session) []boundResume {
	set := p.boundSet()
	if set == nil {
		return nil
	}
	set.mu.Lock()
	apps := set.apps
	set.apps, set.closed = nil, true
	set.mu.Unlock()
	out := make([]boundResume, 0, len(apps))
	for _, pbs := range apps {
		frames, ok := pbs.c.(*parkConn).take()
		if !ok {
			f.r.dropBound(pbs)
			f.r.multi.m.unbinds.WithLabelValues("ended").Inc()
			continue
		}
		pbs.set(flagClosed)
		out = append(out, boundResume{p: pbs, frames: frames})
	}
	return out
}

// prepareBound builds the bindings of resuming session s from the parked
// ones, before s is marked authenticated (AUTH_REPLY names them: s.bound
// is set first). They are not in the hub yet: adoptBound puts them there
// once AUTH_REPLY is queued, so no PUSH of theirs precedes it.
func (f *flash) prepareBound(s *session, parked []boundResume) []*session {
	if len(parked) == 0 {
		return nil
	}
	r := f.r
	limit := r.cfg.maxInflight()
	set := &bindSet{apps: make(map[string]*session, len(parked))}
	s.binding.Store(&bindState{bound: set})
	out := make([]*session, len(parked))
	for i, b := range parked {
		pbs := b.p
		nbs := &session{r: r, c: s.c, id: r.nextID.Add(1), regID: pbs.regConnID(), key: pbs.key,
			platform: pbs.platform, loginMs: pbs.loginMs}
		nbs.binding.Store(&bindState{bind: &bindLink{primary: s, set: set}})
		resumePending(&nbs.pending, &pbs.pending, b.frames, limit)
		pm := r.bc.seen.of(pbs)
		pm.Lock()
		bseq, bmask := pbs.bseq, pbs.bmask
		pm.Unlock()
		nm := r.bc.seen.of(nbs)
		nm.Lock()
		nbs.bseq, nbs.bmask = bseq, bmask&^catchingBit
		nm.Unlock()
		nbs.set(flagReplied) // bound already: no BIND_REPLY
		nbs.set(flagAuthed)
		set.add(nbs)
		out[i] = nbs
	}
	return out
}

// resumePending gives a resumed session the in-flight state of parked p
// and the ids of what p queued (sent first on resume), as resume does for
// the primary app.
func resumePending(dst, src *pendingState, frames []queuedFrame, limit int) {
	src.mu.Lock()
	defer src.mu.Unlock()
	acked, ackGen := src.ackedLocked()
	dst.setAckedLocked(slices.Clone(acked), ackGen)
	dst.cursor = src.cursor
	dst.behind = src.behind || src.pulling || src.fails > 0
	queued := 0
	for _, qf := range frames {
		if qf.id != 0 && len(dst.inflightLocked()) < limit {
			dst.addInflightLocked(qf.id)
			queued++
		}
	}
	// In the window and not queued: written to a dead connection, or
	// admitted by a push that raced the take. Saver has them.
	if len(src.inflightLocked()) > queued {
		dst.behind = true
	}
}

// adoptBound puts the resumed bindings where their placeholders were,
// sends what was queued for them and pulls what they may lack.
func (f *flash) adoptBound(s *session, nbs []*session, parked []boundResume) {
	r := f.r
	limit := r.cfg.maxInflight()
	for i, bs := range nbs {
		pbs := parked[i].p
		r.hub.adopt(bs, pbs)
		if old := r.hub.Bind(bs); old != nil && old != bs && old != pbs {
			old.kick(protocol.CodeReplaced, "the same device logged in again")
		}
		if bs.has(flagClosed) {
			r.hub.Remove(bs) // the connection closed meanwhile (closeBound)
			continue
		}
		for _, qf := range parked[i].frames {
			if err := s.c.Send(qf.frame); err != nil {
				break // closing already; what was queued is stored
			}
			r.m.frameOut(protocol.OpPush)
		}
		if bs.pending.due(limit) {
			r.requestPull(bs)
		}
	}
}

// takeBindings empties the bound set of cur, an open connection a resume
// is taking over, before its connection is aborted: its close then ends
// none of them, and a BIND its reader is still handling finds the set
// closed (the client binds that one again).
func takeBindings(cur *session) map[string]*session {
	set := cur.boundSet()
	if set == nil {
		return nil
	}
	return set.takeAll()
}

// handOverBound moves the bindings taken from cur (takeBindings), whose
// connection is aborted by now and whose hub entries are snap's, to the
// resuming login: each is parked on a placeholder queue and all are
// claimed in one go, so a push that reaches one in between is queued and
// sent after the resume, as for a parked connection. A binding that cannot
// move (no BIND_REPLY yet, catch-up unfinished) ends as on close.
func (f *flash) handOverBound(cur, snap *session, apps map[string]*session) []boundResume {
	if len(apps) == 0 {
		return nil
	}
	r := f.r
	// Nothing ends the placeholder connection but a bound queue filling
	// up in this instant: that binding is then dropped by the claim.
	pc := &parkConn{limit: r.cfg.sendQueue, addr: cur.c.RemoteAddr(), onClose: func() {}}
	pset := &bindSet{apps: make(map[string]*session, len(apps))}
	for app, bs := range apps {
		if pbs := f.parkBoundApp(bs, snap, pset, pc); pbs != nil {
			pset.apps[app] = pbs
			continue
		}
		bs.setCloseReason(closeReason(cur.closeWhy.Load()))
		r.dropBound(bs)
		r.multi.m.unbinds.WithLabelValues("closed").Inc()
	}
	snap.binding.Store(&bindState{bound: pset})
	return f.claimBound(snap)
}

// names returns the apps of b (nil when none).
func (b *bindSet) names() []string {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.apps) == 0 {
		return nil
	}
	out := make([]string, 0, len(b.apps))
	for app := range b.apps {
		out = append(out, app)
	}
	return out
}

// resumedApps are the bindings AUTH_REPLY names on a resumed login (set
// by prepareBound before authed); nil on a full login.
func (s *session) resumedApps() []string {
	if !s.resumed {
		return nil
	}
	return s.boundSet().names()
}
