package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

var tester = core.Actor{Protocol: "core", ID: "tester", Display: "Test Er"}

func testACL() *core.ACL {
	return core.MustACL(
		core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}},
		core.ACLRule{Actors: []string{"core:tester"}, Feeds: []string{"*"}, Allow: []string{"*"}},
		core.ACLRule{Actors: []string{"xmpp:pub@example.org"}, Feeds: []string{"news"}, Allow: []string{"publish"}},
	)
}

func newActions(b *thoonktest.Backend, l *thoonk.Listener, routes ...core.ActionRoute) *core.Actions {
	root, _ := core.ParseYAML("t", nil)
	if err := core.CompileRoutes(routes, root, "routes"); err != nil {
		panic(err)
	}
	return core.NewActions(b.Store, l, testACL(), core.ActionsOptions{
		Queue: "actions", CustomQueue: "custom", Routes: routes, MaxItemBytes: 1024, ResultTTL: time.Minute,
	}, nil)
}

func TestSubmitStoresTheDocumentedJob(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "actions", thoonk.TypeJob, nil)
		b.Create(t, "news", thoonk.TypeFeed, nil)
		a := newActions(b, nil)
		before := time.Now().UTC()
		tk, err := a.Submit(ctx, core.Action{Verb: "publish", Feed: "news", Item: []byte(`{"title":"hi"}`), Actor: tester})
		thoonktest.Must(t, err)
		if tk.Queue != "actions" || len(tk.JobID) != 32 {
			t.Fatalf("ticket %+v", tk)
		}
		raw, err := b.Store.Jobs("actions").Item(ctx, tk.JobID)
		thoonktest.Must(t, err)
		var doc map[string]any
		thoonktest.Must(t, json.Unmarshal(raw, &doc))
		if doc["v"] != 1.0 || doc["verb"] != "publish" || doc["feed"] != "news" || doc["item"] != `{"title":"hi"}` ||
			doc["instance"] != "test-instance" {
			t.Fatalf("job %s", raw)
		}
		actor := doc["actor"].(map[string]any)
		if actor["protocol"] != "core" || actor["id"] != "tester" || actor["display"] != "Test Er" {
			t.Fatalf("actor %v", actor)
		}
		at, err := time.Parse(time.RFC3339Nano, doc["submitted_at"].(string))
		if err != nil || at.Before(before.Add(-time.Second)) {
			t.Fatalf("submitted_at %v", doc["submitted_at"])
		}
		// binary payloads travel as base64
		tk, err = a.Submit(ctx, core.Action{Verb: "publish", Feed: "news", Item: []byte{0xff, 0}, Actor: tester})
		thoonktest.Must(t, err)
		raw, _ = b.Store.Jobs("actions").Item(ctx, tk.JobID)
		j, err := core.DecodeActionJob(raw)
		thoonktest.Must(t, err)
		if j.Item != nil || string(j.Payload()) != "\xff\x00" {
			t.Fatalf("binary job %s", raw)
		}
		if st, _ := a.Status(ctx, tk.Queue, tk.JobID); st.State != thoonk.JobQueued {
			t.Fatalf("status %+v", st)
		}
	})
}

func TestSubmitRefusesBeforeStoring(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "actions", thoonk.TypeJob, nil)
		b.Create(t, "news", thoonk.TypeFeed, nil)
		b.Create(t, "list", thoonk.TypeSorted, nil)
		a := newActions(b, nil)
		stranger := core.Actor{Protocol: "xmpp", ID: "eve@example.org"}
		for _, tc := range []struct {
			name string
			act  core.Action
			want error
		}{
			{"denied", core.Action{Verb: "publish", Feed: "news", Actor: stranger}, core.ErrDenied},
			{"denied on a missing feed leaks nothing", core.Action{Verb: "publish", Feed: "nope", Actor: stranger}, core.ErrDenied},
			{"unknown feed", core.Action{Verb: "publish", Feed: "nope", Actor: tester}, thoonk.ErrFeedNotFound},
			{"too large", core.Action{Verb: "publish", Feed: "news", Item: make([]byte, 1025), Actor: tester}, core.ErrTooLarge},
			{"edit needs an id", core.Action{Verb: "edit", Feed: "news", Actor: tester}, thoonk.ErrInvalid},
			{"bad verb", core.Action{Verb: "Drop Table", Feed: "news", Actor: tester}, thoonk.ErrInvalid},
			{"bad feed name", core.Action{Verb: "publish", Feed: "a\nb", Actor: tester}, thoonk.ErrInvalid},
			{"no actor", core.Action{Verb: "publish", Feed: "news"}, thoonk.ErrInvalid},
			{"move on a plain feed", core.Action{Verb: "move", Feed: "news", ID: "1", Position: ":end", Actor: tester}, thoonk.ErrWrongType},
			{"move without position", core.Action{Verb: "move", Feed: "list", ID: "1", Actor: tester}, thoonk.ErrInvalid},
			{"publish into a job feed", core.Action{Verb: "publish", Feed: "actions", Actor: tester}, thoonk.ErrWrongType},
			{"too many arguments", core.Action{Verb: "ship", Feed: "news", Args: make([]string, core.MaxArgs+1), Actor: tester}, core.ErrTooLarge},
			{"a huge argument", core.Action{Verb: "ship", Feed: "news", Args: []string{strings.Repeat("x", 2000)}, Actor: tester}, core.ErrTooLarge},
			{"an argument with CR/LF", core.Action{Verb: "ship", Feed: "news", Args: []string{"a\r\nJOIN #x"}, Actor: tester}, thoonk.ErrInvalid},
			{"a bad position on a custom verb", core.Action{Verb: "ship", Feed: "news", Position: "\r\nx", Actor: tester}, thoonk.ErrInvalid},
			{"a display name with controls", core.Action{Verb: "publish", Feed: "news", Actor: core.Actor{Protocol: "core", ID: "tester", Display: "a\x00b"}}, thoonk.ErrInvalid},
		} {
			if _, err := a.Submit(ctx, tc.act); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		if n, _ := b.RDB.HLen(ctx, "feed.items:actions").Result(); n != 0 {
			t.Fatalf("%d jobs stored by refused actions", n)
		}
	})
}

func TestActionRoutes(t *testing.T) {
	b := thoonktest.Mini(t)
	a := newActions(b, nil,
		core.ActionRoute{Feeds: []string{"deploys:*"}, Verbs: []string{"ship"}, Queue: "deploy.actions"},
		core.ActionRoute{Feeds: []string{"team:*"}, Queue: "team.actions"},
	)
	for _, tc := range [][3]string{
		{"deploys:web", "ship", "deploy.actions"},
		{"deploys:web", "publish", "actions"},
		{"team:1", "publish", "team.actions"},
		{"news", "ship", "custom"},
		{"news", "retract", "actions"},
	} {
		if got := a.Queue(tc[0], tc[1]); got != tc[2] {
			t.Errorf("Queue(%s, %s) = %s, want %s", tc[0], tc[1], got, tc[2])
		}
	}
	if qs := a.Queues(); !slices.Equal(qs, []string{"actions", "custom", "deploy.actions", "team.actions"}) {
		t.Errorf("queues %v", qs)
	}
}

// The built-in worker applies each standard verb and answers like HTTP.
func TestWorkerApply(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "news", thoonk.TypeFeed, nil)
		b.Create(t, "list", thoonk.TypeSorted, nil)
		b.Create(t, "tasks", thoonk.TypeFeed, nil)
		schema := filepath.Join(t.TempDir(), "task.json")
		thoonktest.Must(t, os.WriteFile(schema, []byte(`{"type":"object","required":["title"],"properties":{"title":{"type":"string"}}}`), 0o644))
		root, _ := core.ParseYAML("t", nil)
		schemas, err := core.CompileSchemas([]core.SchemaRule{{Feeds: []string{"tasks"}, File: schema}}, root, "schemas")
		thoonktest.Must(t, err)
		w := core.NewWorker(b.Store, core.WorkerOptions{ACL: testACL(), Schemas: schemas})
		job := func(a core.Action) []byte {
			if a.Actor == (core.Actor{}) {
				a.Actor = tester
			}
			return core.EncodeActionJob(a, "i", time.Now())
		}
		apply := func(payload []byte) core.Result {
			t.Helper()
			r, err := w.Apply(ctx, payload)
			thoonktest.Must(t, err)
			return r
		}
		r := apply(job(core.Action{Verb: "publish", Feed: "news", Item: []byte("one"), ID: "n1"}))
		if !r.OK || r.Code != 201 || r.ID != "n1" {
			t.Fatalf("publish %+v", r)
		}
		if r := apply(job(core.Action{Verb: "publish", Feed: "news", Item: []byte("one again"), ID: "n1"})); r.Code != 200 {
			t.Fatalf("republish %+v", r)
		}
		// a publisher without the edit grant cannot overwrite an existing id
		publisher := core.Actor{Protocol: "xmpp", ID: "pub@example.org"}
		if r := apply(job(core.Action{Verb: "publish", Feed: "news", Item: []byte("hijack"), ID: "n1", Actor: publisher})); r.Code != 409 {
			t.Fatalf("republish without edit: %+v", r)
		}
		if r := apply(job(core.Action{Verb: "publish", Feed: "news", Item: []byte("mine"), ID: "fresh", Actor: publisher})); r.Code != 201 {
			t.Fatalf("publish of a new id without edit: %+v", r)
		}
		if r := apply(job(core.Action{Verb: "edit", Feed: "news", ID: "n1", Item: []byte("edited")})); r.Code != 200 {
			t.Fatalf("edit %+v", r)
		}
		if got, _ := b.Store.Feed("news").Get(ctx, "n1"); string(got) != "edited" {
			t.Fatalf("item after edit %q", got)
		}
		for _, tc := range []struct {
			act  core.Action
			code int
		}{
			{core.Action{Verb: "edit", Feed: "news", ID: "ghost", Item: []byte("x")}, 404},
			{core.Action{Verb: "retract", Feed: "news", ID: "ghost"}, 404},
			{core.Action{Verb: "publish", Feed: "gone", Item: []byte("x")}, 404},
			{core.Action{Verb: "move", Feed: "news", ID: "n1", Position: ":end"}, 422},
			{core.Action{Verb: "ship", Feed: "news", Args: []string{"42"}}, 501},
			{core.Action{Verb: "publish", Feed: "news", Actor: core.Actor{Protocol: "irc", ID: "eve!e@h"}}, 403},
			{core.Action{Verb: "publish", Feed: "tasks", Item: []byte(`{"name":"no title"}`)}, 422},
			{core.Action{Verb: "publish", Feed: "tasks", Item: []byte(`not json`)}, 422},
			{core.Action{Verb: "publish", Feed: "tasks", Item: []byte(`{"title":"ok"}`)}, 201},
		} {
			if r := apply(job(tc.act)); r.Code != tc.code || r.OK != (tc.code < 300) || (!r.OK && r.Error == "") {
				t.Errorf("%s on %s: %+v, want code %d", tc.act.Verb, tc.act.Feed, r, tc.code)
			}
		}
		if r := apply([]byte("{not json")); r.Code != 400 {
			t.Errorf("garbage job %+v", r)
		}
		if r := apply([]byte(`{"v":1,"verb":"publish","feed":"news"}`)); r.Code != 400 {
			t.Errorf("job without actor %+v", r)
		}
		r = apply(job(core.Action{Verb: "publish", Feed: "list", Item: []byte("a")}))
		first := r.ID
		r = apply(job(core.Action{Verb: "publish", Feed: "list", Item: []byte("b"), Position: ":" + first}))
		if r.Code != 201 {
			t.Fatalf("publish before %+v", r)
		}
		if ids, _ := b.Store.Sorted("list").IDs(ctx); len(ids) != 2 || ids[0] != r.ID {
			t.Fatalf("order %v", ids)
		}
		if r := apply(job(core.Action{Verb: "move", Feed: "list", ID: first, Position: "begin:"})); r.Code != 200 {
			t.Fatalf("move %+v", r)
		}
		if r := apply(job(core.Action{Verb: "move", Feed: "list", ID: first, Position: ":99"})); r.Code != 409 {
			t.Fatalf("move before a missing item %+v", r)
		}
		if r := apply(job(core.Action{Verb: "retract", Feed: "news", ID: "n1"})); r.Code != 200 {
			t.Fatalf("retract %+v", r)
		}
	})
}

// A worker that cannot reach Redis reports a transient failure, so the job
// runs again instead of being finished with an error.
func TestWorkerTransientFailure(t *testing.T) {
	b := thoonktest.Mini(t)
	b.Create(t, "news", thoonk.TypeFeed, nil)
	w := core.NewWorker(b.Store, core.WorkerOptions{ACL: testACL()})
	b.RDB.Close()
	_, err := w.Apply(context.Background(), core.EncodeActionJob(core.Action{Verb: "publish", Feed: "news", Actor: tester}, "i", time.Now()))
	if err == nil {
		t.Fatal("no transient error with Redis closed")
	}
}

// End to end in one process: submit, the worker applies, the submitter
// gets the result and the feed event arrives.
func TestSubmitWaitWithWorker(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "actions", thoonk.TypeJob, nil)
		b.Create(t, "news", thoonk.TypeFeed, nil)
		l := thoonktest.Listen(t, b.Store, thoonk.ListenerOptions{})
		sub := l.SubscribeFeed("news", 0)
		defer sub.Close()
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = core.NewWorker(b.Store, core.WorkerOptions{Queues: []string{"actions"}, Concurrency: 2, ACL: testACL()}).Run(wctx)
		}()
		defer func() { stop(); <-done }()
		a := newActions(b, l)
		tk, res, err := a.SubmitWait(ctx, core.Action{Verb: "publish", Feed: "news", Item: []byte("hello"), Actor: tester}, 10*time.Second)
		thoonktest.Must(t, err)
		if res == nil || !res.OK || res.Code != 201 || res.ID == "" {
			t.Fatalf("result %+v", res)
		}
		ev := thoonktest.Next(t, sub)
		if ev.Type != thoonk.EventPublish || ev.ID != res.ID || string(ev.Item) != "hello" {
			t.Fatalf("event %v %q %q", ev.Type, ev.ID, ev.Item)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, err := a.Status(ctx, tk.Queue, tk.JobID)
			thoonktest.Must(t, err)
			if st.Result != nil {
				if st.State != thoonk.JobFinished || st.Result.ID != res.ID {
					t.Fatalf("status %+v", st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never got the result: %+v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestStatusNamesTheSubmitter(t *testing.T) {
	b := thoonktest.Mini(t)
	ctx := thoonktest.Ctx(t)
	b.Create(t, "actions", thoonk.TypeJob, nil)
	b.Create(t, "news", thoonk.TypeFeed, nil)
	a := newActions(b, nil)
	tk, err := a.Submit(ctx, core.Action{Verb: "publish", Feed: "news", Item: []byte("x"), Actor: tester})
	thoonktest.Must(t, err)
	st, err := a.Status(ctx, tk.Queue, tk.JobID)
	thoonktest.Must(t, err)
	if st.Submitter != "core:tester" {
		t.Fatalf("submitter %q", st.Submitter)
	}
	b.Create(t, "app.jobs", thoonk.TypeJob, nil)
	if _, err := a.Status(ctx, "app.jobs", tk.JobID); !errors.Is(err, thoonk.ErrNotFound) {
		t.Fatalf("status on a job feed that is no action queue: %v", err)
	}
}

// A publish on a plain feed gets its item id when it is stored, so its
// job publishes one item however often it runs; sorted feeds number
// their items themselves.
func TestSubmitFixesThePublishID(t *testing.T) {
	b := thoonktest.Mini(t)
	ctx := thoonktest.Ctx(t)
	b.Create(t, "actions", thoonk.TypeJob, nil)
	b.Create(t, "news", thoonk.TypeFeed, nil)
	b.Create(t, "list", thoonk.TypeSorted, nil)
	a := newActions(b, nil)
	for feed, wantID := range map[string]bool{"news": true, "list": false} {
		tk, err := a.Submit(ctx, core.Action{Verb: "publish", Feed: feed, Item: []byte("x"), Actor: tester})
		thoonktest.Must(t, err)
		raw, _ := b.Store.Jobs("actions").Item(ctx, tk.JobID)
		j, err := core.DecodeActionJob(raw)
		thoonktest.Must(t, err)
		if (len(j.ID) == 32 && j.Create) != wantID || (!wantID && j.ID != "") {
			t.Errorf("%s: job %s", feed, raw)
		}
	}
}

// An idempotency key makes a repeated submit store one job, and a key
// reused for another request is refused.
func TestSubmitWithAnIdempotencyKey(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "actions", thoonk.TypeJob, nil)
		b.Create(t, "news", thoonk.TypeFeed, nil)
		a := newActions(b, nil)
		act := core.Action{Verb: "publish", Feed: "news", Item: []byte("x"), Actor: tester}
		first, err := a.SubmitWith(ctx, act, core.SubmitOptions{Key: "k", Fingerprint: "f"})
		thoonktest.Must(t, err)
		again, err := a.SubmitWith(ctx, act, core.SubmitOptions{Key: "k", Fingerprint: "f"})
		thoonktest.Must(t, err)
		if first.Replayed || !again.Replayed || again.Ticket != first.Ticket {
			t.Fatalf("first %+v, again %+v", first, again)
		}
		other, err := a.SubmitWith(ctx, act, core.SubmitOptions{Key: "k", Fingerprint: "g"})
		if !errors.Is(err, core.ErrKeyReused) || !core.Refused(err) {
			t.Fatalf("key reused: %+v %v", other, err)
		}
		// another actor's key is another key
		act.Actor = core.Actor{Protocol: "core", ID: "someone"}
		thoonktest.Must(t, b.Store.Jobs("actions").Retract(ctx, first.JobID))
		if n, _ := b.RDB.Get(ctx, "feed.publishes:actions").Int(); n != 1 {
			t.Fatalf("%d jobs stored", n)
		}
	})
}

// The worker finishes a job with its change in one step, refuses an edit
// based on a stale revision with 412 and the current revision, and keeps
// the failure count of a job that cannot run.
func TestWorkerHandle(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 100, MaxItemBytes: 100}})
		thoonktest.Must(t, s.Create(ctx, "actions", thoonk.TypeJob, nil))
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		a := core.NewActions(s, nil, testACL(), core.ActionsOptions{Queue: "actions", MaxItemBytes: 1024, ResultTTL: time.Minute}, nil)
		w := core.NewWorker(s, core.WorkerOptions{Queues: []string{"actions"}, ACL: testACL()})
		jobs := s.Jobs("actions")
		run := func(act core.Action) core.JobStatus {
			t.Helper()
			act.Actor = tester
			tk, err := a.Submit(ctx, act)
			thoonktest.Must(t, err)
			job, err := jobs.Get(ctx, time.Second)
			thoonktest.Must(t, err)
			if _, more := w.Handle(ctx, jobs, job, false); more {
				t.Fatal("claimed a next job it was not asked for")
			}
			st, err := a.Status(ctx, tk.Queue, tk.JobID)
			thoonktest.Must(t, err)
			return st
		}
		st := run(core.Action{Verb: "publish", Feed: "news", Item: []byte("v1")})
		if st.State != thoonk.JobFinished || st.Result == nil || st.Result.Code != 201 || st.Result.Rev == "" {
			t.Fatalf("publish %+v", st)
		}
		id, v1 := st.Result.ID, st.Result.Rev
		st = run(core.Action{Verb: "edit", Feed: "news", ID: id, Item: []byte("v2"), ExpectRev: v1})
		if st.Result == nil || st.Result.Code != 200 {
			t.Fatalf("edit at the current revision %+v", st.Result)
		}
		v2 := st.Result.Rev
		st = run(core.Action{Verb: "edit", Feed: "news", ID: id, Item: []byte("v3"), ExpectRev: v1})
		if st.Result == nil || st.Result.Code != 412 || st.Result.Rev != v2 {
			t.Fatalf("edit at a stale revision %+v", st.Result)
		}
		if got, _ := s.Feed("news").Get(ctx, id); string(got) != "v2" {
			t.Fatalf("item %q after a stale edit", got)
		}
	})
}
