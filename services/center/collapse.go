package main

import (
	"fmt"
	"unicode"
)

// collapse_key and priority of a push (docs/openapi.yaml). A newer QoS 1
// message with the same (app, user, collapse_key) replaces one still
// waiting for an ack, which then reports state "collapsed"; priority
// "high" goes first when a reconnecting client is sent its backlog. Both
// only mean something for stored messages, so QoS 0 rejects them.
const (
	// maxCollapseKeyBytes matches saver's messages.collapse_key column.
	maxCollapseKeyBytes = 64
	priorityNormal      = "normal"
	priorityHigh        = "high"
)

// storeOptions are the validated collapse_key and priority.
type storeOptions struct {
	collapseKey string
	priority    uint32 // 1 high, 0 normal: internalpb.Message.priority
}

func checkStoreOptions(collapseKey string, priority *string, qos uint32) (storeOptions, *apiError) {
	var o storeOptions
	if len(collapseKey) > maxCollapseKeyBytes {
		return o, fieldError("collapse_key", fmt.Sprintf("collapse_key is %d bytes; at most %d allowed", len(collapseKey), maxCollapseKeyBytes))
	}
	for _, r := range collapseKey {
		if unicode.IsControl(r) {
			return o, fieldError("collapse_key", "collapse_key must not contain control characters")
		}
	}
	if collapseKey != "" && qos == 0 {
		return o, fieldError("collapse_key", "collapse_key needs qos 1: a qos 0 push is never stored, so there is nothing to replace")
	}
	o.collapseKey = collapseKey
	if priority != nil {
		switch *priority {
		case priorityNormal:
		case priorityHigh:
			o.priority = 1
		default:
			return o, fieldError("priority", fmt.Sprintf("priority must be %q or %q, not %q", priorityHigh, priorityNormal, *priority))
		}
		if qos == 0 {
			return o, fieldError("priority", "priority needs qos 1: it orders the stored backlog a reconnecting client receives")
		}
	}
	return o, nil
}
