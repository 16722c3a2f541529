package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Fixed shape of the bench's broadcasts.
const (
	broadcastPayload = 64
	broadcastTTL     = 600
	// broadcastDrainPoll is how often the room's pushes counter is read
	// while waiting for a broadcast's deliveries.
	broadcastDrainPoll = 20 * time.Millisecond
	catchUpPoll        = 200 * time.Millisecond
)

// broadcast: -conns connections (spread over generator processes) on one
// fresh room, then one broadcast (-bcast-qos) through center's API: the time
// from the API's answer to the last delivery and the percentiles over
// connections; then a stream of broadcasts at -bcast-rate for
// -bcast-duration: deliveries per second and per room CPU-second.
func (b *bench) broadcast(i int, engine, flagVal string) error {
	r := b.newResult(engine)
	r.Rooms, r.Requested = 1, b.f.conns
	room, err := b.cl.startRoom(i, flagVal)
	if err != nil {
		return err
	}
	defer b.cl.stopRoom(room.Name)
	pr := roomProbe(room)
	g, _, stopped, err := b.connectPhase(genSpec{addrs: []string{room.TCP}, secret: b.cl.Secret,
		prefix: engine + "-bcast-", n: b.f.conns, conc: b.f.conc, connectTO: b.f.connectTO},
		fmt.Sprintf("broadcast %s: connect", engine), []*probe{pr}, nil)
	if err != nil {
		return err
	}
	r.GeneratorProcs = len(g.children)
	if stopped != "" {
		r.Notes = append(r.Notes, "connect phase ended early: "+stopped)
	}
	// Login catch-ups (saver reads) must finish before the broadcast: a
	// connection still catching up is skipped by a live broadcast and
	// gets it from its catch-up, seconds later under a login storm.
	b.p.wait(b.f.settle, fmt.Sprintf("broadcast %s: settle", engine))
	if !b.waitCatchUps(pr, b.f.conns, connectPhaseLimit) {
		r.Notes = append(r.Notes, "not every login catch-up finished before the broadcast")
	}
	held, err := pr.Sample()
	if err != nil {
		g.release()
		return err
	}
	conns := held.Connections
	httpc := &http.Client{Timeout: httpTimeout}

	// One broadcast.
	sent := time.Now()
	oneID, err := b.postBroadcast(httpc)
	answered := time.Now()
	if err != nil {
		g.release()
		return err
	}
	b.waitPushes(pr, held.Pushes+conns, b.f.drain)

	// The stream.
	before, err := pr.Sample()
	if err != nil {
		g.release()
		return err
	}
	streamStart := time.Now()
	var accepted, refused int64
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.f.bcastRate))
	for time.Since(streamStart) < b.f.bcastDuration && b.ctx.Err() == nil {
		if _, err := b.postBroadcast(httpc); err != nil {
			refused++
			r.ErrorKinds["broadcast_refused"]++
		} else {
			accepted++
		}
		<-tick.C
	}
	tick.Stop()
	b.waitPushes(pr, before.Pushes+float64(accepted)*conns, b.f.drain)
	after, err := pr.Sample()
	if err != nil {
		g.release()
		return err
	}
	gr, err := g.collect()
	if err != nil {
		return err
	}
	r.fillErrors(gr)
	r.Errors += refused
	r.Conns = int(conns)

	if one := gr.Broadcasts[oneID]; one != nil {
		// Percentiles over connections, from the request being sent: the
		// histograms hold receive time minus created_ms (saver's clock,
		// the same box), shifted here by created_ms minus the send time.
		shift := float64(time.UnixMilli(one.CreatedMs).Sub(sent)) / float64(time.Millisecond)
		lat := one.SinceCreated.Summary()
		lat.P50, lat.P90, lat.P99, lat.P999, lat.Max = lat.P50+shift, lat.P90+shift, lat.P99+shift, lat.P999+shift, lat.Max+shift
		r.LatencyMS = lat
		r.Broadcast = &BroadcastFigures{
			APIAnswerMS:     ms(answered.Sub(sent)),
			LastAfterAnswer: ms(time.Unix(0, one.LastNs).Sub(answered)),
			FirstAfterSend:  ms(time.Unix(0, one.FirstNs).Sub(sent)),
			Reached:         one.Count,
		}
		r.Missing += max(int64(conns)-one.Count, 0)
	} else {
		r.Missing += int64(conns)
		r.Notes = append(r.Notes, "the single broadcast reached no connection")
	}
	var streamDeliveries int64
	var firstNs, lastNs int64
	for id, t := range gr.Broadcasts {
		if id == oneID {
			continue
		}
		streamDeliveries += t.Count
		if firstNs == 0 || t.FirstNs < firstNs {
			firstNs = t.FirstNs
		}
		lastNs = max(lastNs, t.LastNs)
	}
	st := &StreamFigures{Offered: b.f.bcastRate, Seconds: b.f.bcastDuration.Seconds(), Accepted: accepted, Deliveries: streamDeliveries}
	if lastNs > 0 {
		span := time.Unix(0, lastNs).Sub(streamStart).Seconds()
		st.DeliveriesPerS = float64(streamDeliveries) / span
		r.DeliveriesPerS = st.DeliveriesPerS
	}
	if cpu := after.CPUSeconds - before.CPUSeconds; cpu > 0 {
		st.RoomCPUSeconds = cpu
		st.DeliveriesPerRoomCPUS = float64(streamDeliveries) / cpu
	}
	if r.Broadcast == nil {
		r.Broadcast = &BroadcastFigures{}
	}
	r.Broadcast.Stream = st
	r.Missing += max(accepted*int64(conns)-streamDeliveries, 0)
	b.keep(r)
	return nil
}

// postBroadcast sends one broadcast of -bcast-qos to the bench app and returns its id.
func (b *bench) postBroadcast(httpc *http.Client) (uint64, error) {
	body, _ := json.Marshal(map[string]any{"payload": string(bytes.Repeat([]byte("b"), broadcastPayload)), "qos": b.f.bcastQoS, "ttl": broadcastTTL})
	req, err := http.NewRequestWithContext(b.ctx, "POST", b.cl.CenterURL+"/v1/broadcast", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.cl.APIKey)
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("broadcast: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("broadcast: %s: %s", resp.Status, raw)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, fmt.Errorf("broadcast answer %q: %w", raw, err)
	}
	return strconv.ParseUint(out.ID, 10, 64)
}

// waitPushes waits until the room wrote want pushes, or at most limit.
func (b *bench) waitPushes(pr *probe, want float64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && b.p.sleep(broadcastDrainPoll) {
		if s, err := pr.Sample(); err == nil && s.Pushes >= want {
			return
		}
	}
}

// waitCatchUps waits until the room finished n login catch-ups (ok or
// given up), at most limit; false when it did not.
func (b *bench) waitCatchUps(pr *probe, n int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if m, err := pr.scrape(); err == nil &&
			m[`pushgw_room_broadcast_catchups_total{result="ok"}`]+m[`pushgw_room_broadcast_catchups_total{result="given_up"}`] >= float64(n) {
			return true
		}
		if !b.p.sleep(catchUpPoll) {
			return false
		}
	}
	return false
}

// BroadcastFigures are the broadcast scenario's own results.
type BroadcastFigures struct {
	// APIAnswerMS is POST /v1/broadcast's round trip.
	APIAnswerMS float64 `json:"api_answer_ms"`
	// LastAfterAnswer is the last connection's receive time minus the
	// API answer (negative when every delivery beat the answer).
	LastAfterAnswer float64 `json:"last_delivery_after_answer_ms"`
	FirstAfterSend  float64 `json:"first_delivery_after_send_ms"`
	Reached         int64   `json:"reached"`
	// Stream is the stream phase.
	Stream *StreamFigures `json:"stream,omitempty"`
}

// StreamFigures describe the stream of broadcasts.
type StreamFigures struct {
	Offered               float64 `json:"offered_per_s"`
	Seconds               float64 `json:"seconds"`
	Accepted              int64   `json:"accepted"`
	Deliveries            int64   `json:"deliveries"`
	DeliveriesPerS        float64 `json:"deliveries_per_s"`
	RoomCPUSeconds        float64 `json:"room_cpu_seconds"`
	DeliveriesPerRoomCPUS float64 `json:"deliveries_per_room_cpu_s"`
}
