// Package integration holds feedbridge's end-to-end tests: the built bridge
// binary against real redis-server, Prosody and ngircd processes started on
// free loopback ports by package testenv.
package integration

import (
	"os"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

// storeFor connects a thoonk.Store to the test Redis at url, closed when
// the test ends.
func storeFor(t testing.TB, url string) *thoonk.Store {
	t.Helper()
	rdb, err := thoonk.NewRedisClient(url, thoonk.RedisSingle, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
