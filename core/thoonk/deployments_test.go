package thoonk_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// exercise runs publish, events, a job round trip and paging on a store,
// with hash-tagged names (required on Cluster).
func exercise(t *testing.T, s *thoonk.Store) {
	t.Helper()
	ctx := thoonktest.Ctx(t)
	l := thoonk.NewListener(s, thoonk.ListenerOptions{})
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(lctx) }()
	defer func() { cancel(); <-done }()
	thoonktest.Must(t, l.WaitConnected(ctx))
	sub := l.SubscribePattern(thoonk.MustPattern("{team}:*"), 0)
	defer sub.Close()

	thoonktest.Must(t, s.Create(ctx, "{team}:news", thoonk.TypeFeed, nil))
	thoonktest.Must(t, s.Create(ctx, "{team}:jobs", thoonk.TypeJob, nil))
	r, err := s.Feed("{team}:news").Publish(ctx, []byte("hello"), "")
	thoonktest.Must(t, err)
	for {
		ev := thoonktest.Next(t, sub)
		if ev.Type == thoonk.EventPublish {
			if ev.ID != r.ID || ev.Feed != "{team}:news" {
				t.Fatalf("event %+v", ev)
			}
			break
		}
	}
	p, err := s.Page(ctx, "{team}:news", thoonk.PageRequest{})
	thoonktest.Must(t, err)
	if len(p.Items) != 1 || p.Items[0].ID != r.ID {
		t.Fatalf("page %+v", p)
	}
	j := s.Jobs("{team}:jobs")
	id, err := j.Put(ctx, []byte("work"), thoonk.PutOptions{RecordTTL: time.Minute})
	thoonktest.Must(t, err)
	w := l.Expect("{team}:jobs", id)
	job, err := j.Get(ctx, 5*time.Second)
	thoonktest.Must(t, err)
	thoonktest.Must(t, j.FinishWithResult(ctx, job.ID, []byte("done")))
	res, err := w.Wait(ctx)
	thoonktest.Must(t, err)
	if string(res) != "done" {
		t.Fatalf("result %q", res)
	}
	thoonktest.Must(t, s.Delete(ctx, "{team}:news"))
}

func TestRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t, 3)
	rdb, err := thoonk.NewRedisClient("redis://"+c.Addrs[0]+"?addr="+c.Addrs[1], thoonk.RedisCluster, 0)
	thoonktest.Must(t, err)
	defer rdb.Close()
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	thoonktest.Must(t, err)
	exercise(t, s)
	err = s.Create(thoonktest.Ctx(t), "untagged", thoonk.TypeFeed, nil)
	if !errors.Is(err, thoonk.ErrInvalid) || !strings.Contains(err.Error(), "needs a hash tag") {
		t.Fatalf("untagged name on Cluster: %v", err)
	}
}

func TestRedisSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master)
	rdb, err := thoonk.NewRedisClient(sentinel.URL, thoonk.RedisSentinel, 0)
	thoonktest.Must(t, err)
	defer rdb.Close()
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	thoonktest.Must(t, err)
	exercise(t, s)
	if _, err := thoonk.NewRedisClient("redis://"+sentinel.Addr, thoonk.RedisSentinel, 0); err == nil {
		t.Fatal("a sentinel URL without master_name was accepted")
	}
}
