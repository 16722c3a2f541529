package main

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// registerWait bounds how long the cluster mode waits for register to
// hold every session after the last AUTH_REPLY.
const registerWait = time.Minute

// connect: accept+auth rate of -conns connections per engine, in two
// modes, each on a fresh room of the bench cluster. "room": the room is
// dialled directly and the rate ends at the last AUTH_REPLY. "cluster":
// every client first asks the dispatcher for its room, and the rate ends
// when register holds every session. Both run the whole login: AUTH_REPLY
// waits for register's put (docs/protocol.md §4.1). A room without a
// register (the former "room alone", under a cluster name of its own)
// measured that wait's outage bound instead: every put batch failed
// three times with back-off in the one flusher, so each login waited
// ≈160–250 ms whatever the room's speed.
func (b *bench) connect(i int, engine, flagVal string) error {
	reg := &probe{admin: b.cl.RegisterAdmin, http: &http.Client{Timeout: scrapeTimeout}}
	for _, mode := range []string{"room", "cluster"} {
		if b.ctx.Err() != nil {
			return nil
		}
		if err := b.connectMode(i, engine, flagVal, mode, reg); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) connectMode(i int, engine, flagVal, mode string, reg *probe) error {
	room, err := b.cl.startRoom(i, flagVal)
	if err != nil {
		return err
	}
	defer b.cl.stopRoom(room.Name)
	pr := roomProbe(room)
	r := b.newResult(engine)
	r.Mode, r.Rooms, r.Requested = mode, 1, b.f.conns
	spec := genSpec{addrs: []string{room.TCP}, secret: b.cl.Secret, prefix: engine + "-connect-" + mode + "-",
		n: b.f.conns, conc: b.f.conc, connectTO: b.f.connectTO}
	if mode == "cluster" {
		spec.dispatcher = b.cl.DispatcherURL
	}
	before, _, err := b.quietSample(pr)
	if err != nil {
		return err
	}
	puts0, err := registerPuts(reg)
	if err != nil {
		return err
	}
	gcOff := logOffset(room.GCLog)
	pids := b.unicastPIDs(room)
	delete(pids, "pushload") // the generators are children; counted below
	cpu0 := cpuOf(pids)
	var stopProf func() []byte
	if b.f.profiles {
		stopProf = b.cpuProfile(pr)
	}
	g, series, stopped, err := b.connectPhase(spec, fmt.Sprintf("connect %s/%s", engine, mode), []*probe{pr}, nil)
	if err != nil {
		return err
	}
	r.GeneratorProcs, r.Series = len(g.children), series
	if stopped != "" {
		r.Notes = append(r.Notes, "connect phase ended early: "+stopped)
	}
	ok, _ := g.Progress()
	registered := time.Time{}
	if mode == "cluster" {
		registered = b.waitRegistered(reg, puts0, ok)
	}
	connected, _ := pr.Sample()
	cpu1 := cpuOf(pids)
	gens := map[string]int{}
	for i, pid := range g.PIDs() {
		gens[strconv.Itoa(i)] = pid
	}
	var genCPU float64
	for _, v := range cpuOf(gens) {
		genCPU += v
	}
	// The profile is collected only now: waiting for its fixed 5 s before
	// looking at register capped mode cluster at 18,000 / ≈ 4.9 s ≈
	// 3,700/s, whatever the cluster's speed (until 2026-12-02).
	if stopProf != nil {
		b.saveProfile(r, "cpu", stopProf())
	}
	gr, err := g.collect()
	if err != nil {
		return err
	}
	pauses, err := gcPauses(room.GCLog, gcOff)
	if err != nil {
		return err
	}
	r.Conns = gr.Connected
	r.AcceptAuthPerS = gr.Rate()
	if mode == "cluster" {
		if registered.IsZero() {
			r.Notes = append(r.Notes, fmt.Sprintf("register did not hold all %d sessions within %v; rate is to the last AUTH_REPLY", ok, registerWait))
		} else if s := registered.Sub(gr.Start).Seconds(); s > 0 {
			r.AcceptAuthPerS = float64(gr.Connected) / s
			r.Notes = append(r.Notes, fmt.Sprintf("last AUTH_REPLY %.2fs, every session at register %.2fs after the first dial",
				gr.End.Sub(gr.Start).Seconds(), s))
		}
	}
	r.LatencyMS = gr.Latency.Summary()
	r.GCPauseMS = pauses.gcSummary()
	if auths := connected.AuthsOK - before.AuthsOK; auths > 0 {
		r.RoomCPUMicrosPerAuth = (connected.CPUSeconds - before.CPUSeconds) / auths * 1e6
	}
	r.CPUSeconds, r.CPUMicrosPerAuth = connectCPU(cpu0, cpu1, genCPU, int64(r.Conns))
	// Memory right after a burst (and after the previous mode's
	// connections) is not a per-connection cost: idle measures that.
	r.fillErrors(gr)
	b.keep(r)
	return nil
}

// registerPuts reads register's count of stored sessions.
func registerPuts(reg *probe) (float64, error) {
	m, err := reg.scrape()
	if err != nil {
		return 0, fmt.Errorf("register metrics: %w", err)
	}
	return m[`pushgw_register_sessions_total{outcome="put"}`], nil
}

// waitRegistered polls register until it stored want more sessions than
// at puts0, returning when (zero after registerWait).
func (b *bench) waitRegistered(reg *probe, puts0 float64, want int64) time.Time {
	deadline := time.Now().Add(registerWait)
	for time.Now().Before(deadline) {
		if p, err := registerPuts(reg); err == nil && p-puts0 >= float64(want) {
			return time.Now()
		}
		if !b.p.sleep(50 * time.Millisecond) {
			break
		}
	}
	return time.Time{}
}

// connectCPU is the CPU each process spent over a connect phase, and per
// login. The generators' share includes building the AUTH frames before
// the clock started (they are children started by the phase), so it is
// an upper bound.
func connectCPU(cpu0, cpu1 map[string]float64, genCPU float64, logins int64) (secs, perAuth map[string]float64) {
	secs = map[string]float64{}
	for name, v := range cpu1 {
		if v0, ok := cpu0[name]; ok {
			secs[name] = v - v0
		}
	}
	if genCPU > 0 {
		secs["generators"] = genCPU
	}
	if logins <= 0 {
		return secs, nil
	}
	perAuth = make(map[string]float64, len(secs))
	for name, v := range secs {
		perAuth[name] = v / float64(logins) * 1e6
	}
	return secs, perAuth
}
