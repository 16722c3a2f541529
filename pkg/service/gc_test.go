package service

import (
	"flag"
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestGCConfig(t *testing.T) {
	var c GCConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Bind(fs, ServerGCPercent, "why")
	if err := fs.Parse(nil); err != nil || c.Percent != ServerGCPercent {
		t.Fatalf("default: %d, %v", c.Percent, err)
	}
	built := GCConfig{def: 50} // built without flags: the service's default
	if err := built.Validate(); err != nil || built.Percent != 50 {
		t.Fatalf("zero config: %d, %v; want 50", built.Percent, err)
	}
	for _, bad := range []int{-1, MinGCPercent - 1, MaxGCPercent + 1} {
		if (&GCConfig{Percent: bad}).Validate() == nil {
			t.Errorf("-gc-percent %d accepted", bad)
		}
	}
	for _, ok := range []int{MinGCPercent, 100, MaxGCPercent} {
		if err := (&GCConfig{Percent: ok}).Validate(); err != nil {
			t.Errorf("-gc-percent %d: %v", ok, err)
		}
	}
}

// The flag sets the target; GOGC in the environment wins over it.
func TestGCConfigApply(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	(&GCConfig{Percent: 400}).Apply(log)
	if got := debug.SetGCPercent(100); got != 400 {
		t.Fatalf("after Apply(400): GC percent %d", got)
	}
	t.Setenv("GOGC", "100")
	(&GCConfig{Percent: 400}).Apply(log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, Apply changed the GC percent to %d", got)
	}
}
