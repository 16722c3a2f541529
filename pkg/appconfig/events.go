package appconfig

import (
	"fmt"
	"slices"
	"strings"
)

// Event names an app can subscribe to (docs/OPERATIONS.md, "Callbacks and
// receipts").
const (
	EventReceipts = "receipts"
	EventOnline   = "online"
	EventOffline  = "offline"
	// MaxWebhookBatch bounds how many events one webhook POST carries.
	MaxWebhookBatch = 500
)

// KnownEvents lists the subscribable events in documentation order.
var KnownEvents = []string{EventReceipts, EventOnline, EventOffline}

// Callbacks is an app's subscription to events posted to its webhook. It
// is embedded in App, so its fields sit at the top level of the app's JSON.
type Callbacks struct {
	// Events the app subscribes to, comma-separated ("receipts,online");
	// empty means none (uplinks only). A string, not a list, so that App
	// stays comparable.
	Events string `json:"events,omitempty"`
	// WebhookBatch > 1 posts up to that many events per request as
	// {"events":[…]}; 0 or 1 posts one event per request.
	WebhookBatch int `json:"webhook_batch,omitempty"`
}

// Subscribes reports whether the app asked for event (a Event* name).
func (c Callbacks) Subscribes(event string) bool {
	return c.Events != "" && slices.Contains(strings.Split(c.Events, ","), event)
}

// EventBatch is how many events go in one POST (at least 1).
func (c Callbacks) EventBatch() int { return min(max(c.WebhookBatch, 1), MaxWebhookBatch) }

// Batched reports whether the app takes events as an array.
func (c Callbacks) Batched() bool { return c.WebhookBatch > 1 }

// ValidateCallbacks checks the event names and the batch size.
func (c Callbacks) ValidateCallbacks() error {
	if c.Events != "" {
		if _, err := ParseEvents(c.Events); err != nil {
			return err
		}
	}
	if c.WebhookBatch < 0 || c.WebhookBatch > MaxWebhookBatch {
		return fmt.Errorf("webhook_batch %d: want 0..%d", c.WebhookBatch, MaxWebhookBatch)
	}
	return nil
}

// ParseEvents reads a comma-separated event list ("" or "none": none) and
// returns it in its stored form (known names, no repeats, comma-separated).
func ParseEvents(s string) (string, error) {
	if s == "" || s == "none" {
		return "", nil
	}
	var out []string
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if !slices.Contains(KnownEvents, e) {
			return "", fmt.Errorf("unknown event %q: want some of %s, or none", e, strings.Join(KnownEvents, ","))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return strings.Join(out, ","), nil
}
