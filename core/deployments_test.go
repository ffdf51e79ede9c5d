package core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// exercise runs publish, events, a job round trip and paging on a store,
// with hash-tagged names (required on Cluster).
func exercise(t *testing.T, s *core.Store) {
	t.Helper()
	ctx := ctxT(t)
	l := core.NewListener(s, core.ListenerOptions{})
	lctx, cancel := ctxWithCancel(t)
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(lctx) }()
	defer func() { cancel(); <-done }()
	must(t, l.WaitConnected(ctx))
	sub := l.SubscribePattern(core.MustPattern("{team}:*"), 0)
	defer sub.Close()

	must(t, s.Create(ctx, "{team}:news", core.TypeFeed, nil))
	must(t, s.Create(ctx, "{team}:jobs", core.TypeJob, nil))
	r, err := s.Feed("{team}:news").Publish(ctx, []byte("hello"), "")
	must(t, err)
	for {
		ev := next(t, sub)
		if ev.Type == core.EventPublish {
			if ev.ID != r.ID || ev.Feed != "{team}:news" {
				t.Fatalf("event %+v", ev)
			}
			break
		}
	}
	p, err := s.Page(ctx, "{team}:news", core.PageRequest{})
	must(t, err)
	if len(p.Items) != 1 || p.Items[0].ID != r.ID {
		t.Fatalf("page %+v", p)
	}
	j := s.Jobs("{team}:jobs")
	id, err := j.Put(ctx, []byte("work"), core.PutOptions{RecordTTL: time.Minute})
	must(t, err)
	w := l.Expect("{team}:jobs", id)
	job, err := j.Get(ctx, 5*time.Second)
	must(t, err)
	must(t, j.FinishWithResult(ctx, job.ID, []byte("done")))
	res, err := w.Wait(ctx)
	must(t, err)
	if string(res) != "done" {
		t.Fatalf("result %q", res)
	}
	must(t, s.Delete(ctx, "{team}:news"))
}

func TestRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t, 3)
	rdb, err := core.NewRedisClient("redis://"+c.Addrs[0]+"?addr="+c.Addrs[1], core.RedisCluster, 0)
	must(t, err)
	defer rdb.Close()
	s, err := core.NewStore(rdb, core.StoreOptions{})
	must(t, err)
	exercise(t, s)
	err = s.Create(ctxT(t), "untagged", core.TypeFeed, nil)
	if !errors.Is(err, core.ErrInvalid) || !strings.Contains(err.Error(), "needs a hash tag") {
		t.Fatalf("untagged name on Cluster: %v", err)
	}
}

func TestRedisSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master)
	rdb, err := core.NewRedisClient(sentinel.URL, core.RedisSentinel, 0)
	must(t, err)
	defer rdb.Close()
	s, err := core.NewStore(rdb, core.StoreOptions{})
	must(t, err)
	exercise(t, s)
	if _, err := core.NewRedisClient("redis://"+sentinel.Addr, core.RedisSentinel, 0); err == nil {
		t.Fatal("a sentinel URL without master_name was accepted")
	}
}
