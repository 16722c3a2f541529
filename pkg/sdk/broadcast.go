package sdk

import (
	"sync"

	"github.com/pushgw/pushgw/pkg/bcseq"
)

// Broadcast seqs are per app. For Config.App and for each bound app the
// client keeps the window the room keeps (pkg/bcseq): the highest seq
// handled and which of the 63 below it were handled too. AUTH and BIND
// report it as (last_broadcast_seq, broadcast_gaps), so a broadcast lost
// while later ones arrived (its room call failed, the client moved rooms)
// is caught up on the next login, not hidden by the high-water mark
// (docs/protocol.md §10.1). Only the seq outlives the process
// (Config.LastBroadcastSeq): the gaps start empty on each New.

// seqWindow is one app's window: top and bcseq's mask.
type seqWindow struct{ top, mask uint64 }

// broadcastSeqs are the windows of Config.App (primary) and of the bound
// apps. A push names its app; one of an app bound with Bind counts in that
// app's window, any other in the primary's. One mutex: a handled broadcast
// takes it once.
type broadcastSeqs struct {
	mu      sync.Mutex
	primary seqWindow
	// bound are the windows of apps bound on this Client, kept after an
	// unbind (a late push of the app, a later Bind) for as long as the
	// Client lives: a handful of apps at most.
	bound map[string]*seqWindow
}

func newBroadcastSeqs(last uint64) *broadcastSeqs {
	return &broadcastSeqs{primary: seqWindow{top: last, mask: bcseq.Full}}
}

// window is app's window; b.mu held.
func (b *broadcastSeqs) window(app string) *seqWindow {
	if w, ok := b.bound[app]; ok {
		return w
	}
	return &b.primary
}

// note records that a broadcast of app with seq was handled.
func (b *broadcastSeqs) note(app string, seq uint64) {
	if seq == 0 {
		return // not a broadcast
	}
	b.mu.Lock()
	w := b.window(app)
	bcseq.Mark(&w.top, &w.mask, seq)
	b.mu.Unlock()
}

// auth is what AUTH reports for Config.App.
func (b *broadcastSeqs) auth() (last, gaps uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.primary.top, bcseq.Gaps(b.primary.top, b.primary.mask)
}

// bind is what BIND of app reports. A first BIND of app starts its
// window, before the BIND goes out: the catch-up may follow at once.
func (b *broadcastSeqs) bind(app string) (last, gaps uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w, ok := b.bound[app]
	if !ok {
		if b.bound == nil {
			b.bound = map[string]*seqWindow{}
		}
		w = &seqWindow{mask: bcseq.Full}
		b.bound[app] = w
	}
	return w.top, bcseq.Gaps(w.top, w.mask)
}

// LastBroadcastSeq is the highest broadcast seq of Config.App handled so
// far (or Config.LastBroadcastSeq). An app that saves it and passes it
// back in Config on its next start is not sent the same broadcasts again.
func (c *Client) LastBroadcastSeq() uint64 {
	last, _ := c.bcast.auth()
	return last
}
