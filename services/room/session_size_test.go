package main

import (
	"testing"
	"unsafe"
)

// Size classes of the Go allocator the per-connection structs are kept
// in: one of each exists per open connection, so a field that pushes one
// over its class costs the whole step (16 B for session) on every idle
// connection.
const (
	sessionSizeClass  = 224
	gnetConnSizeClass = 80
)

func TestSessionSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > sessionSizeClass {
		t.Errorf("session is %d bytes, over the %d-byte size class: move rarely used fields behind bindState-like pointers or reorder", n, sessionSizeClass)
	}
	if n := unsafe.Sizeof(gnetConn{}); n > gnetConnSizeClass {
		t.Errorf("gnetConn is %d bytes, over the %d-byte size class", n, gnetConnSizeClass)
	}
	t.Logf("session %d B, gnetConn %d B, pendingState %d B", unsafe.Sizeof(session{}), unsafe.Sizeof(gnetConn{}), unsafe.Sizeof(pendingState{}))
}
