package sdk

// noteBroadcast records a handled broadcast's seq: the next AUTH reports
// the highest one, so the server sends only what came after.
func (c *Client) noteBroadcast(seq uint64) {
	for {
		cur := c.lastBroadcast.Load()
		if seq <= cur || c.lastBroadcast.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// LastBroadcastSeq is the highest broadcast seq handled so far (or
// Config.LastBroadcastSeq). An app that saves it and passes it back in
// Config on its next start is not sent the same broadcasts again.
func (c *Client) LastBroadcastSeq() uint64 { return c.lastBroadcast.Load() }
