package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// churnTick is the period of the steady churn's batches.
const churnTick = 100 * time.Millisecond

// churn: -conns connections on one fresh room; all of them reconnect at
// once, then -churn-rate per second reconnect for -churn-duration, while
// QoS 1 pushes go to every user throughout. The room must stay up, every
// accepted message must arrive (QoS 1: at least once), and the room's
// memory must come back to its level before the churn.
func (b *bench) churn(i int, engine, flagVal string) error {
	r := b.newResult(engine)
	r.Rooms, r.Requested, r.GeneratorProcs = 1, b.f.conns, 1
	room, err := b.cl.startRoom(i, flagVal)
	if err != nil {
		return err
	}
	defer b.cl.stopRoom(room.Name)
	pr := roomProbe(room)
	base, _, err := b.quietSample(pr)
	if err != nil {
		return err
	}
	id := make([]byte, runIDBytes)
	_, _ = rand.Read(id)
	tr := &tracker{runID: hex.EncodeToString(id), seen: map[uint64]struct{}{}}
	fl := &fleet{d: &dialer{app: benchApp, secret: []byte(b.cl.Secret), timeout: b.f.connectTO},
		addrs: []string{room.TCP}, onPush: tr.onPush}
	stopPing := make(chan struct{})
	go fl.pinger(stopPing)
	defer func() { close(stopPing); fl.closeAll() }()
	prefix := engine + "-churn-"
	sampler := b.startSampler(pr)
	if err := b.connectInProcess(fl, prefix, b.f.conns, fmt.Sprintf("churn %s: connect", engine)); err != nil {
		sampler.stop()
		return err
	}
	b.p.sleep(warmupSessions)
	heldBefore, _, err := b.quietSample(pr)
	if err != nil {
		sampler.stop()
		return err
	}
	gcOff := logOffset(room.GCLog)

	stopPush := make(chan struct{})
	pf := &pushFlags{commonFlags: commonFlags{app: benchApp, userPrefix: prefix}, apiKey: b.cl.APIKey,
		users: b.f.conns, rate: b.f.churnPushRate, duration: maxDuration, qos: 1, ttl: unicastTTL,
		size: unicastPayload, httpConc: unicastHTTPConc, batch: 1, httpClient: b.f.httpClient}
	s := &sender{f: pf, center: b.cl.CenterURL, tr: tr, status: &counts{}, stop: stopPush,
		http: &http.Client{Timeout: httpTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: unicastHTTPConc}}}
	pushStart := time.Now()
	pushDone := make(chan struct{})
	go func() { s.run(); close(pushDone) }()

	// Everyone at once: reset every connection, then reconnect them all.
	fl.closeAll()
	t0 := time.Now()
	if err := b.connectInProcess(fl, prefix, b.f.conns, fmt.Sprintf("churn %s: all reconnect", engine)); err != nil {
		close(stopPush)
		<-pushDone
		sampler.stop()
		return err
	}
	r.AcceptAuthPerS = float64(b.f.conns) / time.Since(t0).Seconds()
	reconnects := b.steadyChurn(fl, engine)
	close(stopPush)
	<-pushDone
	sendSecs := time.Since(pushStart).Seconds()
	drainUntil := time.Now().Add(b.f.drain)
	for tr.progress.Load() < s.accepted.Load() && time.Now().Before(drainUntil) && b.p.sleep(50*time.Millisecond) {
	}
	heldAfter, heapProf, err := b.quietSample(pr)
	if err != nil {
		sampler.stop()
		return err
	}
	b.saveProfile(r, "heap", heapProf)
	pauses, err := gcPauses(room.GCLog, gcOff)
	if err != nil {
		sampler.stop()
		return err
	}
	live := fl.live()
	fl.closeAll()
	b.p.wait(b.f.settle, fmt.Sprintf("churn %s: after close", engine))
	after, _ := pr.Sample()
	r.Series = sampler.stop()

	tr.mu.Lock()
	r.Duplicates = tr.dups
	delivered := int64(len(tr.seen))
	tr.mu.Unlock()
	r.Conns = live
	r.Missing = max(s.accepted.Load()-delivered, 0)
	r.DeliveriesPerS = float64(delivered) / sendSecs
	r.LatencyMS = tr.lat.h.Summary()
	r.GCPauseMS = pauses.gcSummary()
	n := float64(heldBefore.Connections - base.Connections)
	r.RSSBeforeBytes, r.RSSHeldBytes, r.RSSAfterBytes = base.RSSBytes, heldAfter.RSSBytes, after.RSSBytes
	r.RSSBytesPerConn = perConn(float64(heldBefore.RSSBytes), float64(base.RSSBytes), n)
	r.HeapBytesPerConn = perConn(heldBefore.HeapInuse, base.HeapInuse, n)
	r.Errors = s.requests.Load() - s.accepted.Load()
	if r.Errors > 0 {
		r.ErrorKinds["push_rejected"] = r.Errors
	}
	for k, v := range fl.failures.Snapshot() {
		r.ErrorKinds["connect_"+k] += int64(v)
		r.Errors += int64(v)
	}
	for k, v := range fl.drops.Snapshot() {
		r.ErrorKinds["dropped_"+k] += int64(v)
		r.Errors += int64(v)
	}
	r.RoomRestarted = !b.cl.Alive(room.Name)
	r.Notes = append(r.Notes,
		fmt.Sprintf("%d steady reconnects over %v; %d pushes accepted, %d delivered, %d duplicates (QoS 1 is at least once)",
			reconnects, b.f.churnDuration, s.accepted.Load(), delivered, r.Duplicates),
		fmt.Sprintf("room RSS: %d before connecting, %d held before churn, %d held after churn (%+.1f%%), %d after closing all",
			base.RSSBytes, heldBefore.RSSBytes, heldAfter.RSSBytes,
			100*float64(heldAfter.RSSBytes-heldBefore.RSSBytes)/float64(max(heldBefore.RSSBytes, 1)), after.RSSBytes),
		fmt.Sprintf("room heap in use: %.0f held before churn, %.0f held after churn", heldBefore.HeapInuse, heldAfter.HeapInuse))
	b.keep(r)
	return nil
}

// steadyChurn closes and reopens -churn-rate random connections per
// second for -churn-duration, at most -c reconnects in flight. It returns
// how many it reconnected.
func (b *bench) steadyChurn(fl *fleet, engine string) int64 {
	sem := make(chan struct{}, b.f.conc)
	var wg sync.WaitGroup
	var n, issued int64
	var mu sync.Mutex
	bar := b.p.timed(b.f.churnDuration, fmt.Sprintf("churn %s: steady", engine))
	start := time.Now()
	for time.Since(start) < b.f.churnDuration && b.p.sleep(churnTick) {
		fl.mu.Lock()
		cs := fl.clients
		fl.mu.Unlock()
		// Paced on elapsed time, like the sender, so a slow tick on a busy
		// box does not lower the rate.
		due := int64(time.Since(start).Seconds() * b.f.churnRate)
		for tries := 0; issued < due && tries < 4*len(cs); tries++ {
			c := cs[mrand.IntN(len(cs))]
			if c.closed.Load() {
				continue
			}
			issued++
			c.close()
			select {
			case sem <- struct{}{}:
			case <-b.ctx.Done():
				wg.Wait()
				return n
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				fl.connectOne(nil, fl.addrs[0], c.user, nil)
				mu.Lock()
				n++
				mu.Unlock()
			}()
		}
		_ = bar.Set64(int64(time.Since(start) / time.Millisecond))
	}
	b.p.done(bar)
	wg.Wait()
	return n
}

// sampler records room memory against connections once a second.
type sampler struct {
	done   chan struct{}
	mu     sync.Mutex
	points []ConnPoint
	wg     sync.WaitGroup
}

func (b *bench) startSampler(pr *probe) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tk := time.NewTicker(sampleEvery)
		defer tk.Stop()
		for {
			if smp, err := pr.Sample(); err == nil {
				s.mu.Lock()
				s.points = append(s.points, ConnPoint{Conns: smp.Connections, RSSBytes: smp.RSSBytes, Heap: smp.HeapInuse})
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-tk.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() []ConnPoint {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.points
}
