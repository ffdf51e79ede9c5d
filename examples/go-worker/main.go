// Command go-worker is an example worker for feedbridge written with
// core/thoonk: it serves the custom verb "shout" on the job feed
// feedbridge.custom (where the bridge puts custom verbs) by publishing the
// text it was given, in capitals, to the action's feed.
//
//	go run ./examples/go-worker -redis redis://127.0.0.1:6399
//	curl -H 'Authorization: Bearer feedbridge-local-dev-token' -H 'Prefer: wait=5' \
//	     -H 'Content-Type: application/json' -d '{"args":["hello"]}' \
//	     http://127.0.0.1:8080/v1/feeds/news/actions/shout
//
// The bridge checked the ACL before it stored the job and stamped the
// actor the protocol proved; a real worker applies its own rules to
// job.Actor too. See docs/actions.md for the job and result formats.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6399", "the Redis the bridge uses (the quick start's embedded one by default)")
	queue := flag.String("queue", "feedbridge.custom", "the job feed to serve (actions.custom_queue)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *queue); err != nil {
		fmt.Fprintln(os.Stderr, "go-worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, queue string) error {
	rdb, err := thoonk.NewRedisClient(url, thoonk.RedisSingle, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	if err != nil {
		return err
	}
	jobs := store.Jobs(queue)
	slog.Info("serving the verb shout", "queue", queue)
	for ctx.Err() == nil {
		job, err := jobs.Get(ctx, time.Second)
		switch {
		case errors.Is(err, thoonk.ErrTimeout) || ctx.Err() != nil:
			continue
		case err != nil:
			slog.Warn("take job", "err", err)
			_ = thoonk.Sleep(ctx, time.Second) // Redis is away: try again
			continue
		}
		res, retry := handle(context.WithoutCancel(ctx), store, job.Item)
		if retry != nil { // a transient failure: give the job back (the bridge stalls it after too many)
			_, _ = jobs.Cancel(context.WithoutCancel(ctx), job.ID)
			slog.Warn("job failed; it will run again", "job", job.ID, "err", retry)
			continue
		}
		out, _ := json.Marshal(res)
		if err := jobs.FinishWithResult(context.WithoutCancel(ctx), job.ID, out); err != nil {
			slog.Warn("finish job", "job", job.ID, "err", err)
		}
		slog.Info("job done", "job", job.ID, "code", res.Code)
	}
	return nil
}

// handle applies one action job: shout publishes its text in capitals.
func handle(ctx context.Context, store *thoonk.Store, payload []byte) (core.Result, error) {
	job, err := core.DecodeActionJob(payload)
	if err != nil {
		return core.Result{Code: 400, Error: err.Error()}, nil
	}
	if job.Verb != "shout" {
		return core.Result{Code: 501, Error: "this worker serves shout only"}, nil
	}
	text := strings.Join(job.Args, " ")
	if text == "" {
		text = string(job.Payload())
	}
	if text == "" {
		return core.Result{Code: 400, Error: "shout what? send args or an item"}, nil
	}
	item, _ := json.Marshal(map[string]string{"title": strings.ToUpper(text), "by": job.Actor.String()})
	r, err := store.Feed(job.Feed).Publish(ctx, item, "")
	switch {
	case errors.Is(err, thoonk.ErrNotFound), errors.Is(err, thoonk.ErrWrongType):
		return core.Result{Code: 422, Error: err.Error()}, nil
	case err != nil:
		return core.Result{}, err
	}
	return core.Result{OK: true, Code: 201, ID: r.ID}, nil
}
