package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// UsedCPU is the CPU time (user + system) a Redis server reports it has
// used, from INFO cpu: benchmarks take the difference around their loop to
// give Redis's own cost per operation, which on a box Redis shares is the
// figure that counts.
func UsedCPU(ctx context.Context, rdb redis.UniversalClient) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redistest: INFO cpu: %w", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("redistest: INFO cpu %s=%q: %w", k, v, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}
