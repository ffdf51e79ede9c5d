// Package integration holds feedbridge's end-to-end tests: the built bridge
// binary against real redis-server, Prosody and ngircd processes started on
// free loopback ports by package testenv.
package integration

import (
	"os"
	"testing"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}
