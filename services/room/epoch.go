package main

import (
	"context"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Register's epoch changes when the Redis behind it lost its data
// (services/register/epoch.go). The room polls it and, on a change, runs
// its refresh at once: register reports every session it no longer knows,
// the room puts them back and pulls what was stored for them meanwhile.
// Without this a lost session stayed unreachable until the next periodic
// refresh (-session-refresh, 60 s): the fault suite's Redis restart had
// a p99 of 5.4 s with a 5 s refresh.

const (
	// epochPoll is how often the room asks; one cheap call per room.
	epochPoll = time.Second
	// epochTimeout bounds one poll, so a hung register costs one poll.
	epochTimeout = time.Second
)

// epochWatch remembers the last epoch seen; the zero value knows none.
type epochWatch struct {
	last string
}

// changed polls register and reports whether its epoch moved since the
// last answer. The first answer and failed polls report false: a room
// just started put its sessions already, and a register that cannot
// answer is asked again next poll.
func (w *epochWatch) changed(ctx context.Context, reg internalpb.RegisterClient) bool {
	cctx, cancel := context.WithTimeout(ctx, epochTimeout)
	rep, err := reg.Epoch(cctx, &internalpb.EpochRequest{})
	cancel()
	if err != nil || rep.GetEpoch() == "" {
		return false
	}
	prev := w.last
	w.last = rep.GetEpoch()
	return prev != "" && prev != w.last
}
