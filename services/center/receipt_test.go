package main

import (
	"testing"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

func TestApplyReceipt(t *testing.T) {
	subscribed := appconfig.App{Name: "a", WebhookURL: "http://127.0.0.1:9/hook", Callbacks: appconfig.Callbacks{Events: "receipts"}}
	msgs := []*internalpb.Message{{Id: 1}}
	if e := applyReceipt(subscribed, true, delivery{qos: 1}, msgs); e != nil || !msgs[0].GetReceipt() {
		t.Fatalf("subscribed app, qos 1: %v, receipt %v", e, msgs[0].GetReceipt())
	}
	for name, c := range map[string]struct {
		app appconfig.App
		qos uint32
	}{
		"qos 0":          {subscribed, 0},
		"not subscribed": {appconfig.App{Name: "a", WebhookURL: "http://127.0.0.1:9/hook", Callbacks: appconfig.Callbacks{Events: "online"}}, 1},
		"no webhook":     {appconfig.App{Name: "a", Callbacks: appconfig.Callbacks{Events: "receipts"}}, 1},
	} {
		m := []*internalpb.Message{{Id: 2}}
		e := applyReceipt(c.app, true, delivery{qos: c.qos}, m)
		if e == nil || e.Field != "receipt" || m[0].GetReceipt() {
			t.Errorf("%s: %v, receipt %v; want a 400 on field receipt", name, e, m[0].GetReceipt())
		}
	}
	m := []*internalpb.Message{{Id: 3}}
	if e := applyReceipt(appconfig.App{}, false, delivery{qos: 0}, m); e != nil || m[0].GetReceipt() {
		t.Fatalf("no receipt asked: %v", e)
	}
}
