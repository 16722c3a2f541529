package main

import (
	"sync"
	"time"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// bcastHistIDs bounds the broadcasts a generator keeps a latency
// histogram for: the bench's single broadcast comes first, the stream's
// need only counts and first/last times.
const bcastHistIDs = 4

// BroadcastSeen is what one generator saw of one broadcast: how many of
// its connections got it and when (Unix ns, one clock on one box), and for
// the first bcastHistIDs broadcasts an HDR histogram of receive time minus
// the broadcast's created_ms.
type BroadcastSeen struct {
	ID        uint64 `json:"id"`
	Count     int64  `json:"count"`
	FirstNs   int64  `json:"first_ns"`
	LastNs    int64  `json:"last_ns"`
	CreatedMs int64  `json:"created_ms"`
	Hist      []byte `json:"hist,omitempty"`
}

// bcastRecorder records broadcast pushes (broadcast_seq > 0) a fleet reads.
type bcastRecorder struct {
	mu   sync.Mutex
	byID map[uint64]*bcastAgg
}

type bcastAgg struct {
	seen BroadcastSeen
	h    *hist
}

func newBcastRecorder() *bcastRecorder { return &bcastRecorder{byID: map[uint64]*bcastAgg{}} }

func (r *bcastRecorder) onPush(p *clientpb.Push) {
	if p.GetBroadcastSeq() == 0 {
		return
	}
	now := time.Now()
	ns := now.UnixNano()
	r.mu.Lock()
	a := r.byID[p.GetId()]
	if a == nil {
		a = &bcastAgg{seen: BroadcastSeen{ID: p.GetId(), FirstNs: ns, CreatedMs: p.GetCreatedMs()}}
		if len(r.byID) < bcastHistIDs {
			a.h = newHist()
		}
		r.byID[p.GetId()] = a
	}
	a.seen.Count++
	a.seen.LastNs = max(a.seen.LastNs, ns)
	a.seen.FirstNs = min(a.seen.FirstNs, ns)
	h := a.h
	r.mu.Unlock()
	if h != nil {
		h.Record(now.Sub(time.UnixMilli(p.GetCreatedMs())))
	}
}

// result lists what was seen, histograms encoded.
func (r *bcastRecorder) result() []BroadcastSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]BroadcastSeen, 0, len(r.byID))
	for _, a := range r.byID {
		s := a.seen
		if a.h != nil {
			s.Hist, _ = a.h.Encode()
		}
		out = append(out, s)
	}
	return out
}

// bcastTotal is one broadcast merged over generators.
type bcastTotal struct {
	Count        int64
	FirstNs      int64
	LastNs       int64
	CreatedMs    int64
	SinceCreated *hist
}

// mergeBroadcasts merges the generators' views by broadcast id.
func mergeBroadcasts(into map[uint64]*bcastTotal, seen []BroadcastSeen) {
	for _, s := range seen {
		t := into[s.ID]
		if t == nil {
			t = &bcastTotal{FirstNs: s.FirstNs, CreatedMs: s.CreatedMs, SinceCreated: newHist()}
			into[s.ID] = t
		}
		t.Count += s.Count
		t.FirstNs = min(t.FirstNs, s.FirstNs)
		t.LastNs = max(t.LastNs, s.LastNs)
		if h, err := decodeHist(s.Hist); err == nil && len(s.Hist) > 0 {
			t.SinceCreated.Merge(h)
		}
	}
}
