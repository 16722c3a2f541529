package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// Fixed shape of the unicast pushes.
const (
	unicastPayload  = 64
	unicastTTL      = 600
	unicastHTTPConc = 256
	// warmupSessions lets register hold every session before the first push.
	warmupSessions = 2 * time.Second
)

// unicast: QoS 1 pushes through center's HTTP API to -users connected
// users on one fresh room, at a rising offered rate until a step's
// end-to-end p99 exceeds -p99-limit (or the sender saturates or messages
// go missing); the sustainable rate is the last step within the limits.
func (b *bench) unicast(i int, engine, flagVal string) error {
	r := b.newResult(engine)
	r.Transport, r.Rooms, r.Requested, r.GeneratorProcs = "http", 1, b.f.users, 1
	room, err := b.cl.startRoom(i, flagVal)
	if err != nil {
		return err
	}
	defer b.cl.stopRoom(room.Name)
	pr := roomProbe(room)

	var cur atomic.Pointer[tracker]
	fl := &fleet{d: &dialer{app: benchApp, secret: []byte(b.cl.Secret), timeout: b.f.connectTO},
		addrs: []string{room.TCP}, onPush: func(p *clientpb.Push) {
			if t := cur.Load(); t != nil {
				t.onPush(p)
			}
		}}
	stopPing := make(chan struct{})
	go fl.pinger(stopPing)
	defer func() { close(stopPing); fl.closeAll() }()
	prefix := engine + "-unicast-"
	if err := b.connectInProcess(fl, prefix, b.f.users, fmt.Sprintf("unicast %s: connect", engine)); err != nil {
		return err
	}
	b.p.sleep(warmupSessions)

	l := b.f.ladder()
	httpc := &http.Client{Timeout: httpTimeout, Transport: &http.Transport{
		MaxIdleConns: unicastHTTPConc, MaxIdleConnsPerHost: unicastHTTPConc, IdleConnTimeout: time.Minute}}
	var profs [][]byte
	for _, rate := range l.rates() {
		if b.ctx.Err() != nil || !b.cl.Alive(room.Name) {
			break
		}
		st, prof, err := b.unicastStep(pr, room, fl, &cur, httpc, prefix, rate)
		if err != nil {
			return err
		}
		r.Steps = append(r.Steps, st)
		profs = append(profs, prof)
		r.Errors += st.Errors
		reason := l.stopReason(st)
		b.p.logf("unicast %s: offered %.0f/s: sent %.0f/s, delivered %.0f/s, p99 %.2f ms, missing %d %s",
			engine, rate, st.Achieved, st.DeliveriesPerS, st.LatencyMS.P99, st.Missing, reason)
		if reason != "" {
			r.Notes = append(r.Notes, fmt.Sprintf("ladder stopped at %.0f/s: %s", rate, reason))
			break
		}
	}
	if !b.cl.Alive(room.Name) {
		r.Notes = append(r.Notes, "the room exited during the run")
		r.RoomRestarted = true
	}
	r.SustainableRate = l.sustainable(r.Steps)
	// Headline figures are those of the sustainable step, or of the first
	// step when none met the limits (said in the notes).
	head := headlineStep(r.Steps, r.SustainableRate)
	if head >= 0 {
		st := r.Steps[head]
		r.DeliveriesPerS, r.LatencyMS, r.GCPauseMS = st.DeliveriesPerS, st.LatencyMS, st.GCPauseMS
		r.RoomCPUMicrosPerDelivery = st.RoomCPUMicros
		b.saveProfile(r, "cpu", profs[head])
	}
	for _, st := range r.Steps {
		r.Missing += st.Missing
	}
	r.Conns = fl.live()
	if r.SustainableRate == 0 && len(r.Steps) > 0 {
		r.Notes = append(r.Notes, "no step met the limits: sustainable_rate is 0 and the headline figures are the first step's")
	}
	drops := fl.drops.Snapshot()
	for k, v := range drops {
		r.ErrorKinds["dropped_"+k] += int64(v)
		r.Errors += int64(v)
	}
	b.keep(r)
	return nil
}

// headlineStep is the index of the step the headline figures come from:
// the sustainable one, else the first; -1 without steps.
func headlineStep(steps []RateStep, sustainable float64) int {
	if len(steps) == 0 {
		return -1
	}
	for i, st := range steps {
		if sustainable > 0 && st.Offered == sustainable {
			return i
		}
	}
	return 0
}

// connectInProcess opens n users from this process behind a bar.
func (b *bench) connectInProcess(fl *fleet, prefix string, n int, desc string) error {
	if err := checkPerProc(n); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fl.connectRange(prefix, 0, n, b.f.conc, time.Now().Add(connectPhaseLimit))
	}()
	bar := b.p.count(n, "conn", desc)
	base := fl.ok.Load() + int64(fl.failures.Total())
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(phaseTick):
		}
		_ = bar.Set64(fl.ok.Load() + int64(fl.failures.Total()) - base)
	}
	b.p.done(bar)
	if got := fl.live(); got < n {
		return fmt.Errorf("only %d of %d users connected (%v)", got, n, fl.failures.Snapshot())
	}
	return nil
}

// unicastStep offers rate for one step and waits for its deliveries.
func (b *bench) unicastStep(pr *probe, room *roomInfo, fl *fleet, cur *atomic.Pointer[tracker],
	httpc *http.Client, prefix string, rate float64) (RateStep, []byte, error) {
	id := make([]byte, runIDBytes)
	_, _ = rand.Read(id)
	tr := &tracker{runID: hex.EncodeToString(id), seen: map[uint64]struct{}{}}
	cur.Store(tr)
	pf := &pushFlags{commonFlags: commonFlags{app: benchApp, userPrefix: prefix}, apiKey: b.cl.APIKey,
		users: b.f.users, rate: rate, duration: b.f.step, qos: 1, ttl: unicastTTL, size: unicastPayload,
		httpConc: unicastHTTPConc, batch: 1}
	s := &sender{f: pf, center: b.cl.CenterURL, tr: tr, status: &counts{}, http: httpc, stop: b.ctx.Done()}
	before, err := pr.Sample()
	if err != nil {
		return RateStep{}, nil, err
	}
	gcOff := logOffset(room.GCLog)
	var prof func() []byte
	if b.f.step > cpuProfileSeconds*time.Second {
		prof = b.cpuProfile(pr)
	}
	sendDone := make(chan struct{})
	start := time.Now()
	go func() { s.run(); close(sendDone) }()
	b.p.wait(b.f.step, fmt.Sprintf("unicast %.0f/s", rate))
	<-sendDone
	sendSecs := time.Since(start).Seconds()
	drainUntil := time.Now().Add(b.f.drain)
	for tr.progress.Load() < s.accepted.Load() && time.Now().Before(drainUntil) && b.p.sleep(50*time.Millisecond) {
	}
	after, err := pr.Sample()
	if err != nil {
		return RateStep{}, nil, err
	}
	pauses, err := gcPauses(room.GCLog, gcOff)
	if err != nil {
		return RateStep{}, nil, err
	}
	var cpu []byte
	if prof != nil {
		cpu = prof()
	}
	tr.mu.Lock()
	delivered, last := int64(len(tr.seen)), tr.last
	tr.mu.Unlock()
	st := RateStep{Offered: rate, Accepted: s.accepted.Load(), Delivered: delivered,
		LatencyMS: tr.lat.h.Summary(), GCPauseMS: pauses.gcSummary()}
	st.Achieved = float64(s.requests.Load()) / sendSecs
	if !last.IsZero() {
		st.DeliveriesPerS = float64(delivered) / last.Sub(start).Seconds()
	}
	st.Missing = max(st.Accepted-st.Delivered, 0)
	st.Errors = s.requests.Load() - s.accepted.Load()
	if delivered > 0 {
		st.RoomCPUMicros = (after.CPUSeconds - before.CPUSeconds) / float64(delivered) * 1e6
	}
	return st, cpu, nil
}
