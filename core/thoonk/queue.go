package thoonk

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Queue is a handle on a queue (type "queue"): items taken once, then gone.
type Queue struct {
	s    *Store
	name string
	k    keys
	err  error
}

// Queue returns a handle on a queue; a bad name is reported by every operation.
func (s *Store) Queue(name string) *Queue {
	return &Queue{s: s, name: name, k: feedKeys(name), err: s.validFeed(name)}
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Put adds an item (taken next when high is true) and returns its id.
func (q *Queue) Put(ctx context.Context, item []byte, high bool) (string, error) {
	if q.err != nil {
		return "", q.err
	}
	id := NewID()
	err := q.s.run(ctx, scripts.queuePut, []string{q.k.config, q.k.ids, q.k.items, q.k.publishes},
		id, item, boolArg(high)).Err()
	if err != nil {
		return "", scriptError(err, q.name, TypeQueue, "queue put")
	}
	return id, nil
}

// Get takes the next item, waiting up to timeout (0 = do not wait) for one
// to arrive; it returns an error wrapping ErrTimeout when none came.
func (q *Queue) Get(ctx context.Context, timeout time.Duration) (id string, item []byte, err error) {
	if q.err != nil {
		return "", nil, q.err
	}
	keys := []string{q.k.config, q.k.ids, q.k.items}
	err = pollTake(ctx, q.s, q.k.ids, timeout, timeout, func(popped string) (bool, error) {
		vals, err := q.s.run(ctx, scripts.queueTake, keys, popped).Slice()
		if isNil(err) {
			return false, nil
		}
		if err != nil {
			return false, scriptError(err, q.name, TypeQueue, "queue get")
		}
		if len(vals) != 2 {
			return false, nil // an id without an item: skip it
		}
		id, item = stringOf(vals[0]), bytesOf(vals[1])
		return true, nil
	})
	if err != nil {
		return "", nil, err
	}
	return id, item, nil
}

// pollTake calls take with "" (take the next available entry at once) and,
// while that finds nothing, waits up to timeout with BRPOP on list and
// calls take with the popped id; each BRPOP waits at most slice, so that
// take runs again (job feeds: it makes due retries available). It returns
// ErrTimeout when nothing came.
func pollTake(ctx context.Context, s *Store, list string, timeout, slice time.Duration, take func(popped string) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	popped := ""
	for {
		ok, err := take(popped)
		if err != nil || ok {
			return err
		}
		popped, err = blockingPop(ctx, s, list, min(time.Until(deadline), slice))
		if errors.Is(err, ErrTimeout) && time.Until(deadline) >= time.Millisecond {
			continue // the slice (or the whole seconds) ran out; wait the rest
		}
		if err != nil {
			return fmt.Errorf("wait on %s: %w", list, err)
		}
	}
}

// blockingPop waits up to wait for an id on a list (BRPOP); it returns
// ErrTimeout when none arrives. go-redis sends BRPOP timeouts in whole
// seconds, so whole seconds go through BRPop and a sub-second rest through
// a raw BRPOP with a fractional timeout (Redis 6+), which stays within the
// client's ordinary read timeout.
func blockingPop(ctx context.Context, s *Store, list string, wait time.Duration) (string, error) {
	if wait < time.Millisecond {
		return "", ErrTimeout
	}
	var res []string
	var err error
	if wait >= time.Second {
		res, err = s.rdb.BRPop(ctx, wait.Truncate(time.Second), list).Result()
	} else {
		cmd := redis.NewStringSliceCmd(ctx, "brpop", list, strconv.FormatFloat(wait.Seconds(), 'f', 3, 64))
		_ = s.rdb.Process(ctx, cmd)
		res, err = cmd.Result()
	}
	if isNil(err) {
		return "", ErrTimeout
	}
	if err != nil {
		return "", err
	}
	return res[1], nil
}
