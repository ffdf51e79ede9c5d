package thoonk_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// startListener runs a listener for the test and waits until it is subscribed.

func noEvent(t *testing.T, sub *thoonk.Subscription) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	if ev, ok := sub.TryNext(); ok {
		t.Fatalf("unexpected event %v %q %q", ev.Type, ev.Feed, ev.ID)
	}
}

func TestEvents(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
		all := l.Subscribe(0)
		defer all.Close()
		one := l.SubscribeFeed("team:1:tasks", 0)
		defer one.Close()
		pat := l.SubscribePattern(thoonk.MustPattern("team:*:tasks"), 0)
		defer pat.Close()

		b.Create(t, "team:1:tasks", thoonk.TypeSorted, nil)
		b.Create(t, "news", thoonk.TypeFeed, nil)
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		for _, want := range []thoonk.EventType{thoonk.EventCreate, thoonk.EventConfig} {
			ev := thoonktest.Next(t, all)
			if ev.Type != want || ev.Feed != "team:1:tasks" || ev.Instance != "test-instance" {
				t.Fatalf("got %v %q %q, want %v", ev.Type, ev.Feed, ev.Instance, want)
			}
		}
		for range 4 { // news and jobs: create + config
			thoonktest.Next(t, all)
		}
		if ev := thoonktest.Next(t, one); ev.Type != thoonk.EventCreate {
			t.Fatalf("feed subscription got %v", ev.Type)
		}
		thoonktest.Next(t, one)
		thoonktest.Next(t, pat)
		thoonktest.Next(t, pat)

		id, err := s.Sorted("team:1:tasks").Append(ctx, []byte("task\x00one"))
		thoonktest.Must(t, err)
		for _, sub := range []*thoonk.Subscription{all, one, pat} {
			ev := thoonktest.Next(t, sub)
			if ev.Type != thoonk.EventPublish || ev.ID != id || string(ev.Item) != "task\x00one" {
				t.Fatalf("publish event %v %q %q", ev.Type, ev.ID, ev.Item)
			}
			ev = thoonktest.Next(t, sub)
			if ev.Type != thoonk.EventPosition || ev.Position != ":end" {
				t.Fatalf("position event %v %q", ev.Type, ev.Position)
			}
		}
		_, _ = s.Feed("news").Publish(ctx, []byte("n1"), "n")
		_, _ = s.Feed("news").Publish(ctx, []byte("n2"), "n")
		thoonktest.Must(t, s.Feed("news").Retract(ctx, "n"))
		for _, want := range []thoonk.EventType{thoonk.EventPublish, thoonk.EventEdit, thoonk.EventRetract} {
			ev := thoonktest.Next(t, all)
			if ev.Type != want || ev.Feed != "news" || ev.ID != "n" {
				t.Fatalf("got %v %q %q, want %v", ev.Type, ev.Feed, ev.ID, want)
			}
		}
		noEvent(t, one)
		noEvent(t, pat)

		_, _ = s.Jobs("jobs").Put(ctx, []byte("j"), thoonk.PutOptions{ID: "j1"})
		_, _ = s.Jobs("jobs").Get(ctx, time.Second)
		thoonktest.Must(t, s.Jobs("jobs").FinishWithResult(ctx, "j1", []byte(`{"ok":true}`)))
		if ev := thoonktest.Next(t, all); ev.Type != thoonk.EventJobFinish || ev.ID != "j1" || string(ev.Item) != `{"ok":true}` {
			t.Fatalf("job finish event %v %q %q", ev.Type, ev.ID, ev.Item)
		}
		thoonktest.Must(t, s.Delete(ctx, "team:1:tasks"))
		if ev := thoonktest.Next(t, pat); ev.Type != thoonk.EventDelete || ev.Feed != "team:1:tasks" {
			t.Fatalf("delete event %v %q", ev.Type, ev.Feed)
		}
		// a feed created after the listener started is followed from its
		// first event (miniredis may deliver a channel's and a pattern's
		// messages out of order, so the three are taken in any order)
		b.Create(t, "team:2:tasks", thoonk.TypeFeed, nil)
		_, _ = s.Feed("team:2:tasks").Publish(ctx, []byte("x"), "first")
		var got []string
		for range 3 {
			ev := thoonktest.Next(t, pat)
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
	b := thoonktest.Mini(t)
	ctx := thoonktest.Ctx(t)
	l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
	sub := l.SubscribeFeed("f", 4)
	defer sub.Close()
	b.Create(t, "f", thoonk.TypeFeed, nil)
	for i := range 10 {
		_, err := b.Store.Feed("f").Publish(ctx, []byte("x"), string(rune('a'+i)))
		thoonktest.Must(t, err)
	}
	// wait until the listener has seen all 12 events (create, config, 10 publishes)
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Received < 12 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ev := thoonktest.Next(t, sub)
	if ev.Type != thoonk.EventResync || ev.Reason != thoonk.ResyncOverflow {
		t.Fatalf("first event after overflow: %v %v, want resync overflow", ev.Type, ev.Reason)
	}
	if l.Stats().Overflows == 0 {
		t.Fatal("overflow not counted")
	}
	// events after the overflow are kept, in order
	for sub.Len() > 0 {
		ev, _ := sub.TryNext()
		if ev.Type != thoonk.EventPublish {
			t.Fatalf("after the resync: %v", ev.Type)
		}
	}
	_, _ = b.Store.Feed("f").Publish(ctx, []byte("x"), "z")
	if ev := thoonktest.Next(t, sub); ev.ID != "z" {
		t.Fatalf("live event after catching up: %q", ev.ID)
	}
}

func TestResultWaiter(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		j := s.Jobs("jobs")
		id := thoonk.NewID()
		w := l.Expect("jobs", id)
		_, err := j.Put(ctx, []byte("work"), thoonk.PutOptions{ID: id, RecordTTL: time.Minute})
		thoonktest.Must(t, err)
		go func() {
			job, err := j.Get(ctx, 5*time.Second)
			if err == nil {
				_ = j.FinishWithResult(ctx, job.ID, []byte("done"))
			}
		}()
		res, err := w.Wait(ctx)
		thoonktest.Must(t, err)
		if string(res) != "done" {
			t.Fatalf("result %q", res)
		}
		// the listener also records the result for later status reads
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, err := j.State(ctx, id)
			thoonktest.Must(t, err)
			if st.HasResult {
				if st.State != thoonk.JobFinished || string(st.Result) != "done" {
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
		if _, err := w.Wait(short); !errors.Is(err, thoonk.ErrTimeout) {
			t.Fatalf("wait without a result: %v", err)
		}
	})
}

func TestListenerSurvivesRedisRestart(t *testing.T) {
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{PingInterval: 200 * time.Millisecond,
		Backoff: thoonk.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}})
	sub := l.Subscribe(0)
	defer sub.Close()
	b.Create(t, "f", thoonk.TypeFeed, nil)
	thoonktest.Next(t, sub)
	thoonktest.Next(t, sub)

	b.Real.Restart() // all data and the subscription are gone
	ev, err := sub.Next(ctx)
	thoonktest.Must(t, err)
	if ev.Type != thoonk.EventResync || ev.Reason != thoonk.ResyncConnected {
		t.Fatalf("after restart: %v %v, want resync", ev.Type, ev.Reason)
	}
	if !l.Connected() || l.Stats().Reconnects != 1 {
		t.Fatalf("connected=%v reconnects=%d", l.Connected(), l.Stats().Reconnects)
	}
	b.Create(t, "f", thoonk.TypeFeed, nil)
	_, err = b.Store.Feed("f").Publish(ctx, []byte("x"), "after")
	thoonktest.Must(t, err)
	thoonktest.Next(t, sub)
	thoonktest.Next(t, sub)
	if ev := thoonktest.Next(t, sub); ev.Type != thoonk.EventPublish || ev.ID != "after" {
		t.Fatalf("live event after restart: %v %q", ev.Type, ev.ID)
	}
}

func TestCloseWakesNext(t *testing.T) {
	b := thoonktest.Mini(t)
	l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
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
		if !errors.Is(err, thoonk.ErrClosed) {
			t.Fatalf("Next returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next still blocked after Close")
	}
}

// Names written by other programs that could inject protocol commands
// (CR/LF, controls) never reach a consumer.
func TestInvalidNamesAreDropped(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
		sub := l.Subscribe(0)
		defer sub.Close()
		thoonktest.Must(t, b.RDB.Publish(ctx, "feed.publish:evil\r\nJOIN #x", "1\x00item").Err())
		thoonktest.Must(t, b.RDB.Publish(ctx, "feed.publish:news", "bad\nid\x00item").Err())
		thoonktest.Must(t, b.RDB.Publish(ctx, "feed.publish:news", "good\x00item").Err())
		if ev := thoonktest.Next(t, sub); ev.ID != "good" {
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
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "actions", thoonk.TypeJob, nil)
		l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{RecordFeeds: func(f string) bool { return f == "actions" }})
		j := b.Store.Jobs("actions")
		id, _ := j.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: time.Hour})
		_, _ = j.Get(ctx, time.Second)
		// what thoonk.py's finish does, step by step, with a result
		pipe := b.RDB.TxPipeline()
		pipe.ZRem(ctx, "feed.claimed:actions", id)
		pipe.HDel(ctx, "feed.cancelled:actions", id)
		pipe.ZRem(ctx, "feed.published:actions", id)
		pipe.Incr(ctx, "feed.finishes:actions")
		pipe.HDel(ctx, "feed.items:actions", id)
		pipe.Publish(ctx, "job.finish:actions", id+"\x00foreign result")
		_, err := pipe.Exec(ctx)
		thoonktest.Must(t, err)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := j.State(ctx, id)
			thoonktest.Must(t, err)
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
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	// the kill closes the connection, seen at once; a short ping interval
	// would count a loaded machine's pause as one more reconnect
	l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{PingInterval: 2 * time.Second,
		Backoff: thoonk.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	sub := l.SubscribeFeed("f", 0)
	defer sub.Close()
	thoonktest.Must(t, b.RDB.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	ev, err := sub.Next(ctx)
	thoonktest.Must(t, err)
	if ev.Type != thoonk.EventResync || ev.Reason != thoonk.ResyncConnected {
		t.Fatalf("after the kill: %v %v", ev.Type, ev.Reason)
	}
	if n := l.Stats().Reconnects; n != 1 {
		t.Fatalf("the resync came with %d reconnects counted, want 1 (a stale resync from the first connection?)", n)
	}
	b.Create(t, "f", thoonk.TypeFeed, nil)
	if _, err := b.Store.Feed("f").Publish(ctx, []byte("x"), "after"); err != nil {
		t.Fatal(err)
	}
	for {
		ev := thoonktest.Next(t, sub)
		if ev.Type == thoonk.EventPublish {
			if ev.ID != "after" {
				t.Fatalf("event %q", ev.ID)
			}
			break
		}
	}
}

// A job finished without a result (thoonk.py's finish(id) publishes
// nothing) ends a wait for its result within a second, as finished.
func TestWaitEndsWhenAJobFinishesWithoutAResult(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
		jobs := b.Store.Jobs("jobs")
		for _, record := range []time.Duration{time.Minute, 0} {
			id, _ := jobs.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: record})
			w := l.Expect("jobs", id)
			_, err := jobs.Get(ctx, time.Second)
			thoonktest.Must(t, err)
			thoonktest.Must(t, thoonktest.PyFinish(ctx, b.RDB, "jobs", id))
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = w.Wait(wctx)
			cancel()
			if !errors.Is(err, thoonk.ErrNoResult) {
				t.Fatalf("record %v: wait ended with %v, want ErrNoResult", record, err)
			}
		}
	})
}
