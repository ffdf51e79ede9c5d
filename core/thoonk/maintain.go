package thoonk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaintenanceReport counts what one maintenance pass did.
type MaintenanceReport struct {
	// Requeued is the number of lost jobs put back in the available list.
	Requeued int
	// Cancelled is the number of jobs claimed for too long and made available again.
	Cancelled int
	// Stalled is the number of jobs stalled for failing too often.
	Stalled int
}

// Maintenance keeps one job feed's jobs from being lost. A pass (a) puts
// back ids present in items but in no state, once they have been seen lost
// on two consecutive passes (a worker between BRPOP and its claim looks
// lost for an instant), (b) cancels jobs claimed longer than the feed's
// timeout so they run again, and (c) stalls jobs cancelled more often than
// the feed's retry limit. Every change is re-checked inside a script, so
// any number of processes may maintain the same feed at once.
type Maintenance struct {
	j        *JobFeed
	mu       sync.Mutex
	suspects map[string]bool
}

// NewMaintenance returns the maintenance state of a job feed.
func (j *JobFeed) NewMaintenance() *Maintenance {
	return &Maintenance{j: j, suspects: map[string]bool{}}
}

// Pass runs one maintenance pass.
func (m *Maintenance) Pass(ctx context.Context) (MaintenanceReport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var rep MaintenanceReport
	j := m.j
	if j.err != nil {
		return rep, j.err
	}
	if typ, err := j.s.Type(ctx, j.name); err != nil {
		return rep, err
	} else if typ != TypeJob {
		return rep, &WrongTypeError{Feed: j.name, Want: TypeJob, Got: typ}
	}
	pol, err := j.Policy(ctx)
	if err != nil {
		return rep, err
	}
	now, err := j.s.cmd.Time(ctx).Result()
	if err != nil {
		return rep, fmt.Errorf("maintain %q: server time: %w", j.name, err)
	}

	// (b) claimed for too long: cancel (which stalls past the retry limit).
	cutoff := strconv.FormatInt(now.Add(-pol.Timeout).UnixMilli(), 10)
	expired, err := j.s.cmd.ZRangeByScore(ctx, j.k.claimed, &redis.ZRangeBy{Min: "-inf", Max: cutoff}).Result()
	if err != nil {
		return rep, fmt.Errorf("maintain %q: claimed: %w", j.name, err)
	}
	for _, id := range expired {
		res, err := j.cancel(ctx, id, pol, cutoff, fmt.Sprintf("claimed for longer than the job timeout of %s: its worker stopped or hung", pol.Timeout))
		if errors.Is(err, ErrNotClaimed) {
			continue // finished or re-claimed meanwhile
		}
		if err != nil {
			return rep, err
		}
		if res.Stalled {
			rep.Stalled++
		} else {
			rep.Cancelled++
		}
	}

	// (a) lost: in items but in no state, on two passes in a row.
	pipe := j.s.rdb.Pipeline()
	itemsCmd := pipe.HKeys(ctx, j.k.items)
	idsCmd := pipe.LRange(ctx, j.k.ids, 0, -1)
	claimedCmd := pipe.ZRange(ctx, j.k.claimed, 0, -1)
	stalledCmd := pipe.SMembers(ctx, j.k.stalled)
	cancelledCmd := pipe.HGetAll(ctx, j.k.cancelled)
	delayedCmd := pipe.ZRange(ctx, j.k.delayed, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return rep, fmt.Errorf("maintain %q: read states: %w", j.name, err)
	}
	placed := map[string]bool{}
	for _, l := range [][]string{idsCmd.Val(), claimedCmd.Val(), stalledCmd.Val(), delayedCmd.Val()} {
		for _, id := range l {
			placed[id] = true
		}
	}
	suspects := map[string]bool{}
	var lost []any
	for _, id := range itemsCmd.Val() {
		if placed[id] {
			continue
		}
		if m.suspects[id] {
			lost = append(lost, id)
		} else {
			suspects[id] = true
		}
	}
	m.suspects = suspects
	// the requeue also makes due retries available, for workers of other
	// libraries that only BRPOP
	for first := len(delayedCmd.Val()) > 0; first || len(lost) > 0; first = false {
		n := min(len(lost), maxBatch)
		back, err := j.s.run(ctx, scripts.jobRequeue, j.k.job(j.name, "")[:10], lost[:n]...).StringSlice()
		if err != nil {
			return rep, scriptError(err, j.name, TypeJob, "maintain requeue")
		}
		rep.Requeued += len(back)
		lost = lost[n:]
	}

	// (c) cancelled too often by workers that apply no limit (other
	// Thoonk libraries): stall them while they wait in the available list.
	if pol.Retries >= 0 {
		for id, v := range cancelledCmd.Val() {
			n, err := strconv.Atoi(v)
			if err != nil || n <= pol.Retries {
				continue
			}
			err = j.stall(ctx, id, "available", fmt.Sprintf("cancelled %d times, over the retry limit of %d", n, pol.Retries))
			if errors.Is(err, ErrNotClaimed) {
				continue // not waiting: it is claimed, finished or gone
			}
			if err != nil {
				return rep, err
			}
			rep.Stalled++
		}
	}
	return rep, nil
}

// MaintainJobs runs a maintenance pass every interval on every job feed in
// the registry that match reports true for (nil = all), until ctx ends.
// Errors are logged and the loop goes on.
func MaintainJobs(ctx context.Context, s *Store, interval time.Duration, match func(feed string) bool, log *slog.Logger) {
	states := map[string]*Maintenance{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		names, err := s.Feeds(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("job maintenance: list feeds", "err", err)
		}
		seen := map[string]bool{}
		for _, name := range names {
			if match != nil && !match(name) {
				continue
			}
			typ, err := s.Type(ctx, name)
			if err != nil || typ != TypeJob {
				continue
			}
			seen[name] = true
			m := states[name]
			if m == nil {
				m = s.Jobs(name).NewMaintenance()
				states[name] = m
			}
			rep, err := m.Pass(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("job maintenance", "feed", name, "err", err)
			case rep != MaintenanceReport{}:
				log.Info("job maintenance", "feed", name, "requeued", rep.Requeued,
					"cancelled", rep.Cancelled, "stalled", rep.Stalled)
			}
		}
		for name := range states {
			if !seen[name] {
				delete(states, name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
