package appconfig

import "testing"

func TestParseEventsAndSubscribes(t *testing.T) {
	got, err := ParseEvents("receipts, online,receipts")
	if err != nil || got != "receipts,online" {
		t.Fatalf("ParseEvents: %q %v", got, err)
	}
	c := Callbacks{Events: got}
	if !c.Subscribes(EventReceipts) || !c.Subscribes(EventOnline) || c.Subscribes(EventOffline) {
		t.Fatalf("Subscribes on %q", got)
	}
	if _, err := ParseEvents("receipts,bogus"); err == nil {
		t.Fatal("unknown event accepted")
	}
	if got, err := ParseEvents("none"); err != nil || got != "" {
		t.Fatalf("none: %q %v", got, err)
	}
	if (Callbacks{WebhookBatch: MaxWebhookBatch + 1}).ValidateCallbacks() == nil || (Callbacks{Events: "x"}).ValidateCallbacks() == nil {
		t.Fatal("bad callbacks validated")
	}
	if (Callbacks{}).EventBatch() != 1 || (Callbacks{WebhookBatch: 50}).EventBatch() != 50 || !(Callbacks{WebhookBatch: 2}).Batched() {
		t.Fatal("batch sizes")
	}
}
