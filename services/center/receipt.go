package main

import (
	"fmt"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Receipts: a push marked "receipt" has saver record a delivery receipt
// (acked, expired, dead) in the transaction that finishes each of its
// stored messages, and the coordinator posts it to the app's webhook
// (docs/OPERATIONS.md, "Callbacks and receipts"). Every push kind that
// stores one message per recipient takes it: unicast, multicast (HTTP,
// gRPC PushMulti, each PushStream push) and transactional pushes to users.
// Broadcasts, app-wide or to a tag, are stored once and never per user, so
// they have no per-user fate to report and refuse it (broadcast.go).

// checkReceipt refuses a receipt that cannot come: it needs a stored (QoS
// 1) message and an app subscribed to receipts with a webhook. A 400 (or
// InvalidArgument) on field receipt, so a business never waits for
// nothing.
func checkReceipt(app appconfig.App, asked bool, d delivery) *apiError {
	if !asked {
		return nil
	}
	if d.qos == 0 {
		return fieldError("receipt", "receipt needs qos 1: a qos 0 push is not stored, so it has no fate to report")
	}
	if !app.Subscribes(appconfig.EventReceipts) || app.WebhookURL == "" {
		return fieldError("receipt", fmt.Sprintf("app %s does not take receipts: set a webhook and subscribe with `pushctl app set --name %s --webhook URL --events receipts`", app.Name, app.Name))
	}
	return nil
}

// applyReceipt checks a push's "receipt" and marks its messages.
func applyReceipt(app appconfig.App, asked bool, d delivery, msgs []*internalpb.Message) *apiError {
	if e := checkReceipt(app, asked, d); e != nil || !asked {
		return e
	}
	for _, m := range msgs {
		m.Receipt = true
	}
	return nil
}

// broadcastReceiptError is the answer to "receipt": true on a broadcast
// (app-wide or to a tag, direct or transactional).
func broadcastReceiptError() *apiError {
	return fieldError("receipt", "a broadcast (app-wide or to a tag) is stored once, not per user, so it has no per-user fate to report, "+
		"and a receipt per recipient of a broadcast to millions would flood the webhook: use POST /v1/push/multi for receipts per user, "+
		"or GET /v1/messages/{id} for the broadcast's state")
}
