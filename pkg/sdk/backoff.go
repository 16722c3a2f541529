package sdk

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before reconnect attempt n (0-based): a uniform
// random duration in [0, min(max, min·2ⁿ)] ("full jitter"), so clients that
// lost a room together do not come back together.
func backoff(n int, lo, hi time.Duration) time.Duration {
	ceil := lo
	for i := 0; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	if ceil > hi {
		ceil = hi
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// redirectDelay honours a server's back-off hint and spreads clients over a
// further quarter of it.
func redirectDelay(hintMs uint32, lo time.Duration) time.Duration {
	if hintMs == 0 {
		return backoff(0, lo, lo)
	}
	d := time.Duration(hintMs) * time.Millisecond
	return d + rand.N(d/4+1)
}
