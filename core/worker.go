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
// action job feeds and finishes every job with a JSON Result. A job it
// cannot parse or may not apply is finished with an error result, never
// retried; a job that fails on a Redis error is cancelled, so it runs again
// until the feed's retry limit stalls it.
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
			job, more = w.handle(context.WithoutCancel(ctx), jobs, job, ctx.Err() == nil)
		}
	}
}

// handle applies and finishes a job; with claimNext it also claims the
// next available job, which it returns with more = true.
func (w *Worker) handle(ctx context.Context, jobs *thoonk.JobFeed, job thoonk.Job, claimNext bool) (next thoonk.Job, more bool) {
	res, transient := w.Apply(ctx, job.Item)
	if transient != nil {
		cr, err := jobs.Cancel(ctx, job.ID)
		w.opts.Log.Warn("worker: job failed; it will run again", "queue", jobs.Name(), "job", job.ID,
			"err", transient, "failures", cr.Count, "stalled", cr.Stalled, "cancel_err", err)
		return thoonk.Job{}, false
	}
	var err error
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

// JSON renders the result.
func (r Result) JSON() []byte {
	var b bytes.Buffer
	_ = jsonEncoder(&b).Encode(r)
	return bytes.TrimRight(b.Bytes(), "\n")
}

// Apply performs one action job and returns its result; a non-nil error
// means a transient failure (Redis unreachable) after which the job
// should run again.
func (w *Worker) Apply(ctx context.Context, payload []byte) (Result, error) {
	j, err := DecodeActionJob(payload)
	if err != nil {
		return fail(400, err), nil
	}
	a := j.Action()
	if !w.opts.ACL.Allowed(a.Actor, a.Feed, a.Verb) {
		return fail(403, fmt.Errorf("%s may not %s on %q", a.Actor, a.Verb, a.Feed)), nil
	}
	if !slices.Contains(StandardVerbs, a.Verb) {
		return fail(501, fmt.Errorf("verb %q is not handled by the built-in worker: route it to your worker's queue (actions.routes)", a.Verb)), nil
	}
	if a.Verb == VerbPublish || a.Verb == VerbEdit {
		if err := w.validateItem(a.Feed, a.Item); err != nil {
			return fail(422, err), nil
		}
	}
	typ, err := w.s.Type(ctx, a.Feed)
	if err != nil {
		return classify(err)
	}
	var id string
	code := 200
	switch {
	case typ == thoonk.TypeFeed && a.Verb == VerbPublish:
		if a.Position != "" {
			return fail(422, fmt.Errorf("feed %q is a plain feed: positions need a sorted feed", a.Feed)), nil
		}
		// republishing an existing id is an edit (Thoonk semantics), so
		// it needs the edit grant too; without it the id must be new
		var r thoonk.PublishResult
		if a.ID != "" && !w.opts.ACL.Allowed(a.Actor, a.Feed, VerbEdit) {
			r, err = w.s.Feed(a.Feed).Create(ctx, a.Item, a.ID)
		} else {
			r, err = w.s.Feed(a.Feed).Publish(ctx, a.Item, a.ID)
		}
		id = r.ID
		if r.New {
			code = 201
		}
	case typ == thoonk.TypeFeed && a.Verb == VerbEdit:
		id, err = a.ID, w.s.Feed(a.Feed).Edit(ctx, a.ID, a.Item)
	case typ == thoonk.TypeFeed && a.Verb == VerbRetract:
		id, err = a.ID, w.s.Feed(a.Feed).Retract(ctx, a.ID)
	case typ == thoonk.TypeSorted && a.Verb == VerbPublish:
		if a.ID != "" {
			return fail(422, fmt.Errorf("sorted feed %q numbers its items itself: publish without an id", a.Feed)), nil
		}
		pos := thoonk.Position{Kind: thoonk.PosEnd}
		if a.Position != "" {
			if pos, err = thoonk.ParsePosition(a.Position); err != nil {
				return fail(400, err), nil
			}
		}
		id, err = w.s.Sorted(a.Feed).Insert(ctx, a.Item, pos)
		code = 201
	case typ == thoonk.TypeSorted && a.Verb == VerbEdit:
		id, err = a.ID, w.s.Sorted(a.Feed).Edit(ctx, a.ID, a.Item)
	case typ == thoonk.TypeSorted && a.Verb == VerbRetract:
		id, err = a.ID, w.s.Sorted(a.Feed).Retract(ctx, a.ID)
	case typ == thoonk.TypeSorted && a.Verb == VerbMove:
		var pos thoonk.Position
		if pos, err = thoonk.ParsePosition(a.Position); err != nil {
			return fail(400, err), nil
		}
		id, err = a.ID, w.s.Sorted(a.Feed).Move(ctx, a.ID, pos)
	default:
		return fail(422, fmt.Errorf("%s does not apply to feed %q of type %s", a.Verb, a.Feed, typ)), nil
	}
	if err != nil {
		return classify(err)
	}
	return Result{OK: true, Code: code, ID: id}, nil
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

// classify maps a store error to a result, or reports it as transient.
func classify(err error) (Result, error) {
	switch {
	case errors.Is(err, thoonk.ErrRelativeNotFound):
		return fail(409, err), nil
	case errors.Is(err, thoonk.ErrItemExists):
		return fail(409, fmt.Errorf("%w: republishing an existing id is an edit, which the ACL does not grant", err)), nil
	case errors.Is(err, thoonk.ErrNotFound):
		return fail(404, err), nil
	case errors.Is(err, thoonk.ErrWrongType), errors.Is(err, thoonk.ErrInvalid):
		return fail(422, err), nil
	}
	return Result{}, err
}
