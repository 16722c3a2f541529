package sdk

import "sync/atomic"

// Stats are a Client's counters since New. Redelivered counts pushes the
// server sent again after the Handler had already taken them (an ACK lost
// with a connection, a room that died before reporting): they are ACKed
// again but never reach the Handler twice, so an app sees each message
// once while this number shows how much the server resent.
type Stats struct {
	Connects    uint64 // sessions established (AUTH accepted)
	Handled     uint64 // messages handed to the Handler that it accepted
	Redelivered uint64 // duplicates dropped by the dedupe window
	HandlerErrs uint64 // messages the Handler refused, left for redelivery
	Resumed     uint64 // sessions that resumed the previous one (flash reconnect), counted in Connects too
	// RebindsSkipped counts bound apps not bound again after a reconnect
	// because the resumed session kept them (AuthReply.resumed_apps).
	RebindsSkipped uint64
}

type stats struct {
	connects, handled, redelivered, handlerErrs atomic.Uint64
	resumed, rebindsSkipped                     atomic.Uint64
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (c *Client) Stats() Stats {
	return Stats{
		Connects:    c.stats.connects.Load(),
		Handled:     c.stats.handled.Load(),
		Redelivered: c.stats.redelivered.Load(),
		HandlerErrs: c.stats.handlerErrs.Load(),
		Resumed:     c.stats.resumed.Load(),

		RebindsSkipped: c.stats.rebindsSkipped.Load(),
	}
}

// Reconnect drops the current connection, if any, and lets Run connect
// again after its usual short back-off, pulling what is pending on the
// way. Apps call it when the network changed under them (Wi-Fi to
// cellular) and the old socket may be dead without knowing it.
func (c *Client) Reconnect() {
	if s := c.current(); s != nil {
		_ = s.conn.Close()
	}
}
