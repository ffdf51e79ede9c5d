package thoonk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Verbs of the changes ApplyJob applies.
const (
	ChangePublish = "publish"
	ChangeEdit    = "edit"
	ChangeRetract = "retract"
	ChangeMove    = "move"
)

// Change is one change to a plain or sorted feed, requested by a job.
type Change struct {
	// Verb is ChangePublish, ChangeEdit, ChangeRetract or ChangeMove.
	Verb string
	// ID is the item (publish on a plain feed: the id to publish under, a
	// random one when empty; empty on a sorted feed, which numbers its
	// items).
	ID string
	// Item is the payload (publish, edit).
	Item []byte
	// Position places a sorted-feed item (publish: nil means the end;
	// move: required); it must be nil on a plain feed.
	Position *Position
	// Create publishes only when the id is new (an existing id is an
	// error wrapping ErrItemExists), where a publish would edit it.
	Create bool
	// ExpectRev, when set, is the revision of the item the change is
	// based on: the change is made only while the item's current
	// revision (Item.Rev) is that one, else a *ConflictError. It needs
	// the journal.
	ExpectRev string
}

// Applied is what ApplyJob did.
type Applied struct {
	// Code is 201 when the change created the item, else 200.
	Code int
	// ID is the item the change concerned (a sorted feed's new id).
	ID string
	// Rev is the change's journal revision ("" without the journal).
	Rev string
	// Replayed is true when an earlier run of the job had applied the
	// change already: nothing changed this time.
	Replayed bool
	// Next is the next job, claimed in the same step (claimNext), when
	// HasNext.
	Next    Job
	HasNext bool
}

// ConflictError reports a change whose expected revision is not the
// item's current one.
type ConflictError struct {
	Feed, ID string
	// Current is the item's current revision ("" when it has none: it is
	// gone, or was never journaled).
	Current string
}

// Error names the item and its current revision.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("item %q in %q changed: its revision is %q: %v", e.ID, e.Feed, e.Current, ErrConflict)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// markerTTL bounds how long an applied change's outcome is kept when its
// job cannot be finished in the same step; it is deleted once the job is.
const markerTTL = time.Hour

// ApplyJob applies a change to feed for job jobID, claimed from jobs, and
// finishes that job with the outcome as its result (AppliedResult), so
// that the change happens once however often the job runs:
//
//   - when the feed and the job feed share a Redis slot (one server, or
//     Cluster names with the same hash tag) the change, the finish and,
//     with claimNext, the claim of the next job are one script: a job no
//     longer claimed changes nothing (ErrNotClaimed);
//   - otherwise the change is written together with a marker in the
//     feed's slot, replicated (StoreOptions.ReplicaAcks), then the job is
//     finished and the marker dropped; a run after a crash in between
//     finds the marker and finishes with the first outcome (Replayed).
//
// A refused change (missing item, wrong type, conflict) changes nothing
// and returns its error; the job is left claimed for the caller to
// finish with its own result.
func (s *Store) ApplyJob(ctx context.Context, feed string, ch Change, jobs *JobFeed, jobID string, claimNext bool) (Applied, error) {
	if jobs.err != nil {
		return Applied{}, jobs.err
	}
	if err := ValidateID(jobID); err != nil {
		return Applied{}, err
	}
	keys, args, err := s.changeArgs(feed, ch, jobID)
	if err != nil {
		return Applied{}, err
	}
	together := !s.cluster || (HashTag(feed) != "" && HashTag(feed) == HashTag(jobs.name))
	if together {
		keys = append(keys, jobs.k.job(jobs.name, jobID)...)
		args = append(args, 0, "1", jobs.name, jobID, boolArg(claimNext), NewID())
	} else {
		args = append(args, markerTTL.Milliseconds(), "0", jobs.name, jobID, "0", NewID())
	}
	vals, err := s.runDurable(ctx, scripts.actionApply, keys, args...).Slice()
	if err != nil {
		return Applied{}, applyError(err, feed, ch.ID)
	}
	a := Applied{ID: stringOf(vals[1]), Rev: stringOf(vals[2])}
	code, _ := vals[0].(int64)
	a.Code = int(code)
	if r, _ := vals[3].(int64); r == 1 {
		a.Replayed = true
	}
	if together {
		if len(vals) > 4 {
			next, _ := vals[4].([]any)
			a.Next, a.HasNext = claimed(next)
		}
		return a, nil
	}
	next, ok, err := jobs.finish(ctx, jobID, AppliedResult(a), true, claimNext)
	if err != nil && !errors.Is(err, ErrNotClaimed) {
		return a, err // the marker stays: the next run finishes with it
	}
	a.Next, a.HasNext = next, ok
	if err := s.cmd.Del(ctx, appliedKey(feed, jobID)).Err(); err != nil {
		s.noteErr(ctx, err) // the marker expires by itself
	}
	if errors.Is(err, ErrNotClaimed) {
		return a, fmt.Errorf("finish job %s: %w", jobID, ErrNotClaimed)
	}
	return a, nil
}

// ApplyChange applies a change to a plain or sorted feed, without a job:
// the same checks and journaling as ApplyJob, for programs that change
// feeds themselves (an edit made only while the item is at the revision
// it read, for example).
func (s *Store) ApplyChange(ctx context.Context, feed string, ch Change) (Applied, error) {
	keys, args, err := s.changeArgs(feed, ch, "-")
	if err != nil {
		return Applied{}, err
	}
	args = append(args, 0, "0", "", "", "0", NewID())
	vals, err := s.runDurable(ctx, scripts.actionApply, keys, args...).Slice()
	if err != nil {
		return Applied{}, applyError(err, feed, ch.ID)
	}
	code, _ := vals[0].(int64)
	return Applied{Code: int(code), ID: stringOf(vals[1]), Rev: stringOf(vals[2])}, nil
}

// changeArgs checks a change and returns the apply script's feed keys
// (with the marker of job) and its first arguments.
func (s *Store) changeArgs(feed string, ch Change, job string) ([]string, []any, error) {
	if err := s.validFeed(feed); err != nil {
		return nil, nil, err
	}
	if ch.ID != "" {
		if err := ValidateID(ch.ID); err != nil {
			return nil, nil, err
		}
	}
	switch ch.Verb {
	case ChangePublish, ChangeEdit, ChangeRetract, ChangeMove:
	default:
		return nil, nil, fmt.Errorf("change %q: want publish, edit, retract or move: %w", ch.Verb, ErrInvalid)
	}
	if ch.Verb != ChangePublish && ch.ID == "" {
		return nil, nil, fmt.Errorf("%s needs an item id: %w", ch.Verb, ErrInvalid)
	}
	mode, rel := "", ""
	if ch.Position != nil {
		if err := ch.Position.validate(); err != nil {
			return nil, nil, err
		}
		mode, rel = ch.Position.mode(), ch.Position.Rel
	}
	pub := ""
	if ch.Create {
		pub = "create"
	}
	keys := append(feedKeys(feed).feed(), appliedKey(feed, job))
	return keys, []any{feed, s.jmax, s.jitem, ch.Verb, ch.ID, ch.Item, mode, rel, pub, ch.ExpectRev}, nil
}

// applyError maps an apply script's error reply.
func applyError(err error, feed, id string) error {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		code, detail, _ := strings.Cut(strings.TrimPrefix(rerr.Error(), "ERR "), " ")
		switch code {
		case "FBCONFLICT":
			return &ConflictError{Feed: feed, ID: id, Current: detail}
		case "FBPOSITION":
			return fmt.Errorf("apply to %q: positions belong to sorted feeds (and a move needs one): %w", feed, ErrInvalid)
		case "FBSORTEDID":
			return fmt.Errorf("apply to %q: a sorted feed numbers its items itself: publish without an id: %w", feed, ErrInvalid)
		case "FBNOJOURNAL":
			return fmt.Errorf("apply to %q: an expected revision needs the journal: %w", feed, ErrInvalid)
		}
	}
	return scriptError(err, feed, TypeItems, "apply")
}

// AppliedResult renders an applied change as the JSON result its job is
// finished with: {"ok":true,"code":C,"id":ID,"rev":REV} (id and rev when
// set), byte for byte as the apply script renders it.
func AppliedResult(a Applied) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"ok":true,"code":%d`, a.Code)
	if a.ID != "" {
		b.WriteString(`,"id":`)
		b.Write(jsonString(a.ID))
	}
	if a.Rev != "" {
		b.WriteString(`,"rev":`)
		b.Write(jsonString(a.Rev))
	}
	b.WriteString("}")
	return []byte(b.String())
}

// jsonString renders s as encoding/json does without HTML escaping.
func jsonString(s string) []byte {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return []byte(strings.TrimSuffix(b.String(), "\n"))
}
