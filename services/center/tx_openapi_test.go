package main

import (
	"os"
	"strings"
	"testing"
)

// docs/openapi.yaml documents every transactional route.
func TestOpenAPIListsTxRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, route := range []string{"/v1/tx:", "/v1/tx/{id}:", "/v1/tx/{id}/commit:", "/v1/tx/{id}/rollback:"} {
		if !strings.Contains(string(raw), "\n  "+route+"\n") {
			t.Errorf("docs/openapi.yaml lacks route %s", route)
		}
	}
}
