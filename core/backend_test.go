package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// backend is one Redis the suite runs against.
type backend struct {
	name  string
	rdb   *redis.Client
	store *core.Store
	real  *testenv.Redis // nil for miniredis
}

// eachBackend runs fn against a real redis-server and against miniredis,
// so the embedded quick-start store is held to the real one's behaviour.
func eachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("redis-server", func(t *testing.T) { fn(t, realBackend(t)) })
	t.Run("miniredis", func(t *testing.T) { fn(t, miniBackend(t)) })
}

func realBackend(t testing.TB) *backend {
	srv := testenv.StartRedis(t)
	return newBackend(t, "redis-server", srv.Addr, srv)
}

func miniBackend(t testing.TB) *backend {
	m := miniredis.RunT(t)
	return newBackend(t, "miniredis", m.Addr(), nil)
}

func newBackend(t testing.TB, name, addr string, srv *testenv.Redis) *backend {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	s, err := core.NewStore(rdb, core.StoreOptions{Instance: "test-instance"})
	if err != nil {
		t.Fatal(err)
	}
	return &backend{name: name, rdb: rdb, store: s, real: srv}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(t testing.TB, b *backend, feed string, typ core.FeedType, cfg map[string]string) {
	t.Helper()
	must(t, b.store.Create(ctxT(t), feed, typ, cfg))
}

func ctxWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}
