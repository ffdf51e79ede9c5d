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
	// ErrMalformed is the parent of every [MalformedError].
	ErrMalformed = errors.New("malformed feed")
)

// MalformedError reports a feed whose data does not follow the schema: a
// key of the feed holds another Redis type than the schema's, its config
// names no known type, or its name is not a valid feed name. Only that
// feed is affected: listings skip it, requests naming it get this error.
type MalformedError struct {
	Feed   string
	Reason string
}

// Error names the feed and what is wrong with it.
func (e *MalformedError) Error() string {
	return fmt.Sprintf("feed %q is malformed: %s", e.Feed, e.Reason)
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Unwrap() error { return ErrMalformed }

// malformed returns a MalformedError.
func malformed(feed, format string, args ...any) error {
	return &MalformedError{Feed: feed, Reason: fmt.Sprintf(format, args...)}
}

// unknownType reports a config whose type the schema does not know.
func unknownType(feed string, typ any) error {
	return malformed(feed, "its config's type %q is not one of feed, sorted_feed, queue, job", typ)
}

// isWrongType reports Redis refusing a command on a key of another type.
func isWrongType(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(rerr.Error(), "WRONGTYPE")
}

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
			if !FeedType(detail).Valid() {
				return unknownType(feed, detail)
			}
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
		if isWrongType(err) {
			return malformed(feed, "%s: a key of the feed holds another Redis type than the schema's", ctx)
		}
	}
	return fmt.Errorf("%s %q: %w", ctx, feed, err)
}
