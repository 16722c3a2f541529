package main

import "fmt"

// Bounds of the unicast ladder.
const (
	// minAchievedShare: a step whose sender reached less than this share
	// of the offered rate has saturated the sender or center; the ladder
	// stops there, since a higher offer cannot be met either.
	minAchievedShare = 0.9
	maxLadderSteps   = 30
)

// ladder is the unicast scenario's rising offered rate: start, then each
// step factor times the last, until a step breaks the latency limit, falls
// short of its offer, loses messages or the rate passes max.
type ladder struct {
	start, factor, max float64
	p99LimitMS         float64
}

func (l ladder) validate() error {
	switch {
	case l.start <= 0 || l.start > maxRate:
		return fmt.Errorf("-rate-start %v: want (0, %d]", l.start, maxRate)
	case l.factor <= 1 || l.factor > 10:
		return fmt.Errorf("-rate-factor %v: want (1, 10]", l.factor)
	case l.max < l.start || l.max > maxRate:
		return fmt.Errorf("-rate-max %v: want -rate-start..%d", l.max, maxRate)
	case l.p99LimitMS <= 0:
		return fmt.Errorf("-p99-limit %vms: want > 0", l.p99LimitMS)
	}
	return nil
}

// rates lists the offers in order (bounded by maxLadderSteps).
func (l ladder) rates() []float64 {
	var out []float64
	for r := l.start; r <= l.max*(1+1e-9) && len(out) < maxLadderSteps; r *= l.factor {
		out = append(out, float64(int64(r+0.5)))
	}
	return out
}

// stopReason says why the ladder ends after step s ("" to go on).
func (l ladder) stopReason(s RateStep) string {
	switch {
	case s.LatencyMS.P99 > l.p99LimitMS:
		return fmt.Sprintf("p99 %.1f ms above the %.0f ms limit", s.LatencyMS.P99, l.p99LimitMS)
	case s.Achieved < s.Offered*minAchievedShare:
		return fmt.Sprintf("sent %.0f/s of %.0f/s offered: the sender or center saturated", s.Achieved, s.Offered)
	case s.Missing > 0:
		return fmt.Sprintf("%d messages not delivered", s.Missing)
	}
	return ""
}

// sustainable is the highest offered rate of a step within every limit,
// 0 when even the first step broke one.
func (l ladder) sustainable(steps []RateStep) float64 {
	best := 0.0
	for _, s := range steps {
		if l.stopReason(s) == "" && s.Offered > best {
			best = s.Offered
		}
	}
	return best
}
