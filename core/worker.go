package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// WorkerOptions configures the built-in worker.
type WorkerOptions struct {
	// Queues are the job feeds to take actions from.
	Queues []string
	// Concurrency is the number of jobs handled at once per queue.
	Concurrency int
	// Schemas validate items by feed; see CompileSchemas.
	Schemas []CompiledSchema
	// ACL is checked again before a job is applied.
	ACL     *ACL
	Log     *slog.Logger
	Metrics *Metrics
}

// CompiledSchema is a JSON Schema applied to the items of matching feeds.
type CompiledSchema struct {
	feeds  []thoonk.Pattern
	schema *jsonschema.Schema
}

// CompileSchemas loads the worker's JSON Schema files; sec and key name
// them in errors.
func CompileSchemas(rules []SchemaRule, sec *Section, key string) ([]CompiledSchema, error) {
	var out []CompiledSchema
	var errs []error
	c := jsonschema.NewCompiler()
	for i, r := range rules {
		at := fmt.Sprintf("%s[%d]", key, i)
		file := r.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(sec.File), file) // relative to the config file
		}
		sch, err := c.Compile(file)
		if err != nil {
			errs = append(errs, sec.Errorf(at+".file", "JSON Schema %q: %v", r.File, err))
			continue
		}
		feeds := r.Feeds
		if len(feeds) == 0 {
			feeds = []string{"*"}
		}
		patterns, perrs := compilePatterns(feeds, sec, at+".feeds")
		errs = append(errs, perrs...)
		out = append(out, CompiledSchema{feeds: patterns, schema: sch})
	}
	return out, errors.Join(errs...)
}

// Worker applies the standard verbs (publish, edit, retract, move) from
// action job feeds and finishes every job with a JSON Result, exactly once
// in effect: the change and the job's finish are one step where the feed
// and the job feed share a Redis slot, and otherwise a job run again after
// a crash finds the change made and finishes with its first outcome (see
// thoonk.Store.ApplyJob). A job it cannot parse or may not apply is
// finished with an error result, never retried; a job that fails on a
// Redis error is given back with a growing delay (the job feed's retry
// backoff), so it runs again until the feed's retry limit stalls it.
type Worker struct {
	s    *thoonk.Store
	opts WorkerOptions
}

// NewWorker returns the built-in worker.
func NewWorker(s *thoonk.Store, opts WorkerOptions) *Worker {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Worker{s: s, opts: opts}
}

// Run takes and applies jobs until ctx ends; jobs in hand are finished
// before it returns.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, q := range w.opts.Queues {
		for range w.opts.Concurrency {
			wg.Go(func() { w.loop(ctx, q) })
		}
	}
	wg.Wait()
	return nil
}

func (w *Worker) loop(ctx context.Context, queue string) {
	jobs := w.s.Jobs(queue)
	attempt := 0
	for ctx.Err() == nil {
		job, err := jobs.Get(ctx, time.Second)
		if errors.Is(err, thoonk.ErrTimeout) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := thoonk.DefaultBackoff.Delay(attempt)
			attempt++
			w.opts.Log.Warn("worker: take job", "queue", queue, "err", err, "retry_in", d.Round(time.Millisecond))
			_ = thoonk.Sleep(ctx, d)
			continue
		}
		attempt = 0
		// while work is queued, each finish claims the next job; a job in
		// hand is finished even when shutdown begins meanwhile
		for more := true; more; {
			job, more = w.Handle(context.WithoutCancel(ctx), jobs, job, ctx.Err() == nil)
		}
	}
}

// Handle applies a claimed job and finishes it (or gives it back to run
// again after a transient failure); with claimNext it also claims the
// next available job, which it returns with more = true.
func (w *Worker) Handle(ctx context.Context, jobs *thoonk.JobFeed, job thoonk.Job, claimNext bool) (next thoonk.Job, more bool) {
	res, applied, err := w.apply(ctx, jobs, job, claimNext)
	switch {
	case err == nil && applied != nil:
		w.opts.Metrics.result(jobs.Name(), applied.Code)
		return applied.Next, applied.HasNext
	case errors.Is(err, thoonk.ErrNotClaimed):
		// it ran too long and was given to another worker, which finishes it
		w.opts.Log.Warn("worker: job no longer claimed; left to the worker that has it", "queue", jobs.Name(), "job", job.ID)
		return thoonk.Job{}, false
	case err != nil:
		cr, ferr := jobs.Fail(ctx, job.ID, err.Error())
		w.opts.Log.Warn("worker: job failed; it will run again", "queue", jobs.Name(), "job", job.ID,
			"err", err, "failures", cr.Count, "stalled", cr.Stalled, "retry_at", cr.RetryAt, "cancel_err", ferr)
		return thoonk.Job{}, false
	}
	if claimNext {
		next, more, err = jobs.FinishAndClaim(ctx, job.ID, res.JSON())
	} else {
		err = jobs.FinishWithResult(ctx, job.ID, res.JSON())
	}
	if err != nil {
		w.opts.Log.Warn("worker: finish job", "queue", jobs.Name(), "job", job.ID, "err", err)
		return thoonk.Job{}, false
	}
	w.opts.Metrics.result(jobs.Name(), res.Code)
	return next, more
}

// apply checks an action job and applies it. It returns either the
// applied change (the job is finished with it), or a refusal to finish
// the job with (applied nil, err nil), or a transient error (Redis
// unreachable) or thoonk.ErrNotClaimed.
func (w *Worker) apply(ctx context.Context, jobs *thoonk.JobFeed, job thoonk.Job, claimNext bool) (Result, *thoonk.Applied, error) {
	j, err := DecodeActionJob(job.Item)
	if err != nil {
		return fail(400, err), nil, nil
	}
	a := j.Action()
	ch, refusal := w.change(a)
	if refusal != nil {
		return *refusal, nil, nil
	}
	applied, err := w.s.ApplyJob(ctx, a.Feed, ch, jobs, job.ID, claimNext)
	if err == nil {
		return Result{}, &applied, nil
	}
	if res, refused := classify(a, err); refused {
		return res, nil, nil
	}
	return Result{}, nil, err
}

// change turns an action into the change to apply, or a refusal.
func (w *Worker) change(a Action) (thoonk.Change, *Result) {
	refuse := func(code int, err error) (thoonk.Change, *Result) {
		r := fail(code, err)
		return thoonk.Change{}, &r
	}
	if !w.opts.ACL.Allowed(a.Actor, a.Feed, a.Verb) {
		return refuse(403, fmt.Errorf("%s may not %s on %q", a.Actor, a.Verb, a.Feed))
	}
	if !slices.Contains(StandardVerbs, a.Verb) {
		return refuse(501, fmt.Errorf("verb %q is not handled by the built-in worker: route it to your worker's queue (actions.routes)", a.Verb))
	}
	if a.Verb == VerbPublish || a.Verb == VerbEdit {
		if err := w.validateItem(a.Feed, a.Item); err != nil {
			return refuse(422, err)
		}
	}
	ch := thoonk.Change{Verb: a.Verb, ID: a.ID, Item: a.Item, ExpectRev: a.ExpectRev, Create: a.Create}
	if a.Position != "" {
		pos, err := thoonk.ParsePosition(a.Position)
		if err != nil {
			return refuse(400, err)
		}
		ch.Position = &pos
	}
	// republishing an existing id is an edit (Thoonk semantics), so it
	// needs the edit grant too; without it the id must be new
	if a.Verb == VerbPublish && a.ID != "" && !w.opts.ACL.Allowed(a.Actor, a.Feed, VerbEdit) {
		ch.Create = true
	}
	return ch, nil
}

// Apply performs one action job's change without a job to finish, and
// returns its result; a non-nil error means a transient failure (Redis
// unreachable). For tools and tests: workers use Handle, which applies and
// finishes exactly once.
func (w *Worker) Apply(ctx context.Context, payload []byte) (Result, error) {
	j, err := DecodeActionJob(payload)
	if err != nil {
		return fail(400, err), nil
	}
	a := j.Action()
	ch, refusal := w.change(a)
	if refusal != nil {
		return *refusal, nil
	}
	applied, err := w.s.ApplyChange(ctx, a.Feed, ch)
	if err != nil {
		if res, refused := classify(a, err); refused {
			return res, nil
		}
		return Result{}, err
	}
	return Result{OK: true, Code: applied.Code, ID: applied.ID, Rev: applied.Rev}, nil
}

func (w *Worker) validateItem(feed string, item []byte) error {
	for _, cs := range w.opts.Schemas {
		if !anyMatch(cs.feeds, feed) {
			continue
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(item))
		if err != nil {
			return fmt.Errorf("item is not JSON, and feed %q requires JSON matching its schema", feed)
		}
		if err := cs.schema.Validate(v); err != nil {
			return fmt.Errorf("item does not match the schema of feed %q: %v", feed, err)
		}
	}
	return nil
}

func fail(code int, err error) Result { return Result{OK: false, Code: code, Error: err.Error()} }

// classify maps a refused change to its result (refused true), or reports
// the error as transient.
func classify(a Action, err error) (Result, bool) {
	var conflict *thoonk.ConflictError
	switch {
	case errors.As(err, &conflict):
		r := fail(412, fmt.Errorf("item %q changed since revision %s: its revision is %s", a.ID, a.ExpectRev, orNone(conflict.Current)))
		r.Rev = conflict.Current
		return r, true
	case errors.Is(err, thoonk.ErrRelativeNotFound):
		return fail(409, err), true
	case errors.Is(err, thoonk.ErrItemExists):
		return fail(409, fmt.Errorf("%w: republishing an existing id is an edit, which the ACL does not grant", err)), true
	case errors.Is(err, thoonk.ErrNotFound):
		return fail(404, err), true
	case errors.Is(err, thoonk.ErrWrongType), errors.Is(err, thoonk.ErrInvalid):
		if a.Verb != "" {
			return fail(422, fmt.Errorf("%s does not apply to feed %q: %w", a.Verb, a.Feed, err)), true
		}
		return fail(422, err), true
	}
	return Result{}, false
}

func orNone(rev string) string {
	if rev == "" {
		return "none (it is gone)"
	}
	return rev
}
