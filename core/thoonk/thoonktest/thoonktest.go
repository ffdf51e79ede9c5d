// Package thoonktest runs tests of Thoonk code against a real redis-server
// and against the embedded miniredis, so that the quick-start store is held
// to the real one's behaviour.
package thoonktest

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// Backend is one Redis a test runs against.
type Backend struct {
	// Name is "redis-server" or "miniredis".
	Name string
	// RDB is a plain client on the same Redis, for checks behind the store's back.
	RDB   *redis.Client
	Store *thoonk.Store
	// Real is the redis-server process (nil for miniredis).
	Real *testenv.Redis
}

// Each runs fn against a real redis-server and against miniredis, as subtests.
func Each(t *testing.T, fn func(t *testing.T, b *Backend)) {
	t.Run("redis-server", func(t *testing.T) { fn(t, Real(t)) })
	t.Run("miniredis", func(t *testing.T) { fn(t, Mini(t)) })
}

// Real starts a redis-server for the test and returns its backend.
func Real(t testing.TB) *Backend {
	srv := testenv.StartRedis(t)
	return New(t, "redis-server", srv.Addr, srv)
}

// Mini starts a miniredis for the test and returns its backend.
func Mini(t testing.TB) *Backend {
	m := miniredis.RunT(t)
	return New(t, "miniredis", m.Addr(), nil)
}

// New returns a backend on the Redis at addr, closed when the test ends.
func New(t testing.TB, name, addr string, srv *testenv.Redis) *Backend {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Instance: "test-instance"})
	if err != nil {
		t.Fatal(err)
	}
	return &Backend{Name: name, RDB: rdb, Store: s, Real: srv}
}

// Ctx returns a context that ends after 30 s or with the test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Must fails the test on a non-nil error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Create creates a feed or fails the test.
func (b *Backend) Create(t testing.TB, feed string, typ thoonk.FeedType, cfg map[string]string) {
	t.Helper()
	Must(t, b.Store.Create(Ctx(t), feed, typ, cfg))
}

// Listen starts a listener on the store, waits until it is connected and
// stops it when the test ends.
func Listen(t testing.TB, s *thoonk.Store, opts thoonk.ListenerOptions) *thoonk.Listener {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := thoonk.NewListener(s, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	Must(t, l.WaitConnected(wctx))
	return l
}

// Next returns the subscription's next event that is not a connect
// resync, failing the test after 10 s without one.
func Next(t testing.TB, sub *thoonk.Subscription) thoonk.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no event: %v", err)
		}
		if ev.Type == thoonk.EventResync && ev.Reason == thoonk.ResyncConnected {
			continue
		}
		return ev
	}
}

// StoreWith returns another store on the backend's Redis, with opts.
func (b *Backend) StoreWith(t testing.TB, opts thoonk.StoreOptions) *thoonk.Store {
	t.Helper()
	if opts.Instance == "" {
		opts.Instance = "test-instance"
	}
	s, err := thoonk.NewStore(b.RDB, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PyPublish publishes an item the way thoonk.py's Feed.publish does: under
// WATCH on feed.ids, trim to max_length (ZRANGE 0 -max, retracting each
// id but the one published), ZADD with time.time() (seconds, a float),
// INCR publishes, HSET the item, EXEC; then publish feed.publish (new id)
// or feed.edit outside the transaction. It returns the id.
func PyPublish(ctx context.Context, rdb redis.UniversalClient, feed, id string, item []byte) (string, error) {
	if id == "" {
		id = thoonk.NewID()
	}
	ids, items := "feed.ids:"+feed, "feed.items:"+feed
	var added *redis.IntCmd
	err := rdb.Watch(ctx, func(tx *redis.Tx) error {
		maxLen, _ := tx.HGet(ctx, "feed.config:"+feed, "max_length").Int()
		var del []string
		if maxLen > 0 {
			var err error
			if del, err = tx.ZRange(ctx, ids, 0, int64(-maxLen)).Result(); err != nil {
				return err
			}
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, d := range del {
				if d != id {
					p.ZRem(ctx, ids, d)
					p.HDel(ctx, items, d)
					p.Publish(ctx, "feed.retract:"+feed, d)
				}
			}
			now := float64(time.Now().UnixMicro()) / 1e6
			added = p.ZAdd(ctx, ids, redis.Z{Score: now, Member: id})
			p.Incr(ctx, "feed.publishes:"+feed)
			p.HSet(ctx, items, id, item)
			return nil
		})
		return err
	}, ids)
	if err != nil {
		return "", err
	}
	ch := "feed.edit:"
	if added.Val() == 1 {
		ch = "feed.publish:"
	}
	return id, rdb.Publish(ctx, ch+feed, id+"\x00"+string(item)).Err()
}

// PyRetract retracts an item the way thoonk.py's Feed.retract does.
func PyRetract(ctx context.Context, rdb redis.UniversalClient, feed, id string) error {
	ids := "feed.ids:" + feed
	return rdb.Watch(ctx, func(tx *redis.Tx) error {
		if err := tx.ZRank(ctx, ids, id).Err(); err != nil {
			if errors.Is(err, redis.Nil) {
				return nil
			}
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZRem(ctx, ids, id)
			p.HDel(ctx, "feed.items:"+feed, id)
			p.Publish(ctx, "feed.retract:"+feed, id)
			return nil
		})
		return err
	}, ids)
}

// PyFinish finishes a claimed job the way thoonk.py's Job.finish does
// without a result: the job leaves the claimed set and its item is
// dropped, and nothing is published on job.finish.
func PyFinish(ctx context.Context, rdb redis.UniversalClient, queue, id string) error {
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, "feed.claimed:"+queue, id)
		p.HDel(ctx, "feed.cancelled:"+queue, id)
		p.ZRem(ctx, "feed.published:"+queue, id)
		p.Incr(ctx, "feed.finishes:"+queue)
		p.HDel(ctx, "feed.items:"+queue, id)
		return nil
	})
	return err
}

// Malform registers feeds, named prefix + "cfg-string", "banana",
// "ids-list" and "items-set", whose keys break the schema: a config that
// is a string, a config of an unknown type, a plain feed whose ids are a
// list, a sorted feed whose items are a set (each holding an item "1"
// where its keys allow). It returns their names.
func Malform(t testing.TB, rdb redis.UniversalClient, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	names := []string{prefix + "cfg-string", prefix + "banana", prefix + "ids-list", prefix + "items-set"}
	for _, err := range []error{
		rdb.SAdd(ctx, "feeds", names).Err(),
		rdb.Set(ctx, "feed.config:"+names[0], "oops", 0).Err(),
		rdb.HSet(ctx, "feed.config:"+names[1], "type", "banana").Err(),
		rdb.HSet(ctx, "feed.config:"+names[2], "type", "feed").Err(),
		rdb.RPush(ctx, "feed.ids:"+names[2], "1").Err(),
		rdb.HSet(ctx, "feed.items:"+names[2], "1", "x").Err(),
		rdb.HSet(ctx, "feed.config:"+names[3], "type", "sorted_feed").Err(),
		rdb.SAdd(ctx, "feed.items:"+names[3], "1").Err(),
		rdb.RPush(ctx, "feed.ids:"+names[3], "1").Err(),
	} {
		Must(t, err)
	}
	return names
}
