package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/pkg/pushclient"
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

// unicast: QoS 1 pushes through center to -users connected users on one
// fresh room, once per transport (-transports: HTTP one push per request,
// gRPC PushStream), at a rising offered rate until a step's end-to-end
// p99 exceeds -p99-limit (or the sender saturates or messages go
// missing); the sustainable rate is the last step within the limits.
func (b *bench) unicast(i int, engine, flagVal string) error {
	tps, _ := parseTransports(b.f.transports)
	for j, tp := range tps {
		if b.ctx.Err() != nil {
			break
		}
		if err := b.unicastRun(i*len(unicastTransports())+j, engine, flagVal, tp); err != nil {
			return fmt.Errorf("transport %s: %w", tp, err)
		}
	}
	return nil
}

// unicastRun is one ladder: one engine, one transport, a fresh room and
// fresh users.
func (b *bench) unicastRun(roomIdx int, engine, flagVal, transport string) error {
	r := b.newResult(engine)
	r.Transport, r.Rooms, r.Requested, r.GeneratorProcs = transport, 1, b.f.users, 1
	room, err := b.cl.startRoom(roomIdx, flagVal)
	if err != nil {
		return err
	}
	defer b.cl.stopRoom(room.Name)
	pr := roomProbe(room)

	var cur atomic.Pointer[tracker]
	fl := &fleet{d: &dialer{app: benchApp, secret: []byte(b.cl.Secret), timeout: b.f.connectTO},
		addrs: []string{room.TCP}, ackDelay: b.f.ackDelay, onPush: func(p *clientpb.Push) {
			if t := cur.Load(); t != nil {
				t.onPush(p)
			}
		}, onAcked: func(p *clientpb.Push, at time.Time) {
			if t := cur.Load(); t != nil {
				t.onAcked(p, at)
			}
		}}
	stopPing := make(chan struct{})
	go fl.pinger(stopPing)
	defer func() { close(stopPing); fl.closeAll() }()
	// Users are fresh per run, so no session or inbox of an earlier room
	// is involved.
	prefix := engine + "-" + transport + "-unicast-"
	if err := b.connectInProcess(fl, prefix, b.f.users, fmt.Sprintf("unicast %s %s: connect", engine, transport)); err != nil {
		return err
	}
	b.p.sleep(warmupSessions)

	var tp unicastTransport
	if b.f.ackDelay > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("clients ack %v after each PUSH (-ack-delay)", b.f.ackDelay))
	}
	switch transport {
	case transportHTTP:
		httpc := &http.Client{Timeout: httpTimeout, Transport: &http.Transport{
			MaxIdleConns: unicastHTTPConc, MaxIdleConnsPerHost: unicastHTTPConc, IdleConnTimeout: time.Minute}}
		defer httpc.CloseIdleConnections()
		r.Notes = append(r.Notes, "generator HTTP client: "+b.f.httpClient)
		tp = func(pf *pushFlags, tr *tracker) unicastSender {
			pf.httpConc, pf.httpClient = unicastHTTPConc, b.f.httpClient
			return &sender{f: pf, center: b.cl.CenterURL, tr: tr, status: &counts{}, http: httpc, stop: b.ctx.Done()}
		}
	case transportGRPC:
		cli, err := pushclient.Dial(b.cl.CenterGRPC, b.cl.APIKey)
		if err != nil {
			return err
		}
		defer cli.Close()
		tp = func(pf *pushFlags, tr *tracker) unicastSender {
			return &streamSender{f: pf, cli: cli, streams: b.f.grpcStreams, tr: tr, stop: b.ctx.Done()}
		}
	default:
		return fmt.Errorf("unknown transport %q", transport)
	}

	l := b.f.ladder()
	var profs []map[string][]byte
	for _, rate := range l.rates() {
		if b.ctx.Err() != nil || !b.cl.Alive(room.Name) {
			break
		}
		st, prof, err := b.unicastStep(pr, room, &cur, tp, prefix, rate)
		if err != nil {
			return err
		}
		r.Steps = append(r.Steps, st)
		profs = append(profs, prof)
		r.Errors += st.Errors
		for k, v := range st.Outcomes {
			if k != "200" && k != "OK" {
				r.ErrorKinds["push_"+k] += int64(v)
			}
		}
		reason := l.stopReason(st)
		stalls := ""
		if n := st.ServiceHistograms["saver_commit_ms"].Slow; n > 0 {
			stalls = fmt.Sprintf(", %.0f commits over 256 ms", n)
		}
		b.p.logf("unicast %s %s: offered %.0f/s: sent %.0f/s, delivered %.0f/s, p99 %.2f ms (accepted %.2f, stored %.2f, acked %.2f%s), room %.1f µs/push, missing %d %s",
			engine, transport, rate, st.Achieved, st.DeliveriesPerS, st.LatencyMS.P99, st.HopsMS["accepted"].P99,
			st.HopsMS["stored"].P99, st.HopsMS["acked"].P99, stalls, st.RoomCPUMicros, st.Missing, reason)
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
		r.HopsMS, r.ServiceHistograms, r.CPUSeconds, r.CPUMicrosPerPush = st.HopsMS, st.ServiceHistograms, st.CPUSeconds, st.CPUMicrosPerPush
		for _, proc := range []string{"room", "center", "saver"} {
			kind := "cpu"
			if proc != "room" {
				kind = proc + "-cpu"
			}
			b.saveProfile(r, kind, profs[head][proc])
		}
	}
	for _, st := range r.Steps {
		r.Missing += st.Missing
	}
	r.Conns = fl.live()
	if r.SustainableRate == 0 && len(r.Steps) > 0 {
		r.Notes = append(r.Notes, "no step met the limits: sustainable_rate is 0 and the headline figures are the first step's")
	}
	if mariadbPID() > 0 {
		r.Notes = append(r.Notes, "cpu_seconds.mariadb is the whole MariaDB server, shared with anything else using it during the run")
	}
	drops := fl.drops.Snapshot()
	for k, v := range drops {
		r.ErrorKinds["dropped_"+k] += int64(v)
		r.Errors += int64(v)
	}
	b.keep(r)
	return nil
}

// unicastTransport makes the sender of one step.
type unicastTransport func(pf *pushFlags, tr *tracker) unicastSender

// parseTransports reads -transports.
func parseTransports(list string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !contains(unicastTransports(), t) {
			return nil, fmt.Errorf("bench: -transports: unknown transport %q (want %s)", t, strings.Join(unicastTransports(), ", "))
		}
		if !contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("bench: -transports: name at least one transport")
	}
	return out, nil
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

// unicastStep offers rate for one step and waits for its deliveries and
// for saver to record their ACKs. It returns the step and the CPU
// profiles of room, center and saver taken during it.
func (b *bench) unicastStep(pr *probe, room *roomInfo, cur *atomic.Pointer[tracker],
	tp unicastTransport, prefix string, rate float64) (RateStep, map[string][]byte, error) {
	id := make([]byte, runIDBytes)
	_, _ = rand.Read(id)
	tr := &tracker{runID: hex.EncodeToString(id), seen: map[uint64]struct{}{}}
	cur.Store(tr)
	pf := &pushFlags{commonFlags: commonFlags{app: benchApp, userPrefix: prefix}, apiKey: b.cl.APIKey,
		users: b.f.users, rate: rate, duration: b.f.step, qos: 1, ttl: unicastTTL, size: unicastPayload, batch: 1}
	s := tp(pf, tr)
	svc := map[string]*probe{"center": {admin: b.cl.CenterAdmin, http: &http.Client{Timeout: scrapeTimeout}},
		"saver": {admin: b.cl.SaverAdmin, http: &http.Client{Timeout: scrapeTimeout}}}
	before, err := pr.Sample()
	if err != nil {
		return RateStep{}, nil, err
	}
	m0, err := scrapeAll(svc)
	if err != nil {
		return RateStep{}, nil, err
	}
	pids := b.unicastPIDs(room)
	cpu0 := cpuOf(pids)
	gcOff := logOffset(room.GCLog)
	profWait := map[string]func() []byte{}
	if b.f.step > cpuProfileSeconds*time.Second {
		profWait["room"] = b.cpuProfile(pr)
		for name, p := range svc {
			profWait[name] = b.cpuProfile(p)
		}
	}
	sendDone := make(chan struct{})
	start := time.Now()
	go func() { s.run(); close(sendDone) }()
	b.p.wait(b.f.step, fmt.Sprintf("unicast %.0f/s", rate))
	<-sendDone
	sendSecs := time.Since(start).Seconds()
	drainUntil := time.Now().Add(b.f.drain)
	for tr.progress.Load() < s.acceptedN() && time.Now().Before(drainUntil) && b.p.sleep(50*time.Millisecond) {
	}
	tr.mu.Lock()
	delivered, last := int64(len(tr.seen)), tr.last
	tr.mu.Unlock()
	// The ACKs trail the deliveries by the room's report batching and
	// saver's Report; wait (within -drain) until saver counted them.
	acked := func(m map[string]float64) float64 { return m[`pushgw_saver_outcomes_total{outcome="acked"}`] }
	var saverAcked int64
	for {
		m, err := svc["saver"].scrape()
		if err == nil {
			saverAcked = int64(acked(m) - acked(m0["saver"]))
		}
		if saverAcked >= delivered || !time.Now().Before(drainUntil) || !b.p.sleep(50*time.Millisecond) {
			break
		}
	}
	after, err := pr.Sample()
	if err != nil {
		return RateStep{}, nil, err
	}
	cpu1 := cpuOf(pids)
	m1, err := scrapeAll(svc)
	if err != nil {
		return RateStep{}, nil, err
	}
	pauses, err := gcPauses(room.GCLog, gcOff)
	if err != nil {
		return RateStep{}, nil, err
	}
	profs := map[string][]byte{}
	for name, wait := range profWait {
		profs[name] = wait()
	}
	st := RateStep{Offered: rate, Accepted: s.acceptedN(), Delivered: delivered,
		LatencyMS: tr.lat.h.Summary(), GCPauseMS: pauses.gcSummary(), SaverAcked: saverAcked, Outcomes: s.outcomes(),
		HopsMS: map[string]LatencyMS{"accepted": tr.accepted.h.Summary(), "stored": s.answers(),
			"delivered": tr.lat.h.Summary(), "acked": tr.acked.h.Summary()},
		ServiceHistograms: map[string]HistFig{}, CPUSeconds: map[string]float64{}, CPUMicrosPerPush: map[string]float64{}}
	st.Achieved = float64(s.sent()) / sendSecs
	if !last.IsZero() {
		st.DeliveriesPerS = float64(delivered) / last.Sub(start).Seconds()
	}
	st.Missing = max(st.Accepted-st.Delivered, 0)
	st.Errors = s.sent() - s.acceptedN()
	if delivered > 0 {
		st.RoomCPUMicros = (after.CPUSeconds - before.CPUSeconds) / float64(delivered) * 1e6
	}
	for name, v := range cpu1 {
		if v0, ok := cpu0[name]; ok {
			st.CPUSeconds[name] = v - v0
			if delivered > 0 {
				st.CPUMicrosPerPush[name] = (v - v0) / float64(delivered) * 1e6
			}
		}
	}
	for _, h := range unicastHists() {
		if fig, ok := histDelta(m0[h.proc], m1[h.proc], h.metric, h.match, h.scale); ok {
			st.ServiceHistograms[h.key] = fig
		}
	}
	return st, profs, nil
}

// unicastPIDs names the processes whose CPU a unicast step reports: the
// cluster's (this run's room as "room"), this generator and MariaDB.
func (b *bench) unicastPIDs(room *roomInfo) map[string]int {
	pids := map[string]int{}
	for name, pid := range b.cl.LivePIDs() {
		if name == room.Name {
			name = "room"
		} else if strings.HasPrefix(name, "room-") {
			continue
		}
		pids[name] = pid
	}
	pids["pushload"] = os.Getpid()
	if pid := mariadbPID(); pid > 0 {
		pids["mariadb"] = pid
	}
	return pids
}

// scrapeAll reads /metrics of each probe.
func scrapeAll(ps map[string]*probe) (map[string]map[string]float64, error) {
	out := map[string]map[string]float64{}
	for name, p := range ps {
		m, err := p.scrape()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = m
	}
	return out, nil
}
