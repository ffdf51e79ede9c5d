package atom

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// pipelineHook is a redis.Hook that only looks at pipelines.
type pipelineHook func(next redis.ProcessPipelineHook) redis.ProcessPipelineHook

func (h pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return h(next)
}

// keyOf returns the key a command works on, or "".
func keyOf(c redis.Cmder) string {
	if args := c.Args(); len(args) > 1 {
		k, _ := args[1].(string)
		return k
	}
	return ""
}

// recordsTimes reports whether a pipeline is the adapter recording events.
func recordsTimes(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if strings.HasPrefix(keyOf(c), "feedbridge.atom.") && !slices.Contains([]string{"hget", "zrevrangebyscore"}, c.Name()) {
			return true // a write (a render's reads go alongside in the same kind of pipeline)
		}
	}
	return false
}

// A Redis error reply recording one event (here WRONGTYPE, from a foreign
// value under the adapter's key) cannot be fixed by retrying: the event is
// logged and skipped, the adapter stays up and keeps its cache current,
// and the events behind it are recorded.
func TestRecordSkipsEventsRedisRefuses(t *testing.T) {
	h := newHarness(t, "")
	ctx := context.Background()
	h.create("ok", thoonk.TypeFeed, nil)
	h.create("broken", thoonk.TypeFeed, nil)
	h.publish("ok", "1", "first")
	h.settle("/atom/ok")
	if err := h.rdb.Set(ctx, prefixTimes+"broken", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	h.publish("broken", "x", "refused")
	h.publish("ok", "2", "second")
	h.eventually("ok's new item is recorded after broken's refused event", func() bool {
		return h.rdb.HExists(ctx, prefixTimes+"ok", "u:2").Val()
	})
	if st := h.bridge.hub.States()["atom"]; st.State != core.StateUp || st.LastError != "" {
		t.Fatalf("after a refused event the adapter is %s (%s), want up", st.State, st.LastError)
	}
	h.settle("/atom/ok") // the cache is kept current, so it is used
	if d, _ := h.atomOf("/atom/ok"); len(d.Entries) != 2 {
		t.Fatalf("ok shows %v", d.ids())
	}
	if logs := h.logs.String(); !strings.Contains(logs, "Redis refused to record a feed event") || !strings.Contains(logs, "feed=broken") ||
		!strings.Contains(logs, "WRONGTYPE") {
		t.Fatalf("the refused event is not logged with its feed and error:\n%s", logs)
	}
	if err := h.rdb.Del(ctx, prefixTimes+"broken").Err(); err != nil {
		t.Fatal(err)
	}
	h.publish("broken", "y", "recorded")
	h.eventually("broken's next event is recorded", func() bool {
		return h.rdb.HExists(ctx, prefixTimes+"broken", "u:y").Val()
	})
}

// While Redis cannot be reached for the adapter's writes (the connection
// fails), recording is retried with backoff, the adapter reports
// reconnecting, and the changes of every feed still show: the cache, which
// the blocked event loop cannot keep current, is bypassed. Once Redis
// answers again the event is recorded and the cache is used again.
func TestRecordRetriesConnectionFailures(t *testing.T) {
	var failing atomic.Bool
	cut := pipelineHook(func(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
		return func(ctx context.Context, cmds []redis.Cmder) error {
			if !failing.Load() || !recordsTimes(cmds) {
				return next(ctx, cmds)
			}
			err := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
	})
	h := newHarness(t, "", cut)
	ctx := context.Background()
	h.create("ok", thoonk.TypeFeed, nil)
	h.publish("ok", "1", "first")
	h.settle("/atom/ok")
	failing.Store(true)
	h.publish("ok", "2", "second")
	h.eventually("the adapter reports the failure", func() bool {
		return h.bridge.hub.States()["atom"].State == core.StateReconnecting
	})
	h.publish("ok", "3", "third")
	h.eventually("new items show while events cannot be recorded", func() bool {
		d, _ := h.atomOf("/atom/ok")
		return len(d.Entries) == 3
	})
	failing.Store(false)
	h.eventually("the events are recorded once Redis answers", func() bool {
		return h.rdb.HExists(ctx, prefixTimes+"ok", "u:2").Val() && h.rdb.HExists(ctx, prefixTimes+"ok", "u:3").Val()
	})
	h.eventually("the adapter is up again", func() bool { return h.bridge.hub.States()["atom"].State == core.StateUp })
	h.settle("/atom/ok") // documents are cached again
}

// Events queued while the adapter records others are recorded together,
// in one round trip to Redis, not one round trip each.
func TestRunRecordsQueuedEventsInOneRoundTrip(t *testing.T) {
	var rounds atomic.Int32
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	counter := pipelineHook(func(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
		return func(ctx context.Context, cmds []redis.Cmder) error {
			if recordsTimes(cmds) {
				rounds.Add(1)
				if hold.CompareAndSwap(true, false) {
					close(held)
					<-release
				}
			}
			return next(ctx, cmds)
		}
	})
	h := newHarness(t, "", counter)
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})
	ctx := context.Background()
	h.create("many", thoonk.TypeFeed, nil)
	h.eventually("the feed's creation is recorded", func() bool { return h.rdb.HExists(ctx, prefixTimes+"many", "c").Val() })
	// The listener queues every event for the adapter before it queues it
	// for this subscription of one feed's journal (the events the adapter
	// records; a schema event comes before its journal entry's).
	sub := h.bridge.hub.Events.SubscribeWith(thoonk.SubscribeOptions{Feed: "many", Queue: 100, Journal: true})
	defer sub.Close()
	hold.Store(true)
	h.publish("many", "first", "held")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first publish was never recorded")
	}
	before := rounds.Load()
	const queued = 50
	for i := range queued {
		h.publish("many", fmt.Sprint("i", i), "queued")
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range 1 + queued {
		if _, err := sub.Next(wctx); err != nil {
			t.Fatal("the events never arrived: ", err)
		}
	}
	released = true
	close(release)
	h.eventually("every item's times are recorded", func() bool {
		return h.rdb.HLen(ctx, prefixTimes+"many").Val() == 1+2*(1+queued) // c, and p: and u: per item
	})
	if n := rounds.Load() - before; n != 1 {
		t.Fatalf("%d queued events took %d round trips to record, want 1", queued, n)
	}
}

// A feed deleted while a render reads it (its config read sees it gone,
// whether its page read came before or after) is a 404, the same as a
// feed that never existed, not a 503.
func TestFeedDeletedWhileRenderingIs404(t *testing.T) {
	var armed atomic.Bool
	var deleted atomic.Pointer[func()]
	deleter := pipelineHook(func(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
		return func(ctx context.Context, cmds []redis.Cmder) error {
			if len(cmds) > 0 && keyOf(cmds[0]) == "feed.config:gone" && armed.CompareAndSwap(true, false) {
				(*deleted.Load())()
			}
			return next(ctx, cmds)
		}
	})
	h := newHarness(t, "", deleter)
	h.create("gone", thoonk.TypeFeed, nil)
	h.publish("gone", "1", "soon deleted")
	var delErr error
	del := func() { delErr = h.store.Delete(context.Background(), "gone") }
	deleted.Store(&del)
	armed.Store(true)
	r, body := h.get("/atom/gone")
	if armed.Load() || delErr != nil {
		t.Fatalf("the feed was not deleted while rendering: %v", delErr)
	}
	_, never := h.get("/atom/never")
	if r.StatusCode != 404 || string(body) != string(never) {
		t.Fatalf("a feed deleted while rendering: %s %s; a feed that never existed: %s", r.Status, body, never)
	}
}

// reply is an error reply as Redis sends them (go-redis' own type is
// internal).
type reply string

func (r reply) Error() string { return string(r) }
func (reply) RedisError()     {}

func TestPermanentErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), true},
		{reply("ERR syntax error"), true},
		{fmt.Errorf("record: %w", reply("WRONGTYPE x")), true},
		{reply("LOADING Redis is loading the dataset in memory"), false},
		{reply("READONLY You can't write against a read only replica."), false},
		{reply("CLUSTERDOWN The cluster is down"), false},
		{reply("OOM command not allowed when used memory > 'maxmemory'."), false},
		{reply("ERR max number of clients reached"), false},
		{redis.Nil, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{context.DeadlineExceeded, false},
		{errors.New("redis: client is closed"), false},
	} {
		if got := permanent(c.err); got != c.want {
			t.Errorf("permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A sorted feed's item rendered before its publish was recorded (another
// process renders first, or the render wins the race with the event) is
// shown with its publish time unknown; once the journal's publish is
// recorded the item has its publish time, Redis' time of the change, the
// same whichever process records it.
func TestPublishRecordedAfterARender(t *testing.T) {
	h := newHarness(t, "")
	ctx := context.Background()
	h.create("list", thoonk.TypeSorted, nil)
	id, err := h.store.Sorted("list").Append(ctx, []byte(`{"title":"early"}`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := readTimes(ctx, h.rdb, "list", []string{id}, true, 0, now); err != nil { // the render's fill
		t.Fatal(err)
	}
	es, _, err := h.store.Journal("list").Read(ctx, thoonk.RevStart, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("journal %v %v", es, err)
	}
	ev := es[0].Event("list")
	ev.At = now.Add(time.Hour) // the listener's clock plays no part
	if _, _, err := recordEvents(ctx, h.rdb, []thoonk.Event{ev}, 0); err != nil {
		t.Fatal(err)
	}
	ft, err := readTimes(ctx, h.rdb, "list", []string{id}, true, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := thoonk.RevTime(ev.Rev); !ft.items[0].published.Equal(want) {
		t.Fatalf("published %v, want the journal's %v", ft.items[0].published, want)
	}
}
