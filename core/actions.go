package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Action is what a user asked for through a protocol. It is never applied
// directly: Submit stores it as a job for a worker.
type Action struct {
	// Verb is publish, edit, retract, move, or a custom verb.
	Verb string
	// Feed is the target feed.
	Feed string
	// ID is the target item (edit, retract, move; optional for publish).
	ID string
	// Item is the payload (publish, edit).
	Item []byte
	// Position is where the item goes in a sorted feed (move; optional for
	// publish, default ":end"), in the schema's position syntax.
	Position string
	// Args are a custom verb's arguments.
	Args []string
	// Actor is who asked, as the protocol proved it.
	Actor Actor
}

// ActionJob is the JSON job format stored on the job feed (docs/actions.md).
// Item holds the payload when it is valid UTF-8, ItemBase64 otherwise.
type ActionJob struct {
	V           int       `json:"v"`
	Verb        string    `json:"verb"`
	Feed        string    `json:"feed"`
	ID          string    `json:"id,omitempty"`
	Item        *string   `json:"item,omitempty"`
	ItemBase64  []byte    `json:"item_base64,omitempty"`
	Position    string    `json:"position,omitempty"`
	Args        []string  `json:"args,omitempty"`
	Actor       Actor     `json:"actor"`
	SubmittedAt time.Time `json:"submitted_at"`
	Instance    string    `json:"instance"`
}

// ActionJobVersion is the version of the job format written by this bridge.
const ActionJobVersion = 1

// Payload returns the action's item bytes.
func (j *ActionJob) Payload() []byte {
	if j.Item != nil {
		return []byte(*j.Item)
	}
	return j.ItemBase64
}

// Action returns the job's action.
func (j *ActionJob) Action() Action {
	return Action{Verb: j.Verb, Feed: j.Feed, ID: j.ID, Item: j.Payload(), Position: j.Position, Args: j.Args, Actor: j.Actor}
}

// EncodeActionJob renders an action as a job payload.
func EncodeActionJob(a Action, instance string, at time.Time) []byte {
	j := ActionJob{V: ActionJobVersion, Verb: a.Verb, Feed: a.Feed, ID: a.ID, Position: a.Position, Args: a.Args,
		Actor: a.Actor, SubmittedAt: at.UTC(), Instance: instance}
	if a.Item != nil {
		if utf8.Valid(a.Item) {
			s := string(a.Item)
			j.Item = &s
		} else {
			j.ItemBase64 = a.Item
		}
	}
	b, _ := json.Marshal(j) // cannot fail: plain fields only
	return b
}

// DecodeActionJob parses and checks a job payload written by
// EncodeActionJob (or any worker-compatible producer).
func DecodeActionJob(b []byte) (*ActionJob, error) {
	var j ActionJob
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("action job: not JSON of the action format: %w", thoonk.ErrInvalid)
	}
	if j.V != ActionJobVersion {
		return nil, fmt.Errorf("action job: version %d, want %d: %w", j.V, ActionJobVersion, thoonk.ErrInvalid)
	}
	if err := ValidateVerb(j.Verb); err != nil {
		return nil, fmt.Errorf("action job: %w", err)
	}
	if err := thoonk.ValidateFeedName(j.Feed); err != nil {
		return nil, fmt.Errorf("action job: %w", err)
	}
	if j.Actor.Protocol == "" || j.Actor.ID == "" {
		return nil, fmt.Errorf("action job: no actor: %w", thoonk.ErrInvalid)
	}
	if j.Item != nil && j.ItemBase64 != nil {
		return nil, fmt.Errorf("action job: both item and item_base64: %w", thoonk.ErrInvalid)
	}
	return &j, nil
}

// Result is what a worker finishes an action job with, as JSON. Codes
// follow HTTP: 200 done, 201 created, 400 bad request, 403 forbidden, 404
// not found, 409 conflict, 413 too large, 422 invalid item, 501 verb not
// handled here, 500 failure.
type Result struct {
	OK    bool   `json:"ok"`
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
	// ID is the item the action produced or changed.
	ID string `json:"id,omitempty"`
}

// ParseResult reads a job result; a result that is not the Result format
// is reported as a 500 carrying the raw text.
func ParseResult(b []byte) Result {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil || r.Code == 0 {
		return Result{OK: false, Code: 500, Error: "worker result: " + string(b)}
	}
	return r
}

// ActionRoute sends the actions on matching feeds (and, when Verbs is
// set, only those verbs) to a job feed other than the default.
type ActionRoute struct {
	Feeds []string `yaml:"feeds"`
	Verbs []string `yaml:"verbs"`
	Queue string   `yaml:"queue"`

	feeds []thoonk.Pattern
}

// ActionsOptions configures Actions.
type ActionsOptions struct {
	// Queue is the default job feed for the standard verbs.
	Queue string
	// CustomQueue is the default job feed for custom verbs, left for the
	// application's own workers; empty means Queue.
	CustomQueue string
	// Routes override the queue per feed pattern and verb; first match wins.
	Routes []ActionRoute
	// MaxItemBytes bounds an action's payload.
	MaxItemBytes int
	// ResultTTL is how long a job's status and result are kept.
	ResultTTL time.Duration
}

// Actions turns actions into jobs.
type Actions struct {
	s    *thoonk.Store
	l    *thoonk.Listener
	acl  *ACL
	opts ActionsOptions
	m    *Metrics
}

// NewActions returns the action submitter; routes must have been compiled
// by Config.Validate (or CompileRoutes).
func NewActions(s *thoonk.Store, l *thoonk.Listener, acl *ACL, opts ActionsOptions, m *Metrics) *Actions {
	return &Actions{s: s, l: l, acl: acl, opts: opts, m: m}
}

// CompileRoutes checks the routes' patterns and verbs.
func CompileRoutes(routes []ActionRoute, sec *Section, key string) error {
	var errs []error
	for i := range routes {
		r := &routes[i]
		at := fmt.Sprintf("%s[%d]", key, i)
		if len(r.Feeds) == 0 {
			r.Feeds = []string{"*"}
		}
		var perrs []error
		r.feeds, perrs = compilePatterns(r.Feeds, sec, at+".feeds")
		errs = append(errs, perrs...)
		for j, v := range r.Verbs {
			if err := ValidateVerb(v); err != nil {
				errs = append(errs, sec.Errorf(fmt.Sprintf("%s.verbs[%d]", at, j), "%v", err))
			}
		}
		if err := thoonk.ValidateFeedName(r.Queue); err != nil {
			errs = append(errs, sec.Errorf(at+".queue", "name the job feed for these actions: %v", err))
		}
	}
	return errors.Join(errs...)
}

// Queue returns the job feed an action on feed with verb goes to: the
// first matching route's, else Queue for the standard verbs and
// CustomQueue for custom verbs.
func (a *Actions) Queue(feed, verb string) string {
	for _, r := range a.opts.Routes {
		if !anyMatch(r.feeds, feed) {
			continue
		}
		if len(r.Verbs) > 0 && !slices.Contains(r.Verbs, verb) {
			continue
		}
		return r.Queue
	}
	if a.opts.CustomQueue != "" && !slices.Contains(StandardVerbs, verb) {
		return a.opts.CustomQueue
	}
	return a.opts.Queue
}

// Queues returns every job feed actions can go to.
func (a *Actions) Queues() []string {
	return actionQueues(a.opts.Queue, a.opts.CustomQueue, a.opts.Routes)
}

// actionQueues lists the default, custom and routed queues, once each.
func actionQueues(queue, custom string, routes []ActionRoute) []string {
	qs := []string{queue}
	if custom != "" && custom != queue {
		qs = append(qs, custom)
	}
	for _, r := range routes {
		if !slices.Contains(qs, r.Queue) {
			qs = append(qs, r.Queue)
		}
	}
	return qs
}

// Limits on an action's arguments (custom verbs), besides MaxItemBytes.
const (
	// MaxArgs is the most arguments an action may carry.
	MaxArgs = 32
	// maxArgBytes bounds one argument (and an actor's display name).
	maxArgBytes = 1024
)

// Ticket identifies a submitted action's job.
type Ticket struct {
	Queue string `json:"queue"`
	JobID string `json:"job_id"`
}

// Check validates an action and asks the ACL, without storing anything:
// it returns errors wrapping ErrInvalid, ErrTooLarge, ErrDenied,
// ErrFeedNotFound or ErrWrongType. The ACL is asked before the feed is
// looked up, so a denied actor learns nothing about which feeds exist.
func (a *Actions) Check(ctx context.Context, act Action) error {
	if err := ValidateVerb(act.Verb); err != nil {
		return err
	}
	if err := thoonk.ValidateFeedName(act.Feed); err != nil {
		return err
	}
	if act.Actor.Protocol == "" || thoonk.ValidateText("actor id", act.Actor.ID, 512) != nil {
		return fmt.Errorf("action: the actor is not identified: %w", thoonk.ErrInvalid)
	}
	if act.Actor.Display != "" {
		if err := thoonk.ValidateText("actor display name", act.Actor.Display, maxArgBytes); err != nil {
			return err
		}
	}
	if !a.acl.Allowed(act.Actor, act.Feed, act.Verb) {
		return fmt.Errorf("%s may not %s on %q: %w", act.Actor, act.Verb, act.Feed, ErrDenied)
	}
	if a.opts.MaxItemBytes > 0 && len(act.Item) > a.opts.MaxItemBytes {
		return fmt.Errorf("item is %d bytes, over the limit of %d: %w", len(act.Item), a.opts.MaxItemBytes, ErrTooLarge)
	}
	if act.ID != "" {
		if err := thoonk.ValidateID(act.ID); err != nil {
			return err
		}
	}
	if len(act.Args) > MaxArgs {
		return fmt.Errorf("%d arguments, over the limit of %d: %w", len(act.Args), MaxArgs, ErrTooLarge)
	}
	for _, arg := range act.Args {
		if len(arg) > maxArgBytes {
			return fmt.Errorf("an argument is %d bytes, over the limit of %d: %w", len(arg), maxArgBytes, ErrTooLarge)
		}
		if arg != "" {
			if err := thoonk.ValidateText("argument", arg, maxArgBytes); err != nil {
				return err
			}
		}
	}
	standard := slices.Contains(StandardVerbs, act.Verb)
	switch act.Verb {
	case VerbEdit, VerbRetract, VerbMove:
		if act.ID == "" {
			return fmt.Errorf("%s needs an item id: %w", act.Verb, thoonk.ErrInvalid)
		}
	}
	if act.Verb == VerbMove || act.Position != "" {
		if _, err := thoonk.ParsePosition(act.Position); err != nil {
			return err
		}
	}
	typ, err := a.s.Type(ctx, act.Feed)
	if err != nil {
		return err
	}
	if standard && typ != thoonk.TypeFeed && typ != thoonk.TypeSorted {
		return &thoonk.WrongTypeError{Feed: act.Feed, Want: thoonk.TypeItems, Got: typ}
	}
	if (act.Verb == VerbMove || act.Position != "") && standard && typ != thoonk.TypeSorted {
		return &thoonk.WrongTypeError{Feed: act.Feed, Want: thoonk.TypeSorted, Got: typ}
	}
	return nil
}

// Submit checks an action and stores it as a job; it returns once the job
// is in Redis.
func (a *Actions) Submit(ctx context.Context, act Action) (Ticket, error) {
	t, _, err := a.submit(ctx, act, false)
	return t, err
}

// SubmitWatch submits an action and returns a waiter for its result,
// registered before the job is stored so that no result can be missed: for
// adapters that acknowledge at once and report the result later. The
// caller must Wait or Cancel the waiter.
func (a *Actions) SubmitWatch(ctx context.Context, act Action) (Ticket, *thoonk.ResultWaiter, error) {
	return a.submit(ctx, act, true)
}

// SubmitWait submits an action and waits up to wait for its result. A nil
// Result with a nil error means the wait ran out: the job is stored and
// will still run.
func (a *Actions) SubmitWait(ctx context.Context, act Action, wait time.Duration) (Ticket, *Result, error) {
	t, w, err := a.submit(ctx, act, wait > 0)
	if err != nil || w == nil {
		return t, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	raw, err := w.Wait(wctx)
	if err != nil {
		// the wait ran out, or the result cannot be known: the job is
		// stored either way and its status stays readable
		return t, nil, nil
	}
	r := ParseResult(raw)
	return t, &r, nil
}

func (a *Actions) submit(ctx context.Context, act Action, wait bool) (Ticket, *thoonk.ResultWaiter, error) {
	if err := a.Check(ctx, act); err != nil {
		a.m.action(act.Actor.Protocol, act.Verb, outcomeOf(err))
		return Ticket{}, nil, err
	}
	t := Ticket{Queue: a.Queue(act.Feed, act.Verb), JobID: thoonk.NewID()}
	var w *thoonk.ResultWaiter
	if wait && a.l != nil {
		w = a.l.Expect(t.Queue, t.JobID)
	}
	_, err := a.s.Jobs(t.Queue).Put(ctx, EncodeActionJob(act, a.s.Instance(), time.Now()),
		thoonk.PutOptions{ID: t.JobID, RecordTTL: a.opts.ResultTTL, Submitter: act.Actor.String()})
	if err != nil {
		if w != nil {
			w.Cancel()
		}
		a.m.action(act.Actor.Protocol, act.Verb, "failed")
		return Ticket{}, nil, fmt.Errorf("submit %s on %q: %w", act.Verb, act.Feed, err)
	}
	a.m.action(act.Actor.Protocol, act.Verb, "submitted")
	return t, w, nil
}

func outcomeOf(err error) string {
	switch {
	case errors.Is(err, ErrDenied):
		return "denied"
	case Refused(err):
		return "invalid"
	}
	return "failed"
}

// Refused reports whether an error from Check or Submit is a refusal of
// the action itself (denied, invalid, too large, unknown feed, wrong feed
// type), to be answered to the user, rather than a failure to store it
// (Redis unreachable), to be logged and retried.
func Refused(err error) bool {
	return errors.Is(err, ErrDenied) || errors.Is(err, thoonk.ErrNotFound) || errors.Is(err, thoonk.ErrInvalid) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, thoonk.ErrWrongType)
}

// JobStatus is what the bridge knows of a submitted action's job.
type JobStatus struct {
	Queue string `json:"queue"`
	JobID string `json:"job_id"`
	// State is queued, claimed, stalled, finished or unknown.
	State string `json:"state"`
	// Failures is how many times the job failed and was retried.
	Failures int `json:"failures"`
	// Result is the worker's result once finished (when recorded).
	Result *Result `json:"result,omitempty"`
	// LastError is the last failure recorded for the job (a stalled job's
	// reason), when its record keeps one.
	LastError string `json:"last_error,omitempty"`
	// Submitter is the actor ("protocol:id") who submitted the action, so
	// that adapters can show a job's status to its submitter only. Not
	// part of the JSON: it is for the adapter, not the client.
	Submitter string `json:"-"`
}

// Status reports a submitted action's job. Only action queues are asked:
// any other job feed is reported as not found.
func (a *Actions) Status(ctx context.Context, queue, id string) (JobStatus, error) {
	if !slices.Contains(a.Queues(), queue) {
		return JobStatus{}, fmt.Errorf("job status %q: not an action queue: %w", queue, thoonk.ErrFeedNotFound)
	}
	st, err := a.s.Jobs(queue).State(ctx, id)
	if err != nil {
		return JobStatus{}, err
	}
	js := JobStatus{Queue: queue, JobID: id, State: st.State, Failures: st.Cancelled, Submitter: st.Submitter, LastError: st.LastError}
	if st.HasResult {
		r := ParseResult(st.Result)
		js.Result = &r
	}
	return js, nil
}

// jsonEncoder returns an encoder that keeps <, > and & as they are.
func jsonEncoder(w io.Writer) *json.Encoder {
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false)
	return e
}
