package deploy

import (
	"os"
	"testing"

	"github.com/pushgw/pushgw/test"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	test.RemoveBinaries()
	os.Exit(code)
}
