package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Admin is what an operator may do to job feeds: inspect the stalled jobs
// (those that failed too often and wait for a person), retry them or drop
// them. Changing anything needs the ACL operation admin on the job feed;
// reading needs read.
type Admin struct {
	s   *thoonk.Store
	acl *ACL
	log *slog.Logger
}

// NewAdmin returns the job administration for a store, decided by acl;
// every change is logged with its actor.
func NewAdmin(s *thoonk.Store, acl *ACL, log *slog.Logger) *Admin {
	if log == nil {
		log = slog.Default()
	}
	return &Admin{s: s, acl: acl, log: log}
}

// StalledJob is a job taken out of circulation, as an operator sees it.
type StalledJob struct {
	Queue string `json:"queue"`
	ID    string `json:"id"`
	// Item is the job's payload (an action job's JSON, or anything else).
	Item []byte `json:"item"`
	// Failures is how many times the job failed, when its record says.
	Failures int `json:"failures"`
	// LastError is its last recorded failure, when a worker recorded one.
	LastError string `json:"last_error,omitempty"`
	// Submitter is who submitted it, when its record says.
	Submitter string `json:"submitter,omitempty"`
}

// Stalled returns up to limit stalled jobs of queue and how many there are
// in all; actor needs read on the queue.
func (a *Admin) Stalled(ctx context.Context, actor Actor, queue string, limit int) ([]StalledJob, int, error) {
	if !a.acl.Allowed(actor, queue, OpRead) {
		return nil, 0, fmt.Errorf("%s may not read %q: %w", actor, queue, ErrDenied)
	}
	jobs := a.s.Jobs(queue)
	ids, err := jobs.StalledIDs(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make([]StalledJob, 0, min(len(ids), limit))
	for _, id := range ids[:min(len(ids), limit)] {
		st, err := jobs.State(ctx, id)
		if err != nil {
			return nil, 0, err
		}
		item, err := jobs.Item(ctx, id)
		if errors.Is(err, thoonk.ErrNotFound) {
			continue // retried or dropped meanwhile
		}
		if err != nil {
			return nil, 0, err
		}
		out = append(out, StalledJob{Queue: queue, ID: id, Item: item, Failures: st.Cancelled,
			LastError: st.LastError, Submitter: st.Submitter})
	}
	return out, len(ids), nil
}

// Retry makes a stalled job available to workers again; actor needs admin
// on the queue. A job that is not stalled is an error wrapping
// thoonk.ErrNotStalled.
func (a *Admin) Retry(ctx context.Context, actor Actor, queue, id string) error {
	return a.change(ctx, actor, queue, id, "retried", func(j *thoonk.JobFeed) error { return j.Retry(ctx, id) })
}

// Drop removes a stalled job for good (its record too: it never finished);
// actor needs admin on the queue. A job that is not stalled is an error
// wrapping thoonk.ErrNotStalled: a running job is never dropped.
func (a *Admin) Drop(ctx context.Context, actor Actor, queue, id string) error {
	return a.change(ctx, actor, queue, id, "dropped", func(j *thoonk.JobFeed) error {
		st, err := j.State(ctx, id)
		if err != nil {
			return err
		}
		if st.State != thoonk.JobStalled {
			return fmt.Errorf("drop job %s of %q (it is %s): %w", id, queue, st.State, thoonk.ErrNotStalled)
		}
		return j.Retract(ctx, id)
	})
}

func (a *Admin) change(ctx context.Context, actor Actor, queue, id, what string, do func(*thoonk.JobFeed) error) error {
	if !a.acl.Allowed(actor, queue, OpAdmin) {
		return fmt.Errorf("%s may not administer %q: %w", actor, queue, ErrDenied)
	}
	if err := do(a.s.Jobs(queue)); err != nil {
		return err
	}
	a.log.Info("stalled job "+what, "queue", queue, "job", id, "actor", actor.String())
	return nil
}
