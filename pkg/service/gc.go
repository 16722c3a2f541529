package service

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
)

// Bounds of -gc-percent.
const (
	MinGCPercent = 10
	MaxGCPercent = 1000
	// ServerGCPercent is the GC target of saver, center and register. Their
	// live heaps are a few MB, so at Go's default of 100 the collector runs
	// many times a second under push load: at 12,800 QoS 1 pushes/s its
	// mark workers were 16 % of saver's CPU. At 400 they spend 2–3 µs less
	// per push each (docs/BENCHMARKS.md, unicast, ninth session) for tens
	// of MB more RSS.
	ServerGCPercent = 400
)

// GCConfig is a service's -gc-percent flag: the GC target as GOGC, with a
// default chosen for the service. A GOGC environment variable overrides
// it, so an operator's setting always wins.
type GCConfig struct {
	Percent int
	// def is the service's default, kept for a config built without
	// flags (the zero Percent).
	def int
}

// Bind registers -gc-percent with the service's default and the reason
// for it, which the help text repeats.
func (c *GCConfig) Bind(fs *flag.FlagSet, def int, why string) {
	c.def = def
	fs.IntVar(&c.Percent, "gc-percent", def, "GC target percentage, as GOGC ("+why+"); a GOGC environment variable overrides it")
}

// Validate checks the bounds; a zero Percent is the default given to Bind
// (or Go's 100 when Bind was never called).
func (c *GCConfig) Validate() error {
	if c.Percent == 0 {
		c.Percent = c.def
	}
	if c.Percent == 0 {
		c.Percent = 100
	}
	if c.Percent < MinGCPercent || c.Percent > MaxGCPercent {
		return fmt.Errorf("-gc-percent %d: want %d..%d", c.Percent, MinGCPercent, MaxGCPercent)
	}
	return nil
}

// Apply sets the process's GC target unless GOGC is set.
func (c *GCConfig) Apply(log *slog.Logger) {
	if env, ok := os.LookupEnv("GOGC"); ok {
		log.Info("GOGC set in the environment; -gc-percent ignored", "GOGC", env)
		return
	}
	if c.Percent == 0 {
		return
	}
	debug.SetGCPercent(c.Percent)
}
