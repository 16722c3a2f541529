package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// The error table of docs/openapi.yaml is the contract; keep it and the
// code in step.
func TestOpenAPIListsEveryCode(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for code, status := range statusOf {
		row := fmt.Sprintf("| %s | %d |", code, status)
		if !strings.Contains(doc, row) {
			t.Errorf("docs/openapi.yaml lacks the row %q", row)
		}
	}
	for _, route := range []string{"/v1/push:", "/v1/push/multi:", "/v1/messages/{id}:", "/v1/apps/{app}/users/{user}/sessions:", "/v1/kick:", "/v1/broadcast:", "/v1/multicasts/{id}:"} {
		if !strings.Contains(doc, "  "+route) {
			t.Errorf("docs/openapi.yaml lacks route %s", route)
		}
	}
}
