package main

import (
	"fmt"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// applyReceipt checks a push's "receipt" and marks its message: saver then
// records a delivery receipt (acked, expired, dead) in the transaction that
// finishes it, and the coordinator posts it to the app's webhook
// (docs/OPERATIONS.md, "Callbacks and receipts"). A receipt needs a stored
// (QoS 1) message and an app subscribed to receipts; asking otherwise is a
// 400, so a business never waits for a receipt that cannot come.
func applyReceipt(app appconfig.App, asked bool, d delivery, msgs []*internalpb.Message) *apiError {
	if !asked {
		return nil
	}
	if d.qos == 0 {
		return fieldError("receipt", "receipt needs qos 1: a qos 0 push is not stored, so it has no fate to report")
	}
	if !app.Subscribes(appconfig.EventReceipts) || app.WebhookURL == "" {
		return fieldError("receipt", fmt.Sprintf("app %s does not take receipts: set a webhook and subscribe with `pushctl app set --name %s --webhook URL --events receipts`", app.Name, app.Name))
	}
	for _, m := range msgs {
		m.Receipt = true
	}
	return nil
}
