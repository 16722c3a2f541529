package main

import (
	"testing"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// The first reason set wins (a kick that then fails the write stays a
// kick), an unset one reads "closed", and KICK codes map to their reason.
func TestCloseReason(t *testing.T) {
	s := &session{}
	if got := closeReason(s.closeWhy.Load()).String(); got != "closed" {
		t.Fatalf("unset reason: %q", got)
	}
	s.setCloseReason(closeDrained)
	s.setCloseReason(closeTimedOut)
	if got := closeReason(s.closeWhy.Load()).String(); got != "drained" {
		t.Fatalf("first reason lost: %q", got)
	}
	if closeReasonOf(protocol.CodeReplaced) != closeReplaced || closeReasonOf(protocol.CodeKicked) != closeKicked {
		t.Fatal("KICK code mapping")
	}
	for r, want := range map[closeReason]string{closeClosed: "closed", closeTimedOut: "timed_out", closeKicked: "kicked", closeReplaced: "replaced", closeDrained: "drained"} {
		if r.String() != want {
			t.Errorf("%d: %q, want %q", r, r.String(), want)
		}
	}
	var e *eventReporter // no saver events client: reports nothing, never panics
	e.online(s)
	e.offline(s)
	if e.Close(nil) != nil {
		t.Fatal("nil reporter Close")
	}
}
