package thoonk_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// exampleStore opens a store on an in-process Redis; a real program dials
// its own, e.g. thoonk.NewRedisClient("redis://localhost:6379", "single", 0).
func exampleStore() (*thoonk.Store, func()) {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	if err != nil {
		panic(err)
	}
	return s, func() { rdb.Close(); m.Close() }
}

// Publish items to a plain feed and read them back, newest first.
func Example_publishAndRead() {
	s, done := exampleStore()
	defer done()
	ctx := context.Background()

	if err := s.Create(ctx, "news", thoonk.TypeFeed, map[string]string{"max_length": "100"}); err != nil {
		panic(err)
	}
	news := s.Feed("news")
	for _, text := range []string{"first", "second"} {
		if _, err := news.Publish(ctx, []byte(text), ""); err != nil {
			panic(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct publish times
	}
	// an existing id published again is an edit
	r, _ := news.Publish(ctx, []byte("third"), "item-3")
	fmt.Println("new:", r.New)
	r, _ = news.Publish(ctx, []byte("third, edited"), "item-3")
	fmt.Println("new:", r.New)

	page, err := news.Page(ctx, thoonk.PageRequest{Limit: 10})
	if err != nil {
		panic(err)
	}
	for _, it := range page.Items {
		fmt.Printf("%s\n", it.Data)
	}
	// Output:
	// new: true
	// new: false
	// third, edited
	// second
	// first
}

// A worker claims jobs, finishes them with a result, and gives back the
// ones it fails: they run again, and a person can retry a stalled one.
func Example_worker() {
	s, done := exampleStore()
	defer done()
	ctx := context.Background()

	if err := s.Create(ctx, "mail", thoonk.TypeJob, map[string]string{thoonk.ConfigJobRetries: "1"}); err != nil {
		panic(err)
	}
	jobs := s.Jobs("mail")
	id, _ := jobs.Put(ctx, []byte(`{"to":"alice"}`), thoonk.PutOptions{})

	job, err := jobs.Get(ctx, time.Second) // claimed: in flight
	if err != nil {
		panic(err)
	}
	fmt.Printf("claimed %s\n", job.Item)
	res, _ := jobs.Cancel(ctx, job.ID) // failed once: available again
	fmt.Println("cancelled:", res.Count, "stalled:", res.Stalled)

	job, _ = jobs.Get(ctx, time.Second)
	res, _ = jobs.Cancel(ctx, job.ID) // over job_max_retries: stalled
	fmt.Println("cancelled:", res.Count, "stalled:", res.Stalled)

	_ = jobs.Retry(ctx, id) // a person looked into it
	job, _ = jobs.Get(ctx, time.Second)
	_ = jobs.FinishWithResult(ctx, job.ID, []byte("sent"))
	st, _ := jobs.State(ctx, id)
	fmt.Println("state:", st.State)
	// Output:
	// claimed {"to":"alice"}
	// cancelled: 1 stalled: false
	// cancelled: 2 stalled: true
	// state: unknown
}

// Follow a feed's live events.
func Example_subscribe() {
	s, done := exampleStore()
	defer done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	l := thoonk.NewListener(s, thoonk.ListenerOptions{})
	go func() { _ = l.Run(ctx) }()
	if err := l.WaitConnected(ctx); err != nil {
		panic(err)
	}
	sub := l.SubscribeFeed("news", 64)
	defer sub.Close()

	_ = s.Create(ctx, "news", thoonk.TypeFeed, nil)
	_, _ = s.Feed("news").Publish(ctx, []byte("hello"), "a")
	_ = s.Feed("news").Retract(ctx, "a")

	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			panic(err)
		}
		switch ev.Type {
		case thoonk.EventResync:
			// reload from Redis: events may have been missed
		case thoonk.EventPublish, thoonk.EventEdit, thoonk.EventRetract:
			fmt.Printf("%s %s %q\n", ev.Type, ev.ID, ev.Item)
		}
		if ev.Type == thoonk.EventRetract {
			return
		}
	}
	// Output:
	// publish a "hello"
	// retract a ""
}
