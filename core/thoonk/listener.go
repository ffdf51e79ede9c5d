package thoonk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The pubsub subscriptions that follow every feed. Patterns pick up feeds
// created after the listener started with no window in which their first
// events could be missed, and need no unsubscribe when a feed is deleted.
var (
	listenPatterns = []string{
		prefixChanPublish + "*", prefixChanEdit + "*", prefixChanRetract + "*",
		prefixChanPosition + "*", prefixChanFinish + "*", channelJournal + "*",
	}
	listenChannels = []string{channelNewFeed, channelDelFeed, channelConf}
)

// ListenerOptions tunes a Listener; the zero value is ready to use.
type ListenerOptions struct {
	// Logger receives connection state changes; nil means slog.Default().
	Logger *slog.Logger
	// PingInterval is how often the pubsub connection is pinged; after
	// three intervals without any reply the connection is taken as dead
	// and replaced. Default 5s.
	PingInterval time.Duration
	// Backoff spaces reconnect attempts. Default DefaultBackoff.
	Backoff Backoff
	// RecordQueue bounds the job results waiting to be written to their
	// status records; when full, a result is not recorded (its job then
	// reads as finished without a result). Default 4096.
	RecordQueue int
	// Notify maps channels of the caller's own (not the schema's) to a
	// function called with each message's payload, on the listener's read
	// loop: it must not block.
	Notify map[string]func(payload string)
	// RecordFeeds selects the job feeds whose results are recorded (the
	// bridge's action queues); nil records none. Jobs finished by
	// feedbridge's own JobFeed.Finish are recorded by the finish itself:
	// this covers jobs other Thoonk libraries finish.
	RecordFeeds func(feed string) bool
}

// Listener mirrors Redis pubsub into typed events for any number of
// in-process subscriptions, over one pubsub connection that it owns,
// health-checks and re-establishes with backoff. After every
// (re)connection each subscription receives an EventResync, because events
// published while no connection was subscribed are lost from pubsub.
type Listener struct {
	s    *Store
	log  *slog.Logger
	opts ListenerOptions

	mu       sync.RWMutex
	all      []*Subscription
	byFeed   map[string][]*Subscription
	patterns []*Subscription
	waiters  map[jobKey]map[*ResultWaiter]struct{}

	seq       atomic.Uint64
	connected atomic.Bool
	upMu      sync.Mutex
	up        chan struct{} // closed while connected

	received   atomic.Uint64
	reconnects atomic.Uint64
	overflows  atomic.Uint64
	dropped    atomic.Uint64
	invalid    atomic.Uint64

	records chan jobResult
}

type jobKey struct{ feed, id string }

type jobResult struct {
	jobKey
	result []byte
}

// NewListener returns a listener for the store's Redis; call Run to start it.
func NewListener(s *Store, opts ListenerOptions) *Listener {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.RecordQueue <= 0 {
		opts.RecordQueue = 4096
	}
	return &Listener{
		s: s, log: opts.Logger, opts: opts,
		byFeed:  map[string][]*Subscription{},
		waiters: map[jobKey]map[*ResultWaiter]struct{}{},
		up:      make(chan struct{}),
		records: make(chan jobResult, opts.RecordQueue),
	}
}

// SubscribeOptions selects what a subscription receives.
type SubscribeOptions struct {
	// Feed follows one feed; Pattern the feeds matching it; with neither,
	// every feed.
	Feed    string
	Pattern Pattern
	// Queue is the queue's capacity (0: DefaultQueueSize).
	Queue int
	// Journal receives the journal's item events (Rev set) instead of the
	// schema's publish, edit, retract and position events; feed events
	// (create, config, delete), job results and resyncs come either way.
	Journal bool
	// Both receives the journal's item events and the schema's, in the
	// order Redis published them.
	Both bool
}

// SubscribeWith follows what opts selects.
func (l *Listener) SubscribeWith(opts SubscribeOptions) *Subscription {
	if opts.Feed == "" && !opts.Pattern.IsZero() && opts.Pattern.Literal() {
		opts.Feed = opts.Pattern.String()
	}
	sub := newSubscription(l, opts.Queue)
	sub.journal, sub.both = opts.Journal, opts.Both
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case opts.Feed != "":
		sub.feed = opts.Feed
		l.byFeed[opts.Feed] = append(l.byFeed[opts.Feed], sub)
	case !opts.Pattern.IsZero():
		sub.pat = opts.Pattern
		l.patterns = append(l.patterns, sub)
	default:
		l.all = append(l.all, sub)
	}
	return sub
}

// Subscribe follows every feed.
func (l *Listener) Subscribe(queue int) *Subscription {
	return l.SubscribeWith(SubscribeOptions{Queue: queue})
}

// SubscribeFeed follows one feed.
func (l *Listener) SubscribeFeed(feed string, queue int) *Subscription {
	return l.SubscribeWith(SubscribeOptions{Feed: feed, Queue: queue})
}

// SubscribePattern follows the feeds whose names match p.
func (l *Listener) SubscribePattern(p Pattern, queue int) *Subscription {
	return l.SubscribeWith(SubscribeOptions{Pattern: p, Queue: queue})
}

func (l *Listener) unsubscribe(sub *Subscription) {
	del := func(list []*Subscription) []*Subscription {
		return slices.DeleteFunc(list, func(x *Subscription) bool { return x == sub })
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case sub.feed != "":
		if list := del(l.byFeed[sub.feed]); len(list) > 0 {
			l.byFeed[sub.feed] = list
		} else {
			delete(l.byFeed, sub.feed)
		}
	case !sub.pat.IsZero():
		l.patterns = del(l.patterns)
	default:
		l.all = del(l.all)
	}
}

// Connected reports whether the pubsub connection is up and subscribed.
func (l *Listener) Connected() bool { return l.connected.Load() }

// WaitConnected blocks until the pubsub connection is up or ctx ends.
func (l *Listener) WaitConnected(ctx context.Context) error {
	l.upMu.Lock()
	up := l.up
	l.upMu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ListenerStats are counters since the listener was created.
type ListenerStats struct {
	// Received counts the events received from Redis.
	Received uint64
	// Reconnects counts successful re-subscriptions after a lost connection.
	Reconnects uint64
	// Overflows counts subscription queues emptied by the overflow policy.
	Overflows uint64
	// DroppedRecords counts job results not recorded because the record queue was full.
	DroppedRecords uint64
	// Invalid counts messages dropped because their feed name or id is
	// not valid (written by some other program; adapters never see them).
	Invalid uint64
}

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Received: l.received.Load(), Reconnects: l.reconnects.Load(),
		Overflows: l.overflows.Load(), DroppedRecords: l.dropped.Load(), Invalid: l.invalid.Load(),
	}
}

// Run holds the pubsub connection until ctx ends, reconnecting with
// backoff and jitter; it returns nil when ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { l.writeRecords(ctx) })
	wg.Go(func() { l.sweepWaiters(ctx) })
	defer wg.Wait()
	attempt := 0
	everUp := false
	for {
		wasUp, err := l.session(ctx, everUp)
		everUp = everUp || wasUp
		l.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if wasUp {
			attempt = 0
		}
		d := l.opts.Backoff.Delay(attempt)
		attempt++
		l.log.Warn("redis pubsub connection lost", "err", err, "retry_in", d.Round(time.Millisecond))
		if Sleep(ctx, d) != nil {
			return nil
		}
	}
}

// session runs one pubsub connection until it fails; wasUp reports whether
// it got as far as being fully subscribed.
func (l *Listener) session(ctx context.Context, reconnect bool) (wasUp bool, err error) {
	ps := l.s.rdb.PSubscribe(ctx, listenPatterns...)
	defer ps.Close()
	channels := slices.Concat(listenChannels, slices.Sorted(maps.Keys(l.opts.Notify)))
	if err := ps.Subscribe(ctx, channels...); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	pingCtx, cancelPing := context.WithCancel(ctx)
	var pinger sync.WaitGroup
	pinger.Go(func() {
		t := time.NewTicker(l.opts.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-t.C:
				_ = ps.Ping(pingCtx) // a failure surfaces as a receive error or timeout
			}
		}
	})
	defer pinger.Wait()
	defer cancelPing()

	want := len(listenPatterns) + len(channels)
	confirmed := 0
	for {
		msg, err := ps.ReceiveTimeout(ctx, 3*l.opts.PingInterval)
		if err != nil {
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
				err = fmt.Errorf("no reply to pings for %s: %w", 3*l.opts.PingInterval, err)
			}
			return wasUp, err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			confirmed++
			if confirmed == want {
				wasUp = true
				if reconnect {
					l.reconnects.Add(1)
					l.log.Info("redis pubsub reconnected; consumers resync")
				}
				l.setConnected(true)
			}
		case *redis.Message:
			if fn := l.opts.Notify[m.Channel]; fn != nil {
				fn(m.Payload)
				continue
			}
			ev, ok := parseMessage(m.Channel, m.Payload)
			if !ok {
				continue
			}
			if ValidateFeedName(ev.Feed) != nil || (ev.ID != "" && ValidateID(ev.ID) != nil) {
				l.invalid.Add(1) // no adapter may relay a name with CR/LF or controls
				continue
			}
			l.received.Add(1)
			ev.Seq = l.seq.Add(1)
			ev.At = time.Now()
			l.dispatch(ev)
		}
	}
}

// setConnected flips the connection state (only Run calls it); going up
// broadcasts a resync, before WaitConnected returns, so that a
// subscription made after WaitConnected gets no stale one.
func (l *Listener) setConnected(up bool) {
	was := l.connected.Swap(up)
	if up && !was {
		l.dispatch(Event{Type: EventResync, Reason: ResyncConnected, Seq: l.seq.Add(1), At: time.Now()})
	}
	l.upMu.Lock()
	switch {
	case up && !was:
		close(l.up)
	case !up && was:
		l.up = make(chan struct{})
	}
	l.upMu.Unlock()
}

// dispatch hands ev to every subscription it concerns and to job waiters.
func (l *Listener) dispatch(ev Event) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, s := range l.all {
		s.push(ev)
	}
	if ev.Type == EventResync {
		for _, list := range l.byFeed {
			for _, s := range list {
				s.push(ev)
			}
		}
		for _, s := range l.patterns {
			s.push(ev)
		}
		for _, ws := range l.waiters {
			for w := range ws {
				w.poke()
			}
		}
		return
	}
	for _, s := range l.byFeed[ev.Feed] {
		s.push(ev)
	}
	for _, s := range l.patterns {
		if s.pat.Match(ev.Feed) {
			s.push(ev)
		}
	}
	if ev.Type == EventJobFinish {
		for w := range l.waiters[jobKey{ev.Feed, ev.ID}] {
			w.deliver(ev.Item)
		}
		if l.opts.RecordFeeds != nil && l.opts.RecordFeeds(ev.Feed) {
			select {
			case l.records <- jobResult{jobKey{ev.Feed, ev.ID}, ev.Item}:
			default:
				l.dropped.Add(1)
			}
		}
	}
}

// writeRecords stores job results in their status records, off the
// listener's read loop, pipelining whatever has queued up.
func (l *Listener) writeRecords(ctx context.Context) {
	for {
		var first jobResult
		select {
		case <-ctx.Done():
			return
		case first = <-l.records:
		}
		pipe := l.s.rdb.Pipeline()
		batch := []jobResult{first}
		for len(batch) < 256 {
			select {
			case r := <-l.records:
				batch = append(batch, r)
				continue
			default:
			}
			break
		}
		cmds := make([]*redis.Cmd, len(batch))
		for i, r := range batch {
			cmds[i] = scripts.jobRecord.EvalSha(ctx, pipe, []string{jobRecordKey(r.feed, r.id)}, r.result)
		}
		_, _ = pipe.Exec(ctx) // each command's error is checked below
		for i, cmd := range cmds {
			err := cmd.Err()
			if isNoScript(err) { // not loaded on this server yet: Run loads it
				err = l.s.run(ctx, scripts.jobRecord, []string{jobRecordKey(batch[i].feed, batch[i].id)}, batch[i].result).Err()
			}
			if err != nil && !isNil(err) && ctx.Err() == nil {
				l.log.Warn("record job result", "feed", batch[i].feed, "id", batch[i].id, "err", err)
			}
		}
	}
}
