package main

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// Two generators' views of one broadcast merge into one count, the
// earliest first and latest last delivery, and one histogram; unicast
// pushes are not counted.
func TestBroadcastSeenMerge(t *testing.T) {
	created := time.Now().Add(-50 * time.Millisecond).UnixMilli()
	a, b := newBcastRecorder(), newBcastRecorder()
	for i := 0; i < 3; i++ {
		a.onPush(&clientpb.Push{Id: 7, BroadcastSeq: 1, CreatedMs: created})
	}
	b.onPush(&clientpb.Push{Id: 7, BroadcastSeq: 1, CreatedMs: created})
	b.onPush(&clientpb.Push{Id: 9, CreatedMs: created}) // a unicast push
	for id := uint64(100); id < 100+bcastHistIDs+2; id++ {
		b.onPush(&clientpb.Push{Id: id, BroadcastSeq: id, CreatedMs: created})
	}
	all := map[uint64]*bcastTotal{}
	mergeBroadcasts(all, a.result())
	mergeBroadcasts(all, b.result())
	one := all[7]
	if one == nil || one.Count != 4 || one.FirstNs > one.LastNs || one.CreatedMs != created {
		t.Fatalf("merged %+v", one)
	}
	if s := one.SinceCreated.Summary(); s.Count != 4 || s.P50 < 40 {
		t.Fatalf("since-created histogram %+v, want 4 values of about 50 ms", s)
	}
	if all[9] != nil {
		t.Fatal("a unicast push was counted as a broadcast")
	}
	if len(all) != 1+bcastHistIDs+2 {
		t.Fatalf("%d broadcasts merged", len(all))
	}
}

func TestBenchBroadcastFlags(t *testing.T) {
	for _, args := range [][]string{{"-scenario", "broadcast", "-bcast-rate", "0"}, {"-scenario", "broadcast", "-bcast-duration", "0s"}} {
		if _, err := parseBenchFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	f, err := parseBenchFlags([]string{"-scenario", "broadcast"})
	if err != nil || f.conns != defaultBenchConns || f.bcastRate != 20 || f.bcastDuration != 10*time.Second {
		t.Fatalf("defaults: %+v %v", f, err)
	}
}
