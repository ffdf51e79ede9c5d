package core_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
)

// startListener runs a listener for the test and waits until it is subscribed.
func startListener(t *testing.T, b *backend, opts core.ListenerOptions) *core.Listener {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := core.NewListener(b.store, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	must(t, l.WaitConnected(wctx))
	return l
}

// next returns the subscription's next event that is not a connect resync.
func next(t *testing.T, sub *core.Subscription) core.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no event: %v", err)
		}
		if ev.Type == core.EventResync && ev.Reason == core.ResyncConnected {
			continue
		}
		return ev
	}
}

func noEvent(t *testing.T, sub *core.Subscription) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	if ev, ok := sub.TryNext(); ok {
		t.Fatalf("unexpected event %v %q %q", ev.Type, ev.Feed, ev.ID)
	}
}

func TestEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, s := ctxT(t), b.store
		l := startListener(t, b, core.ListenerOptions{})
		all := l.Subscribe(0)
		defer all.Close()
		one := l.SubscribeFeed("team:1:tasks", 0)
		defer one.Close()
		pat := l.SubscribePattern(core.MustPattern("team:*:tasks"), 0)
		defer pat.Close()

		create(t, b, "team:1:tasks", core.TypeSorted, nil)
		create(t, b, "news", core.TypeFeed, nil)
		create(t, b, "jobs", core.TypeJob, nil)
		for _, want := range []core.EventType{core.EventCreate, core.EventConfig} {
			ev := next(t, all)
			if ev.Type != want || ev.Feed != "team:1:tasks" || ev.Instance != "test-instance" {
				t.Fatalf("got %v %q %q, want %v", ev.Type, ev.Feed, ev.Instance, want)
			}
		}
		for range 4 { // news and jobs: create + config
			next(t, all)
		}
		if ev := next(t, one); ev.Type != core.EventCreate {
			t.Fatalf("feed subscription got %v", ev.Type)
		}
		next(t, one)
		next(t, pat)
		next(t, pat)

		id, err := s.Sorted("team:1:tasks").Append(ctx, []byte("task\x00one"))
		must(t, err)
		for _, sub := range []*core.Subscription{all, one, pat} {
			ev := next(t, sub)
			if ev.Type != core.EventPublish || ev.ID != id || string(ev.Item) != "task\x00one" {
				t.Fatalf("publish event %v %q %q", ev.Type, ev.ID, ev.Item)
			}
			ev = next(t, sub)
			if ev.Type != core.EventPosition || ev.Position != ":end" {
				t.Fatalf("position event %v %q", ev.Type, ev.Position)
			}
		}
		_, _ = s.Feed("news").Publish(ctx, []byte("n1"), "n")
		_, _ = s.Feed("news").Publish(ctx, []byte("n2"), "n")
		must(t, s.Feed("news").Retract(ctx, "n"))
		for _, want := range []core.EventType{core.EventPublish, core.EventEdit, core.EventRetract} {
			ev := next(t, all)
			if ev.Type != want || ev.Feed != "news" || ev.ID != "n" {
				t.Fatalf("got %v %q %q, want %v", ev.Type, ev.Feed, ev.ID, want)
			}
		}
		noEvent(t, one)
		noEvent(t, pat)

		_, _ = s.Jobs("jobs").Put(ctx, []byte("j"), core.PutOptions{ID: "j1"})
		_, _ = s.Jobs("jobs").Get(ctx, time.Second)
		must(t, s.Jobs("jobs").FinishWithResult(ctx, "j1", []byte(`{"ok":true}`)))
		if ev := next(t, all); ev.Type != core.EventJobFinish || ev.ID != "j1" || string(ev.Item) != `{"ok":true}` {
			t.Fatalf("job finish event %v %q %q", ev.Type, ev.ID, ev.Item)
		}
		must(t, s.Delete(ctx, "team:1:tasks"))
		if ev := next(t, pat); ev.Type != core.EventDelete || ev.Feed != "team:1:tasks" {
			t.Fatalf("delete event %v %q", ev.Type, ev.Feed)
		}
		// a feed created after the listener started is followed from its
		// first event (miniredis may deliver a channel's and a pattern's
		// messages out of order, so the three are taken in any order)
		create(t, b, "team:2:tasks", core.TypeFeed, nil)
		_, _ = s.Feed("team:2:tasks").Publish(ctx, []byte("x"), "first")
		var got []string
		for range 3 {
			ev := next(t, pat)
			got = append(got, fmt.Sprintf("%v %s", ev.Type, ev.ID))
		}
		slices.Sort(got)
		if want := []string{"config ", "create ", "publish first"}; !slices.Equal(got, want) {
			t.Fatalf("events of a new feed: %q, want %q", got, want)
		}
		var last uint64
		for {
			ev, ok := all.TryNext()
			if !ok {
				break
			}
			if ev.Seq <= last {
				t.Fatalf("seq went from %d to %d", last, ev.Seq)
			}
			last = ev.Seq
		}
	})
}

func TestSubscriptionOverflow(t *testing.T) {
	b := miniBackend(t)
	ctx := ctxT(t)
	l := startListener(t, b, core.ListenerOptions{})
	sub := l.SubscribeFeed("f", 4)
	defer sub.Close()
	create(t, b, "f", core.TypeFeed, nil)
	for i := range 10 {
		_, err := b.store.Feed("f").Publish(ctx, []byte("x"), string(rune('a'+i)))
		must(t, err)
	}
	// wait until the listener has seen all 12 events (create, config, 10 publishes)
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Received < 12 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ev := next(t, sub)
	if ev.Type != core.EventResync || ev.Reason != core.ResyncOverflow {
		t.Fatalf("first event after overflow: %v %v, want resync overflow", ev.Type, ev.Reason)
	}
	if l.Stats().Overflows == 0 {
		t.Fatal("overflow not counted")
	}
	// events after the overflow are kept, in order
	for sub.Len() > 0 {
		ev, _ := sub.TryNext()
		if ev.Type != core.EventPublish {
			t.Fatalf("after the resync: %v", ev.Type)
		}
	}
	_, _ = b.store.Feed("f").Publish(ctx, []byte("x"), "z")
	if ev := next(t, sub); ev.ID != "z" {
		t.Fatalf("live event after catching up: %q", ev.ID)
	}
}

func TestResultWaiter(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, s := ctxT(t), b.store
		l := startListener(t, b, core.ListenerOptions{})
		create(t, b, "jobs", core.TypeJob, nil)
		j := s.Jobs("jobs")
		id := core.NewID()
		w := l.Expect("jobs", id)
		_, err := j.Put(ctx, []byte("work"), core.PutOptions{ID: id, RecordTTL: time.Minute})
		must(t, err)
		go func() {
			job, err := j.Get(ctx, 5*time.Second)
			if err == nil {
				_ = j.FinishWithResult(ctx, job.ID, []byte("done"))
			}
		}()
		res, err := w.Wait(ctx)
		must(t, err)
		if string(res) != "done" {
			t.Fatalf("result %q", res)
		}
		// the listener also records the result for later status reads
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, err := j.State(ctx, id)
			must(t, err)
			if st.HasResult {
				if st.State != core.JobFinished || string(st.Result) != "done" {
					t.Fatalf("state %+v", st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("result never recorded: %+v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}

		w = l.Expect("jobs", "never")
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := w.Wait(short); !errors.Is(err, core.ErrTimeout) {
			t.Fatalf("wait without a result: %v", err)
		}
	})
}

func TestListenerSurvivesRedisRestart(t *testing.T) {
	b := realBackend(t)
	ctx := ctxT(t)
	l := startListener(t, b, core.ListenerOptions{PingInterval: 200 * time.Millisecond,
		Backoff: core.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}})
	sub := l.Subscribe(0)
	defer sub.Close()
	create(t, b, "f", core.TypeFeed, nil)
	next(t, sub)
	next(t, sub)

	b.real.Restart() // all data and the subscription are gone
	ev, err := sub.Next(ctx)
	must(t, err)
	if ev.Type != core.EventResync || ev.Reason != core.ResyncConnected {
		t.Fatalf("after restart: %v %v, want resync", ev.Type, ev.Reason)
	}
	if !l.Connected() || l.Stats().Reconnects != 1 {
		t.Fatalf("connected=%v reconnects=%d", l.Connected(), l.Stats().Reconnects)
	}
	create(t, b, "f", core.TypeFeed, nil)
	_, err = b.store.Feed("f").Publish(ctx, []byte("x"), "after")
	must(t, err)
	next(t, sub)
	next(t, sub)
	if ev := next(t, sub); ev.Type != core.EventPublish || ev.ID != "after" {
		t.Fatalf("live event after restart: %v %q", ev.Type, ev.ID)
	}
}

func TestCloseWakesNext(t *testing.T) {
	b := miniBackend(t)
	l := startListener(t, b, core.ListenerOptions{})
	sub := l.SubscribeFeed("f", 0)
	done := make(chan error, 1)
	go func() {
		_, err := sub.Next(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Next block (if it returns early, the error check below tells)
	sub.Close()
	sub.Close() // twice is fine
	select {
	case err := <-done:
		if !errors.Is(err, core.ErrClosed) {
			t.Fatalf("Next returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next still blocked after Close")
	}
}

// Names written by other programs that could inject protocol commands
// (CR/LF, controls) never reach a consumer.
func TestInvalidNamesAreDropped(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx := ctxT(t)
		l := startListener(t, b, core.ListenerOptions{})
		sub := l.Subscribe(0)
		defer sub.Close()
		must(t, b.rdb.Publish(ctx, "feed.publish:evil\r\nJOIN #x", "1\x00item").Err())
		must(t, b.rdb.Publish(ctx, "feed.publish:news", "bad\nid\x00item").Err())
		must(t, b.rdb.Publish(ctx, "feed.publish:news", "good\x00item").Err())
		if ev := next(t, sub); ev.ID != "good" {
			t.Fatalf("first event %q %q", ev.Feed, ev.ID)
		}
		if n := l.Stats().Invalid; n != 2 {
			t.Fatalf("invalid counted %d, want 2", n)
		}
	})
}

// Jobs that another Thoonk library finishes still get their result
// recorded, for the feeds the listener is told to record.
func TestListenerRecordsForeignResults(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx := ctxT(t)
		create(t, b, "actions", core.TypeJob, nil)
		l := startListener(t, b, core.ListenerOptions{RecordFeeds: func(f string) bool { return f == "actions" }})
		j := b.store.Jobs("actions")
		id, _ := j.Put(ctx, []byte("x"), core.PutOptions{RecordTTL: time.Hour})
		_, _ = j.Get(ctx, time.Second)
		// what thoonk.py's finish does, step by step, with a result
		pipe := b.rdb.TxPipeline()
		pipe.ZRem(ctx, "feed.claimed:actions", id)
		pipe.HDel(ctx, "feed.cancelled:actions", id)
		pipe.ZRem(ctx, "feed.published:actions", id)
		pipe.Incr(ctx, "feed.finishes:actions")
		pipe.HDel(ctx, "feed.items:actions", id)
		pipe.Publish(ctx, "job.finish:actions", id+"\x00foreign result")
		_, err := pipe.Exec(ctx)
		must(t, err)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := j.State(ctx, id)
			must(t, err)
			if st.HasResult {
				if string(st.Result) != "foreign result" {
					t.Fatalf("recorded %q", st.Result)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never recorded: %+v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = l
	})
}

// A pubsub connection killed by the server (not a restart: Redis keeps its
// data) is noticed: consumers are told to resync, then events flow again.
func TestListenerResyncsAfterConnectionKill(t *testing.T) {
	b := realBackend(t)
	ctx := ctxT(t)
	// the kill closes the connection, seen at once; a short ping interval
	// would count a loaded machine's pause as one more reconnect
	l := startListener(t, b, core.ListenerOptions{PingInterval: 2 * time.Second,
		Backoff: core.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	sub := l.SubscribeFeed("f", 0)
	defer sub.Close()
	must(t, b.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	ev, err := sub.Next(ctx)
	must(t, err)
	if ev.Type != core.EventResync || ev.Reason != core.ResyncConnected {
		t.Fatalf("after the kill: %v %v", ev.Type, ev.Reason)
	}
	if n := l.Stats().Reconnects; n != 1 {
		t.Fatalf("the resync came with %d reconnects counted, want 1 (a stale resync from the first connection?)", n)
	}
	create(t, b, "f", core.TypeFeed, nil)
	if _, err := b.store.Feed("f").Publish(ctx, []byte("x"), "after"); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next(t, sub)
		if ev.Type == core.EventPublish {
			if ev.ID != "after" {
				t.Fatalf("event %q", ev.ID)
			}
			break
		}
	}
}
