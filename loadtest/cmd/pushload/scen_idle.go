package main

import "fmt"

// idle: -conns authenticated idle connections on one fresh room; the
// room's RSS and Go heap per connection, the connect rate, connect
// latency, GC pauses while held.
func (b *bench) idle(i int, engine, flagVal string) error {
	r := b.newResult(engine)
	r.Rooms, r.Requested = 1, b.f.conns
	room, err := b.cl.startRoom(i, flagVal)
	if err != nil {
		return err
	}
	defer b.cl.stopRoom(room.Name)
	pr := roomProbe(room)
	before, _, err := b.quietSample(pr)
	if err != nil {
		return err
	}
	gcOff := logOffset(room.GCLog)
	g, series, stopped, err := b.connectPhase(genSpec{addrs: []string{room.TCP}, secret: b.cl.Secret,
		prefix: engine + "-idle-", n: b.f.conns, conc: b.f.conc, connectTO: b.f.connectTO},
		fmt.Sprintf("idle %s: connect", engine), []*probe{pr}, nil)
	if err != nil {
		return err
	}
	r.GeneratorProcs = len(g.children)
	r.Series = series
	if stopped != "" {
		r.Notes = append(r.Notes, "connect phase ended early: "+stopped)
	}
	connected, _ := pr.Sample()
	b.p.wait(b.f.settle, fmt.Sprintf("idle %s: settle", engine))
	held, heapProf, err := b.quietSample(pr)
	if err != nil {
		g.release()
		return err
	}
	b.saveProfile(r, "heap", heapProf)
	b.p.wait(b.f.hold, fmt.Sprintf("idle %s: hold", engine))
	gr, err := g.collect()
	if err != nil {
		return err
	}
	pauses, err := gcPauses(room.GCLog, gcOff)
	if err != nil {
		return err
	}
	b.p.wait(b.f.settle, fmt.Sprintf("idle %s: after close", engine))
	after, _ := pr.Sample()

	r.Conns = int(held.Connections - before.Connections)
	if r.Conns <= 0 {
		r.Conns = gr.LiveAtEnd
	}
	n := float64(r.Conns)
	r.RSSBeforeBytes, r.RSSHeldBytes, r.RSSAfterBytes = before.RSSBytes, held.RSSBytes, after.RSSBytes
	r.RSSBytesPerConn = perConn(float64(held.RSSBytes), float64(before.RSSBytes), n)
	r.HeapBytesPerConn = perConn(held.HeapInuse, before.HeapInuse, n)
	r.AcceptAuthPerS = gr.Rate()
	r.LatencyMS = gr.Latency.Summary()
	r.GCPauseMS = pauses.gcSummary()
	if auths := connected.AuthsOK - before.AuthsOK; auths > 0 {
		r.RoomCPUMicrosPerAuth = (connected.CPUSeconds - before.CPUSeconds) / auths * 1e6
	}
	r.fillErrors(gr)
	r.Notes = append(r.Notes, fmt.Sprintf("room goroutines held: %.0f (%.2f per connection), stack in use %.0f B per connection",
		held.Goroutines, perConn(held.Goroutines, before.Goroutines, n), perConn(held.StackInuse, before.StackInuse, n)))
	b.keep(r)
	return nil
}
