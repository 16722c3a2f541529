package appconfig

import (
	"fmt"
	"net/url"
	"time"
)

// Check-back defaults, as RocketMQ's broker: the first check 6 s after
// prepare, then every 30 s, at most 15 checks, then the record is rolled
// back (expired).
const (
	DefaultTxCheckFirst    = 6 * time.Second
	DefaultTxCheckInterval = 30 * time.Second
	DefaultTxCheckMax      = 15
	// Bounds an operator can set; below 100 ms a check loop would spin.
	minTxCheckPeriod = 100 * time.Millisecond
	maxTxCheckPeriod = 24 * time.Hour
	maxTxCheckMax    = 1000
	maxCheckURLBytes = 2048
)

// TxCheck is an app's transactional check-back settings (docs/TRANSACTIONS.md).
// It is embedded in App, so its fields sit at the top level of the app's
// JSON. The URL comes only from here, never from an API request, so no
// caller can point center at an address of its choosing.
type TxCheck struct {
	// CheckURL receives the signed check-back POSTs; empty means checks
	// fail and an undecided record is rolled back after the last one.
	CheckURL string `json:"check_url,omitempty"`
	// Zero means the default for each of these.
	CheckFirstMs    int64 `json:"check_first_ms,omitempty"`
	CheckIntervalMs int64 `json:"check_interval_ms,omitempty"`
	CheckMax        int   `json:"check_max,omitempty"`
}

// TxCheckFirst is the delay from prepare to the first check.
func (c TxCheck) TxCheckFirst() time.Duration {
	return periodOr(c.CheckFirstMs, DefaultTxCheckFirst)
}

// TxCheckInterval is the delay between checks.
func (c TxCheck) TxCheckInterval() time.Duration {
	return periodOr(c.CheckIntervalMs, DefaultTxCheckInterval)
}

// TxCheckMax is how many checks are made before the record expires.
func (c TxCheck) TxCheckMax() int {
	if c.CheckMax <= 0 {
		return DefaultTxCheckMax
	}
	return min(c.CheckMax, maxTxCheckMax)
}

func periodOr(ms int64, def time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return min(max(time.Duration(ms)*time.Millisecond, minTxCheckPeriod), maxTxCheckPeriod)
}

// ValidateTxCheck checks the settings before they are stored (pushctl app
// set calls it); center re-checks the URL before each use.
func (c TxCheck) ValidateTxCheck() error {
	if c.CheckURL != "" {
		if err := CheckTxURL(c.CheckURL); err != nil {
			return err
		}
	}
	for name, ms := range map[string]int64{"check_first_ms": c.CheckFirstMs, "check_interval_ms": c.CheckIntervalMs} {
		if ms != 0 && (ms < minTxCheckPeriod.Milliseconds() || ms > maxTxCheckPeriod.Milliseconds()) {
			return fmt.Errorf("appconfig: %s %d outside %d..%d", name, ms, minTxCheckPeriod.Milliseconds(), maxTxCheckPeriod.Milliseconds())
		}
	}
	if c.CheckMax < 0 || c.CheckMax > maxTxCheckMax {
		return fmt.Errorf("appconfig: check_max %d outside 0..%d", c.CheckMax, maxTxCheckMax)
	}
	return nil
}

// CheckTxURL accepts an absolute http(s) URL with a host and no
// credentials (they would end up in logs).
func CheckTxURL(raw string) error {
	if len(raw) > maxCheckURLBytes {
		return fmt.Errorf("appconfig: check_url is %d bytes; at most %d", len(raw), maxCheckURLBytes)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("appconfig: check_url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("appconfig: check_url %q: want http(s)://host/path without user info", raw)
	}
	return nil
}
