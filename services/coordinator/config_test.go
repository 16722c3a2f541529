package main

import (
	"strings"
	"testing"
)

func TestParseConfigWebhookLimits(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.webhookLimits(); l.budget != defaultWebhookTimeout || l.attemptTimeout != defaultWebhookAttemptTimeout ||
		l.attempts != defaultWebhookAttempts || l.appConcurrency != defaultWebhookAppConcurrency || l.appQueue != defaultWebhookAppQueue {
		t.Fatalf("defaults: %+v", l)
	}
	for _, bad := range [][]string{
		{"-webhook-attempts", "0"}, {"-webhook-attempt-timeout", "0s"},
		{"-webhook-app-concurrency", "0"}, {"-webhook-app-queue", "-1"},
	} {
		if _, err := parseConfig(bad); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming the flag", bad, err)
		}
	}
	if c, err := parseConfig([]string{"-webhook-app-queue", "0"}); err != nil || c.WebhookAppQueue != 0 {
		t.Fatalf("a queue of 0 (refuse when all slots are busy) is allowed: %v", err)
	}
}
