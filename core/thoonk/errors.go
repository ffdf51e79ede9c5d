package thoonk

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Errors returned by store operations; test for them with errors.Is.
var (
	// ErrNotFound is the parent of every not-found error (feed, item, job).
	ErrNotFound = errors.New("not found")
	// ErrFeedNotFound means the feed does not exist.
	ErrFeedNotFound = fmt.Errorf("feed %w", ErrNotFound)
	// ErrItemNotFound means the item (or job) id is not in the feed.
	ErrItemNotFound = fmt.Errorf("item %w", ErrNotFound)
	// ErrRelativeNotFound means the item a sorted-feed position refers to does not exist.
	ErrRelativeNotFound = fmt.Errorf("relative item %w", ErrNotFound)
	// ErrFeedExists means a feed of that name already exists.
	ErrFeedExists = errors.New("feed already exists")
	// ErrItemExists means an item with that id is already in the feed.
	ErrItemExists = errors.New("item id already exists")
	// ErrJobExists means a job with that id is already in the job feed.
	ErrJobExists = errors.New("job id already exists")
	// ErrNotClaimed means the job is not in flight, so it cannot be finished, cancelled or stalled.
	ErrNotClaimed = errors.New("job is not claimed")
	// ErrNotStalled means the job is not stalled, so it cannot be retried.
	ErrNotStalled = errors.New("job is not stalled")
	// ErrWrongType is the parent of every [WrongTypeError].
	ErrWrongType = errors.New("wrong feed type")
	// ErrInvalid is the parent of every validation error (names, ids, positions, cursors).
	ErrInvalid = errors.New("invalid")
	// ErrTimeout means a blocking read or a wait ended without a result.
	ErrTimeout = errors.New("timed out")
	// ErrConflict is the parent of every [ConflictError]: an item changed
	// since the revision a change was based on.
	ErrConflict = errors.New("conflict")
)

// WrongTypeError reports an operation of one feed type applied to a feed of another.
type WrongTypeError struct {
	Feed string
	Want FeedType
	Got  FeedType
}

// Error names the feed, its real type and the type the operation needs.
func (e *WrongTypeError) Error() string {
	return fmt.Sprintf("feed %q is a %s, not a %s", e.Feed, e.Got, e.Want)
}

// Unwrap makes errors.Is(err, ErrWrongType) true.
func (e *WrongTypeError) Unwrap() error { return ErrWrongType }

// scriptError turns the error replies of our Lua scripts into typed errors.
// Scripts reply "FB<CODE> [detail]"; anything else is a Redis or network
// error and is wrapped with ctx.
func scriptError(err error, feed string, want FeedType, ctx string) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := strings.TrimPrefix(rerr.Error(), "ERR ")
		code, detail, _ := strings.Cut(msg, " ")
		switch code {
		case "FBNOFEED":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrFeedNotFound)
		case "FBTYPE":
			return &WrongTypeError{Feed: feed, Want: want, Got: FeedType(detail)}
		case "FBNOITEM":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrItemNotFound)
		case "FBNOREL":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrRelativeNotFound)
		case "FBITEMEXISTS":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrItemExists)
		case "FBEXISTS":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrJobExists)
		case "FBNOTCLAIMED":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrNotClaimed)
		case "FBNOTSTALLED":
			return fmt.Errorf("%s %q: %w", ctx, feed, ErrNotStalled)
		}
	}
	return fmt.Errorf("%s %q: %w", ctx, feed, err)
}
