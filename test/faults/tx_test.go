package faults

import (
	"testing"
	"time"
)

// The checker fails a run for a delivered rollback, a commit delivered
// twice, and a prepared commit never delivered; a commit delivered once
// and a rollback never delivered pass.
func TestCheckerTransactions(t *testing.T) {
	now := time.Now()
	c := newChecker()
	for _, a := range []*txAttempt{
		{key: "tca1", user: "u", commit: true, byAPI: true},
		{key: "trb2", user: "u"},
		{key: "tca3", user: "u", commit: true},
		{key: "trb4", user: "u"},
		{key: "tcb5", user: "u", commit: true},
	} {
		a.sent = now
		c.txAttempted(a)
		c.txFinished(a.key, true, "1", "200 committed <nil>")
	}
	c.delivered(delivery{key: "tca1", user: "u", id: 10, at: now})
	c.delivered(delivery{key: "trb2", user: "u", id: 20, at: now}) // rolled back, delivered
	c.delivered(delivery{key: "tca3", user: "u", id: 30, at: now})
	c.delivered(delivery{key: "tca3", user: "u", id: 31, at: now}) // committed twice
	r := c.result()
	want := TxResult{Attempted: 5, Prepared: 5, WantCommit: 3, Delivered: 3, RolledBackDelivered: 1, CommittedTwice: 1, Lost: 1}
	if r.Tx == nil || *r.Tx != want {
		t.Fatalf("tx result %+v, want %+v", r.Tx, want)
	}
	if r.Passed() || r.Unexpected != 0 {
		t.Fatalf("run passed=%v unexpected=%d", r.Passed(), r.Unexpected)
	}
	if m := c.missing(); len(m) != 1 || m[0] != "tcb5" {
		t.Fatalf("missing %v, want [tcb5]", m)
	}
}
