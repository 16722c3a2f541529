// Package faults is pushgw's fault-injection suite: a real cluster under
// steady QoS 1 load while processes are killed, hung and restarted and
// Redis, MariaDB and etcd are taken away, with a Jepsen-style total-queue
// checker deciding whether anything center acknowledged was lost.
//
//	make faults                       # the full schedule, JSON on stdout
//	go test ./test/faults -run TestFaults -v -args -faults.schedule=full
//
// Without flags TestFaults runs the short schedule, as `make test` does.
package faults

import (
	"flag"
	"regexp"
	"testing"
	"time"
)

var (
	scheduleFlag = flag.String("faults.schedule", "short", "fault plan: short (inside make test) or full (make faults)")
	outFlag      = flag.String("faults.out", "", "also write the result JSON to this file")
	clientsFlag  = flag.Int("faults.clients", 0, "SDK clients (one user each); 0 keeps the plan's")
	rateFlag     = flag.Int("faults.rate", 0, "pushes per second; 0 keeps the plan's")
	retriesFlag  = flag.Int("faults.retries", -1, "writer retries of an unacknowledged push (same idempotency key); -1 keeps the plan's, 0 measures 'recovered'")
	keepLogsFlag = flag.Bool("faults.keep-logs", false, "keep the services' logs of a passing run too")
	seedFlag     = flag.Uint64("faults.seed", 0, "seed of the full plan's random fault pairs; 0 picks one (printed in the JSON)")
	stepsFlag    = flag.String("faults.steps", "", "regexp: run only the plan's faults whose names match")
)

func TestFaults(t *testing.T) {
	var s schedule
	switch *scheduleFlag {
	case "short":
		s = shortSchedule()
	case "full":
		seed := *seedFlag
		if seed == 0 {
			seed = uint64(time.Now().UnixNano())
		}
		s = fullSchedule(seed)
	default:
		t.Fatalf("-faults.schedule %q: want short or full", *scheduleFlag)
	}
	if *clientsFlag > 0 {
		s.Clients = *clientsFlag
	}
	if *rateFlag > 0 {
		s.Rate = *rateFlag
	}
	if *retriesFlag >= 0 {
		s.Retries = *retriesFlag
	}
	if *stepsFlag != "" {
		re, err := regexp.Compile(*stepsFlag)
		if err != nil {
			t.Fatalf("-faults.steps: %v", err)
		}
		var keep []step
		for _, st := range append(s.steps, optionalSteps()...) {
			if re.MatchString(st.name) {
				keep = append(keep, st)
			}
		}
		s.steps = keep
	}
	for _, st := range s.steps {
		s.RedisCluster = s.RedisCluster || st.redisCluster
	}
	for _, st := range s.steps {
		if s.RedisCluster && st.singleRedis {
			t.Fatalf("-faults.steps: %q needs one redis-server, the redis-cluster steps a Redis Cluster; run them apart", st.name)
		}
	}
	runSchedule(t, s, *outFlag, *keepLogsFlag)
}
