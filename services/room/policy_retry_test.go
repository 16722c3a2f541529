package main

import (
	"testing"
	"time"
)

// The back-off doubles from policyRetryFirst to the cap, and all the
// attempts span about a minute: long enough for a register restart, short
// enough that a check does not outlive its purpose by much.
func TestPolicyRetryWait(t *testing.T) {
	if policyRetryWait(0) != policyRetryFirst || policyRetryWait(1) != 2*policyRetryFirst {
		t.Fatalf("first waits %v %v", policyRetryWait(0), policyRetryWait(1))
	}
	var total time.Duration
	for try := 0; try < policyRetryAttempts-1; try++ {
		w := policyRetryWait(try)
		if w > policyRetryMax {
			t.Fatalf("wait %d is %v, over the cap %v", try, w, policyRetryMax)
		}
		total += w
	}
	if total < 30*time.Second || total > 2*time.Minute {
		t.Fatalf("retries span %v, want about a minute", total)
	}
	if policyRetryWait(1000) != policyRetryMax {
		t.Fatal("a large try count overflows the back-off")
	}
}
