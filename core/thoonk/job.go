package thoonk

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Job feed config fields (in feed.config:[feed]) that feedbridge reads; the
// reference libraries leave timeouts and retry limits to the application.
const (
	// ConfigJobTimeout is the config field holding how long, in
	// milliseconds, a job may stay claimed before maintenance cancels it.
	ConfigJobTimeout = "job_timeout_ms"
	// ConfigJobRetries is the config field holding how many cancels a job
	// survives; one more stalls it. A negative value means no limit.
	ConfigJobRetries = "job_max_retries"
)

// Defaults for job feeds whose config does not set the fields above.
const (
	DefaultJobTimeout = 60 * time.Second
	DefaultJobRetries = 5
)

// JobFeed is a handle on a job feed (type "job"): every job is finished by
// exactly one worker, retried when its worker fails or dies, and stalled for
// a person when it keeps failing.
type JobFeed struct {
	s    *Store
	name string
	k    keys
	err  error
}

// Jobs returns a handle on a job feed; a bad name is reported by every operation.
func (s *Store) Jobs(name string) *JobFeed {
	return &JobFeed{s: s, name: name, k: feedKeys(name), err: s.validFeed(name)}
}

// Name returns the job feed's name.
func (j *JobFeed) Name() string { return j.name }

// Job is a job claimed by a worker.
type Job struct {
	ID   string
	Item []byte
	// Cancelled is how many times the job was cancelled (failed) before.
	Cancelled int
}

// PutOptions tunes JobFeed.Put.
type PutOptions struct {
	// ID is the job's id; empty means a random one. An id already in the
	// job feed is refused with ErrJobExists.
	ID string
	// High puts the job at the head of the line.
	High bool
	// RecordTTL, when positive, keeps a status record of the job (and
	// later its result) for this long so that JobFeed.State can answer
	// after the job has finished.
	RecordTTL time.Duration
	// Submitter is kept in the status record (with RecordTTL), so that
	// status readers can be limited to who submitted the job.
	Submitter string
}

// Put adds a job and returns its id; the job is in Redis when Put returns.
func (j *JobFeed) Put(ctx context.Context, item []byte, opts PutOptions) (string, error) {
	if j.err != nil {
		return "", j.err
	}
	id := opts.ID
	if id == "" {
		id = NewID()
	} else if err := ValidateID(id); err != nil {
		return "", err
	}
	ttl := max(opts.RecordTTL.Milliseconds(), 0)
	err := j.s.run(ctx, scripts.jobPut,
		[]string{j.k.config, j.k.ids, j.k.items, j.k.published, j.k.publishes, jobRecordKey(j.name, id)},
		id, item, boolArg(opts.High), ttl, opts.Submitter).Err()
	if err != nil {
		return "", scriptError(err, j.name, TypeJob, "job put")
	}
	return id, nil
}

// Get claims the next available job, waiting up to timeout (0 = do not
// wait); it returns an error wrapping ErrTimeout when none came.
func (j *JobFeed) Get(ctx context.Context, timeout time.Duration) (Job, error) {
	if j.err != nil {
		return Job{}, j.err
	}
	keys := []string{j.k.config, j.k.ids, j.k.items, j.k.claimed, j.k.cancelled}
	var job Job
	err := pollTake(ctx, j.s, j.k.ids, timeout, func(popped string) (bool, error) {
		vals, err := j.s.run(ctx, scripts.jobClaim, keys, popped).Slice()
		if err != nil && !isNil(err) {
			return false, scriptError(err, j.name, TypeJob, "job get")
		}
		var ok bool
		job, ok = claimed(vals) // not ok: none available, or retracted between pop and claim
		return ok, nil
	})
	if err != nil {
		return Job{}, err
	}
	return job, nil
}

// claimed reads a claim script's reply.
func claimed(vals []any) (Job, bool) {
	if len(vals) != 3 {
		return Job{}, false
	}
	n, _ := strconv.Atoi(stringOf(vals[2]))
	return Job{ID: stringOf(vals[0]), Item: bytesOf(vals[1]), Cancelled: n}, true
}

// Finish completes a claimed job without a result (nothing is published).
func (j *JobFeed) Finish(ctx context.Context, id string) error {
	_, _, err := j.finish(ctx, id, nil, false, false)
	return err
}

// FinishWithResult completes a claimed job and publishes result on
// job.finish:[feed] for whoever waits for it.
func (j *JobFeed) FinishWithResult(ctx context.Context, id string, result []byte) error {
	_, _, err := j.finish(ctx, id, result, true, false)
	return err
}

// FinishAndClaim completes a claimed job with a result, as
// FinishWithResult, and claims the next available job in the same round
// trip, without waiting: ok is false when none is available. Workers use
// it to halve their round trips while work is queued.
func (j *JobFeed) FinishAndClaim(ctx context.Context, id string, result []byte) (next Job, ok bool, err error) {
	return j.finish(ctx, id, result, true, true)
}

func (j *JobFeed) finish(ctx context.Context, id string, result []byte, publish, claimNext bool) (Job, bool, error) {
	if err := j.check(id); err != nil {
		return Job{}, false, err
	}
	cmd := j.s.run(ctx, scripts.jobFinish,
		[]string{j.k.config, j.k.claimed, j.k.cancelled, j.k.published, j.k.finishes, j.k.items, jobRecordKey(j.name, id), j.k.ids},
		j.name, id, boolArg(publish), result, boolArg(claimNext))
	if err := cmd.Err(); err != nil && !isNil(err) {
		return Job{}, false, scriptError(err, j.name, TypeJob, "job finish")
	}
	if !claimNext {
		return Job{}, false, nil
	}
	vals, _ := cmd.Slice()
	next, ok := claimed(vals)
	return next, ok, nil
}

// CancelResult tells what a cancel did.
type CancelResult struct {
	// Count is how many times the job has now been cancelled.
	Count int
	// Stalled is true when the cancel went over the feed's retry limit and
	// stalled the job instead of making it available again.
	Stalled bool
}

// Cancel gives a claimed job back (its worker failed): it becomes available
// again, or is stalled once cancelled more often than the feed's retry limit.
func (j *JobFeed) Cancel(ctx context.Context, id string) (CancelResult, error) {
	if err := j.check(id); err != nil {
		return CancelResult{}, err
	}
	p, err := j.Policy(ctx)
	if err != nil {
		return CancelResult{}, err
	}
	return j.cancel(ctx, id, p.Retries, "")
}

func (j *JobFeed) cancel(ctx context.Context, id string, retries int, claimedBefore string) (CancelResult, error) {
	vals, err := j.s.run(ctx, scripts.jobCancel,
		[]string{j.k.config, j.k.claimed, j.k.cancelled, j.k.ids, j.k.stalled, j.k.published},
		id, retries, claimedBefore).Slice()
	if err != nil {
		return CancelResult{}, scriptError(err, j.name, TypeJob, "job cancel")
	}
	n, _ := vals[0].(int64)
	return CancelResult{Count: int(n), Stalled: stringOf(vals[1]) == "stalled"}, nil
}

// Stall takes a claimed job out of circulation for a person to inspect.
func (j *JobFeed) Stall(ctx context.Context, id string) error {
	return j.stall(ctx, id, "claimed")
}

func (j *JobFeed) stall(ctx context.Context, id, from string) error {
	if err := j.check(id); err != nil {
		return err
	}
	err := j.s.run(ctx, scripts.jobStall,
		[]string{j.k.config, j.k.claimed, j.k.cancelled, j.k.stalled, j.k.published, j.k.ids},
		id, from).Err()
	return scriptError(err, j.name, TypeJob, "job stall")
}

// Retry makes a stalled job available again.
func (j *JobFeed) Retry(ctx context.Context, id string) error {
	if err := j.check(id); err != nil {
		return err
	}
	err := j.s.run(ctx, scripts.jobRetry, []string{j.k.config, j.k.stalled, j.k.ids, j.k.published}, id).Err()
	return scriptError(err, j.name, TypeJob, "job retry")
}

// Retract removes a job from every state; a missing id is an error
// wrapping ErrItemNotFound.
func (j *JobFeed) Retract(ctx context.Context, id string) error {
	if err := j.check(id); err != nil {
		return err
	}
	err := j.s.run(ctx, scripts.jobRetract,
		[]string{j.k.config, j.k.items, j.k.ids, j.k.published, j.k.claimed, j.k.stalled, j.k.cancelled, jobRecordKey(j.name, id)}, id).Err()
	return scriptError(err, j.name, TypeJob, "job retract")
}

// Failures returns how many times a job was cancelled.
func (j *JobFeed) Failures(ctx context.Context, id string) (int, error) {
	st, err := j.State(ctx, id)
	return st.Cancelled, err
}

// Item returns a job's payload while it is in the feed (available,
// claimed or stalled), for inspection.
func (j *JobFeed) Item(ctx context.Context, id string) ([]byte, error) {
	if err := j.check(id); err != nil {
		return nil, err
	}
	b, err := j.read(ctx, "job item", "item", id).Text()
	if err != nil {
		return nil, scriptError(err, j.name, TypeJob, "job item")
	}
	return []byte(b), nil
}

// Available returns the ids waiting for a worker, next first.
func (j *JobFeed) Available(ctx context.Context) ([]string, error) {
	return j.list(ctx, "available")
}

// InFlight returns the ids claimed by workers, oldest claim first.
func (j *JobFeed) InFlight(ctx context.Context) ([]string, error) {
	return j.list(ctx, "inflight")
}

// StalledIDs returns the ids of stalled jobs.
func (j *JobFeed) StalledIDs(ctx context.Context) ([]string, error) {
	return j.list(ctx, "stalled")
}

func (j *JobFeed) list(ctx context.Context, op string) ([]string, error) {
	if j.err != nil {
		return nil, j.err
	}
	ids, err := j.read(ctx, "jobs "+op, op).StringSlice()
	if err != nil {
		return nil, scriptError(err, j.name, TypeJob, "jobs "+op)
	}
	return ids, nil
}

func (j *JobFeed) read(ctx context.Context, what string, args ...any) *redis.Cmd {
	return j.s.run(ctx, scripts.jobRead, []string{j.k.config, j.k.ids, j.k.items, j.k.claimed, j.k.stalled}, args...)
}

// JobState is where a job is, and what the bridge recorded of it.
type JobState struct {
	// State is one of "queued", "claimed", "stalled", "finished" or "unknown".
	State string
	// Cancelled is how many times the job was cancelled.
	Cancelled int
	// Result is the job's result when it finished with one and the bridge
	// recorded it (jobs put with a RecordTTL).
	Result []byte
	// HasResult tells a recorded empty result from none.
	HasResult bool
	// Submitter is who submitted the job, when its record says.
	Submitter string
	// LastError is the last failure its record keeps (field last_error of
	// feedbridge.job:QUEUE:ID), when a worker recorded one.
	LastError string
}

// Job states reported by JobFeed.State.
const (
	JobQueued   = "queued"
	JobClaimed  = "claimed"
	JobStalled  = "stalled"
	JobFinished = "finished"
	JobUnknown  = "unknown"
)

// State reports a job's state in one round trip. A job no longer in the
// feed is "finished" when the bridge holds its status record (put with a
// RecordTTL, not yet expired), else "unknown".
func (j *JobFeed) State(ctx context.Context, id string) (JobState, error) {
	if err := j.check(id); err != nil {
		return JobState{}, err
	}
	vals, err := j.s.run(ctx, scripts.jobState,
		[]string{j.k.config, j.k.items, j.k.claimed, j.k.stalled, j.k.cancelled, jobRecordKey(j.name, id)}, id).Slice()
	if err != nil {
		return JobState{}, scriptError(err, j.name, TypeJob, "job state")
	}
	st := JobState{State: stringOf(vals[0])}
	st.Cancelled, _ = strconv.Atoi(stringOf(vals[1]))
	if st.State == "gone" {
		st.State = JobUnknown
		if n, _ := vals[2].(int64); n == 1 {
			st.State = JobFinished
		}
	}
	if vals[3] != nil {
		st.Result, st.HasResult = bytesOf(vals[3]), true
	}
	if len(vals) > 4 {
		st.Submitter = stringOf(vals[4])
	}
	if len(vals) > 5 {
		st.LastError = stringOf(vals[5])
	}
	return st, nil
}

// JobPolicy is a job feed's timeout and retry limit.
type JobPolicy struct {
	// Timeout is how long a job may stay claimed before it is cancelled.
	Timeout time.Duration
	// Retries is how many cancels a job survives; negative = no limit.
	Retries int
}

// Policy reads the job feed's timeout and retry limit from its config,
// falling back to DefaultJobTimeout and DefaultJobRetries.
func (j *JobFeed) Policy(ctx context.Context) (JobPolicy, error) {
	if j.err != nil {
		return JobPolicy{}, j.err
	}
	vals, err := j.read(ctx, "job policy", "policy").Slice()
	if err != nil {
		return JobPolicy{}, scriptError(err, j.name, TypeJob, "job policy")
	}
	p := JobPolicy{Timeout: DefaultJobTimeout, Retries: DefaultJobRetries}
	if ms, err := strconv.ParseInt(stringOf(vals[0]), 10, 64); err == nil && ms > 0 {
		p.Timeout = time.Duration(ms) * time.Millisecond
	}
	if n, err := strconv.Atoi(stringOf(vals[1])); err == nil {
		p.Retries = n
	}
	return p, nil
}

func (j *JobFeed) check(id string) error {
	if j.err != nil {
		return j.err
	}
	return ValidateID(id)
}

// JobCounts is how many jobs of a job feed are in each state.
type JobCounts struct {
	Available, InFlight, Stalled int64
}

// Counts returns how many jobs are available, in flight and stalled, in
// one round trip (no type check: a key of another type reads as an error).
func (j *JobFeed) Counts(ctx context.Context) (JobCounts, error) {
	if j.err != nil {
		return JobCounts{}, j.err
	}
	pipe := j.s.rdb.Pipeline()
	avail := pipe.LLen(ctx, j.k.ids)
	claimed := pipe.ZCard(ctx, j.k.claimed)
	stalled := pipe.SCard(ctx, j.k.stalled)
	if _, err := pipe.Exec(ctx); err != nil {
		return JobCounts{}, fmt.Errorf("job counts %q: %w", j.name, err)
	}
	return JobCounts{Available: avail.Val(), InFlight: claimed.Val(), Stalled: stalled.Val()}, nil
}
