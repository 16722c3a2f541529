package main

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// CatchUpBatch: a room's logins of one flush window catch up in one call.
// In a connect burst most logins of an app report the same last seq (the
// app's newest), so requests of one app with the same after_seq share one
// MySQL read; each login's answer is filtered from it in memory and is
// exactly what CatchUp would answer (see exact below).
const (
	// maxCatchUpBatch is the most requests in one call (a room sends at
	// most its batch size, 500).
	maxCatchUpBatch = 1000
	// catchUpBatchParallel bounds the reads of one call running at once:
	// user tag reads, shared reads and the per-login reads that follow.
	catchUpBatchParallel = 8
	// catchUpSharedLimit is the rows of one shared read. More than one
	// login's limit, so tag broadcasts of other logins' tags rarely push
	// a login's own ones out (which costs that login a read of its own).
	catchUpSharedLimit = 2 * catchUpMaxLimit
	// catchUpSharedMaxTags bounds the tag list of a shared read (the
	// union of its logins' tags); past it the read takes every tag.
	catchUpSharedMaxTags = 512
	// catchUpBatchReplyBytes is the reply size after which logins needing
	// broadcasts not yet in it are answered deferred (ask again): a reply
	// must stay under gRPC's 16 MiB receive limit.
	catchUpBatchReplyBytes = 4 << 20
)

// Answers counted by pushgw_saver_catch_up_batch_logins_total.
const (
	catchUpShared   = "shared"   // filtered from a read shared by its group
	catchUpOwn      = "own"      // the shared read was cut short for it: own read
	catchUpDeferred = "deferred" // reply full: asked to come again
	catchUpFailed   = "failed"
)

// catchUpWant is one request of a batch, validated, with its user's tags
// once they were needed (tagsRead).
type catchUpWant struct {
	limit    int
	tags     []string
	tagsRead bool
	err      error
	list     []*internalpb.Broadcast // the answer, ascending seq
}

type catchUpGroupKey struct {
	app   string
	after uint64
}

// CatchUpBatch answers many CatchUp requests at once: see saver.proto.
func (s *server) CatchUpBatch(ctx context.Context, req *internalpb.CatchUpBatchRequest) (*internalpb.CatchUpBatchReply, error) {
	reqs := req.GetRequests()
	if len(reqs) > maxCatchUpBatch {
		return nil, invalid("%d requests, at most %d per batch", len(reqs), maxCatchUpBatch)
	}
	rep := &internalpb.CatchUpBatchReply{Entries: make([]*internalpb.CatchUpBatchEntry, len(reqs))}
	if len(reqs) == 0 {
		return rep, nil
	}
	now := time.Now()
	wants := make([]catchUpWant, len(reqs))
	// Validation as CatchUp does it: a bad request fails alone. The
	// user's tags are read later, only for logins that may get a tag
	// broadcast (catchUpGroup).
	for i, r := range reqs {
		w := &wants[i]
		if r.GetApp() == "" || len(r.GetApp()) > maxAppLen {
			w.err = invalid("app must be 1..%d bytes", maxAppLen)
			continue
		}
		if r.GetUser() != "" && s.tags != nil {
			if err := checkUser(r.GetApp(), r.GetUser()); err != nil {
				w.err = invalid("%v", err)
				continue
			}
		}
		w.limit = int(r.GetLimit())
		if w.limit == 0 || w.limit > catchUpMaxLimit {
			w.limit = catchUpMaxLimit
		}
	}
	groups := map[catchUpGroupKey][]int{}
	var keys []catchUpGroupKey
	for i, r := range reqs {
		if wants[i].err != nil {
			continue
		}
		k := catchUpGroupKey{r.GetApp(), r.GetAfterSeq()}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	var (
		mu  sync.Mutex
		own []int // logins the shared read was cut short for
	)
	parallel(len(keys), catchUpBatchParallel, func(g int) {
		k := keys[g]
		idx := groups[k]
		cut := s.catchUpGroup(ctx, k, idx, reqs, wants, now)
		mu.Lock()
		own = append(own, cut...)
		mu.Unlock()
	})
	parallel(len(own), catchUpBatchParallel, func(j int) {
		i := own[j]
		r, w := reqs[i], &wants[i]
		if s.readTags(ctx, r, w); w.err != nil {
			return
		}
		w.list, w.err = s.db.catchUp(ctx, r.GetApp(), r.GetAfterSeq(), w.limit, r.GetOnlineSinceMs(), w.tags, now)
		if w.err != nil {
			w.err = s.fail(ctx, "catch_up_batch", w.err)
		}
	})
	s.fillCatchUpReply(rep, wants)
	return rep, nil
}

// catchUpGroup makes the read shared by the requests idx (one app, one
// after_seq) and answers each from it; it returns those it could not
// answer exactly, which need a read of their own.
//
// The first read takes every broadcast after the group's seq, whatever its
// tag. Most logins catch up on nothing or on app-wide broadcasts only: when
// that read holds no tag broadcast, no login's tags matter and none is
// read (each costs a Redis and, for a user not cached, a MySQL read: most
// of saver's CPU per login in a connect burst). When it holds some, the
// logins' tags are read; if the read was also cut by its limit, tag
// broadcasts of tags none of these logins hold may have filled it, so it
// is made again with only their tags (the union).
//
// exact: the shared read takes every broadcast any of them may get (every
// tag, or the union of their tags; the earliest online_since) newest
// first. When it was not cut by its limit it holds all of each login's
// broadcasts; when it was, it still holds a login's newest ones as long as
// it holds at least that login's limit of them, since a login's broadcasts
// are a subset of the read's and the cut keeps the newest.
func (s *server) catchUpGroup(ctx context.Context, k catchUpGroupKey, idx []int, reqs []*internalpb.CatchUpRequest, wants []catchUpWant, now time.Time) (cut []int) {
	since := reqs[idx[0]].GetOnlineSinceMs()
	for _, i := range idx {
		since = min(since, reqs[i].GetOnlineSinceMs())
	}
	failAll := func(err error) []int {
		err = s.fail(ctx, "catch_up_batch", err)
		for _, i := range idx {
			wants[i].err = err
		}
		return nil
	}
	shared, err := s.db.broadcastsAfter(ctx, k.app, k.after, catchUpSharedLimit, since, nil, true, now)
	s.metrics.catchUpReads.Inc()
	if err != nil {
		return failAll(err)
	}
	full := len(shared) >= catchUpSharedLimit
	if hasTagBroadcast(shared) {
		parallel(len(idx), catchUpBatchParallel, func(j int) {
			s.readTags(ctx, reqs[idx[j]], &wants[idx[j]])
		})
		if full {
			union := map[string]bool{}
			var tags []string
			for _, i := range idx {
				for _, t := range wants[i].tags {
					if !union[t] {
						union[t] = true
						tags = append(tags, t)
					}
				}
			}
			if len(tags) <= catchUpSharedMaxTags {
				shared, err = s.db.broadcastsAfter(ctx, k.app, k.after, catchUpSharedLimit, since, tags, false, now)
				s.metrics.catchUpReads.Inc()
				if err != nil {
					return failAll(err)
				}
				full = len(shared) >= catchUpSharedLimit
			}
		}
	}
	// broadcastsAfter answers newest first reversed: ascending.
	for _, i := range idx {
		w := &wants[i]
		if w.err != nil { // its tags could not be read
			continue
		}
		list := filterCatchUp(shared, w.tags, reqs[i].GetOnlineSinceMs())
		if full && len(list) < w.limit {
			cut = append(cut, i)
			s.metrics.catchUpBatch.WithLabelValues(catchUpOwn).Inc()
			continue
		}
		w.list = list[max(0, len(list)-w.limit):]
		s.metrics.catchUpBatch.WithLabelValues(catchUpShared).Inc()
	}
	return cut
}

// readTags reads r's user's tags into w once (w.err on failure).
func (s *server) readTags(ctx context.Context, r *internalpb.CatchUpRequest, w *catchUpWant) {
	if w.tagsRead {
		return
	}
	w.tagsRead = true
	w.tags, w.err = s.catchUpTags(ctx, r.GetApp(), r.GetUser())
}

// hasTagBroadcast reports whether any of list is addressed to a tag.
func hasTagBroadcast(list []*internalpb.Broadcast) bool {
	for _, b := range list {
		if b.GetTag() != "" {
			return true
		}
	}
	return false
}

// filterCatchUp keeps the broadcasts of shared (ascending) one login gets:
// app-wide ones and those of its tags, online_only ones only if created
// at or after since. The same conditions as catchUp's SQL.
func filterCatchUp(shared []*internalpb.Broadcast, tags []string, since int64) []*internalpb.Broadcast {
	out := make([]*internalpb.Broadcast, 0, len(shared))
	for _, b := range shared {
		if b.GetTag() != "" && !containsString(tags, b.GetTag()) {
			continue
		}
		if b.GetOnlineOnly() && b.GetCreatedMs() < since {
			continue
		}
		out = append(out, b)
	}
	return out
}

func containsString(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// fillCatchUpReply writes each answer into rep, every broadcast once,
// until the reply holds catchUpBatchReplyBytes; answers needing more are
// deferred.
func (s *server) fillCatchUpReply(rep *internalpb.CatchUpBatchReply, wants []catchUpWant) {
	at := map[uint64]uint32{} // broadcast id -> index in rep.Broadcasts
	bytes := 0
	for i := range wants {
		w := &wants[i]
		if w.err != nil {
			rep.Entries[i] = &internalpb.CatchUpBatchEntry{Failed: true, Error: status.Convert(w.err).Message()}
			s.metrics.catchUpBatch.WithLabelValues(catchUpFailed).Inc()
			continue
		}
		grow := 0
		for _, b := range w.list {
			if _, ok := at[b.GetId()]; !ok {
				grow += proto.Size(b)
			}
		}
		if grow > 0 && bytes > 0 && bytes+grow > catchUpBatchReplyBytes {
			rep.Entries[i] = &internalpb.CatchUpBatchEntry{Failed: true, Deferred: true, Error: "batch reply full; ask again"}
			s.metrics.catchUpBatch.WithLabelValues(catchUpDeferred).Inc()
			continue
		}
		bytes += grow
		e := &internalpb.CatchUpBatchEntry{Broadcasts: make([]uint32, len(w.list))}
		for j, b := range w.list {
			n, ok := at[b.GetId()]
			if !ok {
				n = uint32(len(rep.Broadcasts))
				at[b.GetId()] = n
				rep.Broadcasts = append(rep.Broadcasts, b)
			}
			e.Broadcasts[j] = n
		}
		rep.Entries[i] = e
	}
}

// parallel runs f(0..n-1), at most width at once, and waits for them.
func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// addCatchUpMetrics registers the CatchUpBatch metrics.
func (m *metrics) addCatchUpMetrics(reg prometheus.Registerer) {
	m.catchUpBatch = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_saver_catch_up_batch_logins_total",
		Help: "Logins asked through CatchUpBatch, by answer (shared: from their group's shared read; own: a read of their own; deferred; failed).",
	}, []string{"answer"})
	m.catchUpReads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_saver_catch_up_batch_shared_reads_total",
		Help: "MySQL reads CatchUpBatch shared among the logins of one app with the same after_seq (one per group per call).",
	})
	reg.MustRegister(m.catchUpBatch, m.catchUpReads)
}
