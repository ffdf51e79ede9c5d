package atom

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// WebSubConfig is the atom.websub section: the bridge as a WebSub hub
// (W3C Recommendation, 23 January 2018) for its own Atom, RSS and JSON Feed
// documents.
type WebSubConfig struct {
	// Enabled advertises the hub in every feed document and serves POST /websub.
	Enabled bool `yaml:"enabled"`
	// Lease bounds the subscriptions' hub.lease_seconds.
	Lease LeaseConfig `yaml:"lease"`
	// Callbacks restricts the subscribers' callback URLs.
	Callbacks CallbackConfig `yaml:"callbacks"`
	// VerifyTimeout bounds one verification of intent (the GET to the callback).
	VerifyTimeout time.Duration `yaml:"verify_timeout"`
	// MaxVerifications bounds the verifications in progress in one process;
	// beyond it, subscription requests are answered 503.
	MaxVerifications int `yaml:"max_verifications"`
	// MaxSubscriptions bounds the hub's subscriptions (all processes).
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// Signature is the HMAC algorithm of X-Hub-Signature: sha256, sha384 or sha512.
	Signature string `yaml:"signature"`
	// Delivery tunes content distribution.
	Delivery DeliveryConfig `yaml:"delivery"`
	// RateLimit bounds subscription requests per client address.
	RateLimit RateLimit `yaml:"rate_limit"`
}

// LeaseConfig bounds hub.lease_seconds.
type LeaseConfig struct {
	// Default is the lease of a request without hub.lease_seconds.
	Default time.Duration `yaml:"default"`
	// Min and Max clamp the requested lease.
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// CallbackConfig restricts callback URLs.
type CallbackConfig struct {
	// RequireHTTPS refuses http:// callbacks.
	RequireHTTPS bool `yaml:"require_https"`
	// MaxBytes bounds a callback URL's length.
	MaxBytes int `yaml:"max_bytes"`
	// Allow lists networks (CIDRs or addresses) callbacks may reach although
	// they are loopback, private, link-local or otherwise special (tests,
	// intranets).
	Allow []string `yaml:"allow"`
}

// DeliveryConfig tunes content distribution.
type DeliveryConfig struct {
	// Timeout bounds one delivery POST.
	Timeout time.Duration `yaml:"timeout"`
	// JobTimeout is how long a delivery job may stay claimed before another
	// process takes it over (its worker died); it must exceed Timeout.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// Workers is the number of deliveries (and fan-outs) at once, per process.
	Workers int `yaml:"workers"`
	// PerCallback is the number of deliveries at once to one callback URL,
	// per process.
	PerCallback int `yaml:"per_callback"`
	// MaxPending bounds the delivery jobs waiting for a worker; while more
	// wait, fan-outs of new changes are deferred.
	MaxPending int `yaml:"max_pending"`
	// Retry spaces the attempts of a failing delivery.
	Retry RetryConfig `yaml:"retry"`
	// DropAfter drops (denies) a subscription whose deliveries have failed
	// for this long without a success; 0 keeps it until its lease ends.
	DropAfter time.Duration `yaml:"drop_after"`
}

// RetryConfig is a failing delivery's retry policy: exponential backoff
// from Min to Max with jitter, at most Attempts retries per notification.
type RetryConfig struct {
	Attempts int           `yaml:"attempts"`
	Min      time.Duration `yaml:"min"`
	Max      time.Duration `yaml:"max"`
}

// defaultWebSub holds the defaults of the atom.websub section.
func defaultWebSub() WebSubConfig {
	return WebSubConfig{
		Lease:            LeaseConfig{Default: 240 * time.Hour, Min: 5 * time.Minute, Max: 240 * time.Hour},
		Callbacks:        CallbackConfig{MaxBytes: 2048},
		VerifyTimeout:    10 * time.Second,
		MaxVerifications: 64,
		MaxSubscriptions: 100000,
		Signature:        "sha256",
		Delivery: DeliveryConfig{
			Timeout: 10 * time.Second, JobTimeout: 60 * time.Second, Workers: 64, PerCallback: 2, MaxPending: 100000,
			Retry:     RetryConfig{Attempts: 8, Min: 10 * time.Second, Max: time.Hour},
			DropAfter: 72 * time.Hour,
		},
		RateLimit: RateLimit{PerIP: core.Rate{Rate: 1, Burst: 20}, MaxClients: 10000},
	}
}

// signatures are the X-Hub-Signature algorithms offered (WebSub 7.1.1;
// sha1 is left out, as section 8.3 advises).
var signatures = map[string]func() hash.Hash{"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}

// validate checks the section (key is its path, "websub") and reports
// every problem at once.
func (c *WebSubConfig) validate(sec *core.Section, key string) error {
	var errs []error
	bad := func(k, format string, args ...any) { errs = append(errs, sec.Errorf(key+"."+k, format, args...)) }
	l := c.Lease
	if l.Min < time.Second {
		bad("lease.min", "must be at least 1s, for example 5m")
	}
	if l.Max < l.Min {
		bad("lease.max", "must be at least lease.min (%s), for example 240h (WebSub suggests 10 days)", l.Min)
	}
	if l.Default < l.Min || l.Default > l.Max {
		bad("lease.default", "must be between lease.min (%s) and lease.max (%s), for example 240h", l.Min, l.Max)
	}
	if c.Callbacks.MaxBytes < 64 || c.Callbacks.MaxBytes > 8192 {
		bad("callbacks.max_bytes", "must be between 64 and 8192, for example 2048")
	}
	for i, a := range c.Callbacks.Allow {
		if _, err := parsePrefix(a); err != nil {
			bad(fmt.Sprintf("callbacks.allow[%d]", i), "%q is not an IP address or CIDR such as 10.0.0.0/8 or 127.0.0.1", a)
		}
	}
	if c.VerifyTimeout <= 0 {
		bad("verify_timeout", "must be positive, for example 10s")
	}
	if c.MaxVerifications < 1 {
		bad("max_verifications", "must be at least 1, for example 64")
	}
	if c.MaxSubscriptions < 1 {
		bad("max_subscriptions", "must be at least 1, for example 100000")
	}
	if signatures[c.Signature] == nil {
		bad("signature", "%q is not offered: use sha256, sha384 or sha512", c.Signature)
	}
	d := c.Delivery
	if d.Timeout <= 0 {
		bad("delivery.timeout", "must be positive, for example 10s")
	}
	if d.JobTimeout <= d.Timeout {
		bad("delivery.job_timeout", "must be longer than delivery.timeout (%s), for example 60s", d.Timeout)
	}
	if d.Workers < 1 || d.Workers > 1024 {
		bad("delivery.workers", "must be between 1 and 1024, for example 64")
	}
	if d.PerCallback < 1 {
		bad("delivery.per_callback", "must be at least 1, for example 2")
	}
	if d.MaxPending < 1 {
		bad("delivery.max_pending", "must be at least 1, for example 100000")
	}
	if d.Retry.Attempts < 0 {
		bad("delivery.retry.attempts", "must not be negative (0: no retry), for example 8")
	}
	if d.Retry.Min <= 0 {
		bad("delivery.retry.min", "must be positive, for example 10s")
	}
	if d.Retry.Max < d.Retry.Min {
		bad("delivery.retry.max", "must be at least delivery.retry.min (%s), for example 1h", d.Retry.Min)
	}
	if d.DropAfter < 0 {
		bad("delivery.drop_after", "must not be negative (0s: keep failing subscriptions until their lease ends), for example 72h")
	}
	errs = append(errs, c.RateLimit.PerIP.Validate(sec, key+".rate_limit.per_ip"))
	if c.RateLimit.MaxClients < 1 {
		bad("rate_limit.max_clients", "must be at least 1, for example 10000")
	}
	return errors.Join(errs...)
}

// parsePrefix reads a CIDR, or an address as a one-address prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// webSub is the hub: the subscription endpoint, and the workers that fan
// changes out to subscriptions and deliver them. Its state lives in Redis
// (websub_store.go), so every process of a fleet serves the same hub.
type webSub struct {
	b      *Bridge
	cfg    WebSubConfig
	allow  []netip.Prefix
	sign   func() hash.Hash
	limits *core.RateLimiter
	client *http.Client
	m      *webSubMetrics
	docs   docCache

	mu   sync.Mutex
	hub  *core.Hub
	ctx  context.Context // Run's, nil while the hub does not run
	jobs *thoonk.JobFeed
	// verifying holds a token per verification in progress.
	verifying chan struct{}
	bg        sync.WaitGroup // verifications and denial notices

	// events handed over by the atom loop, for the notifier
	pendMu    sync.Mutex
	pend      []change
	pendAll   bool
	pendReady chan struct{}
	seen      map[[sha256.Size]byte]occurrence // the atom loop's own

	// feeds having subscriptions: as Redis listed them at the last
	// refresh, and as this process added them since (a refresh that read
	// Redis before a subscription was stored must not forget it)
	feedsMu sync.RWMutex
	feeds   map[string]bool
	added   map[string]time.Time
	known   atomic.Bool // the feeds were read from Redis once

	// deliveries in progress per callback URL
	busyMu sync.Mutex
	busy   map[string]int

	wake chan struct{} // wakes the sweeper: a retry was scheduled
}

// change is a feed change handed to the notifier, with the dedup key
// every process that saw it derives alike.
type change struct {
	feed, key string
	at        time.Time
}

// occurrence counts how often an event with the same content was seen.
type occurrence struct {
	n    int
	last time.Time
}

func newWebSub(b *Bridge, cfg WebSubConfig) *webSub {
	w := &webSub{
		b: b, cfg: cfg, sign: signatures[cfg.Signature],
		limits:    core.NewRateLimiter(cfg.RateLimit.MaxClients),
		m:         newWebSubMetrics(),
		verifying: make(chan struct{}, cfg.MaxVerifications),
		pendReady: make(chan struct{}, 1),
		seen:      map[[sha256.Size]byte]occurrence{},
		feeds:     map[string]bool{},
		added:     map[string]time.Time{},
		busy:      map[string]int{},
		wake:      make(chan struct{}, 1),
	}
	for _, a := range cfg.Callbacks.Allow {
		p, _ := parsePrefix(a) // validated
		w.allow = append(w.allow, p)
	}
	w.client = w.newClient()
	return w
}

// ---- running ----

// Timings of the hub's background work.
const (
	// sweepInterval is the longest pause of the sweeper: leases, lost
	// marks and the subscribed-feed list are looked at this often.
	sweepInterval = 2 * time.Second
	// maintainInterval spaces job maintenance passes on the delivery queue.
	maintainInterval = 5 * time.Second
	// staleMark is how old a change mark must be before the sweeper puts
	// its job again (the process that marked it may have died before).
	staleMark = 30 * time.Second
	// dedupWindow is how long a feed event's dedup key lives: every
	// process of a fleet handles the event within it, or (lagging more)
	// fans it out again (the deliveries of documents already delivered
	// are skipped).
	dedupWindow = 30 * time.Second
	// takers is the number of goroutines per process waiting for jobs
	// (each holds a Redis connection in a blocking pop).
	takers = 2
	// maxSeen bounds the event contents whose occurrences are counted.
	maxSeen = 100000
	// maxPend bounds the changes waiting for the notifier; beyond, they
	// are replaced by a notice of every subscribed feed.
	maxPend = 4096
	// deferPause is how long a fan-out waits while too many deliveries
	// are pending, and (with jitter) a delivery whose callback is busy.
	deferPause = time.Second
)

// run serves the hub until ctx ends: the notifier, the job takers and the
// sweeper. It returns when all of them (and verifications in progress)
// have stopped.
func (w *webSub) run(ctx context.Context, hub *core.Hub) {
	hub.Metrics.Register(w.m.collectors(w)...)
	w.mu.Lock()
	w.hub, w.ctx, w.jobs = hub, ctx, hub.Store.Jobs(webSubQueue)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.ctx = nil
		w.mu.Unlock()
		w.bg.Wait()
	}()
	for attempt := 0; ; attempt++ {
		err := w.ensureQueue(ctx)
		if err == nil {
			err = w.refreshFeeds(ctx)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		hub.Log.Warn("websub: cannot prepare the delivery queue; retrying", "queue", webSubQueue, "err", err)
		if thoonk.Sleep(ctx, thoonk.DefaultBackoff.Delay(attempt)) != nil {
			return
		}
	}
	// Changes made while no process of this hub ran, or before this one
	// knew its subscribed feeds, were not handed over: every subscribed
	// feed is fanned out once now (documents already delivered are not
	// sent again).
	w.known.Store(true)
	w.changed(nil, true)
	var wg sync.WaitGroup
	slots := make(chan struct{}, w.cfg.Delivery.Workers)
	for range takers {
		wg.Go(func() { w.take(ctx, slots, &wg) })
	}
	wg.Go(func() { w.notifier(ctx) })
	wg.Go(func() { w.sweeper(ctx) })
	wg.Wait()
}

// running returns the hub's context, or nil when it does not run.
func (w *webSub) running() (context.Context, *core.Hub) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ctx, w.hub
}

// spawn runs f with the hub's context in the background, waited for when
// the hub stops; it reports false (and runs nothing) when the hub does
// not run.
func (w *webSub) spawn(f func(ctx context.Context)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil {
		return false
	}
	ctx := w.ctx
	w.bg.Go(func() { f(ctx) })
	return true
}

// ensureQueue creates the delivery job feed, or updates its timeout.
func (w *webSub) ensureQueue(ctx context.Context) error {
	cfg := map[string]string{
		thoonk.ConfigJobTimeout: strconv.FormatInt(w.cfg.Delivery.JobTimeout.Milliseconds(), 10),
		// Failures are the hub's to count (retry, drop_after): the job
		// feed only brings back the jobs of workers that died.
		thoonk.ConfigJobRetries: "-1",
	}
	err := w.hub.Store.Create(ctx, webSubQueue, thoonk.TypeJob, map[string]string{
		thoonk.ConfigJobTimeout: cfg[thoonk.ConfigJobTimeout], thoonk.ConfigJobRetries: cfg[thoonk.ConfigJobRetries],
		"title": "feedbridge WebSub deliveries",
	})
	if errors.Is(err, thoonk.ErrFeedExists) {
		return w.hub.Store.SetConfig(ctx, webSubQueue, cfg)
	}
	return err
}

// take claims jobs while a worker slot is free and runs each in its own
// goroutine (at most delivery.workers at once).
func (w *webSub) take(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) {
	attempt := 0
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		job, err := w.jobs.Get(ctx, time.Second)
		if err != nil {
			<-slots
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, thoonk.ErrTimeout):
				continue
			case errors.Is(err, thoonk.ErrFeedNotFound):
				err = w.ensureQueue(ctx)
			}
			if err != nil {
				d := thoonk.DefaultBackoff.Delay(attempt)
				attempt++
				w.hub.Log.Warn("websub: take a delivery job", "err", err, "retry_in", d.Round(time.Millisecond))
				_ = thoonk.Sleep(ctx, d)
			}
			continue
		}
		attempt = 0
		wg.Go(func() {
			defer func() { <-slots }()
			w.handle(ctx, job)
		})
	}
}

// errorPause is how long a job that failed (Redis, or a render) waits
// before it runs again, with jitter.
const errorPause = 5 * time.Second

// handle runs one job (a fan-out or a delivery) and finishes it once its
// outcome is recorded. A job the stopping process could not complete is
// given back at once, to run in another process; one that failed
// otherwise (Redis, a render) runs again after errorPause (or, when even
// that cannot be recorded, after delivery.job_timeout, by job
// maintenance). A change that came while it ran is queued again.
func (w *webSub) handle(ctx context.Context, job thoonk.Job) {
	member, ok := memberOf(job)
	var err error
	switch {
	case !ok:
		w.hub.Log.Warn("websub: dropping a job of unknown kind", "job", job.ID)
	case member[0] == kindFanOut:
		err = w.fanOut(ctx, member[2:])
	default:
		err = w.deliver(ctx, member[2:])
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	switch {
	case err != nil && ctx.Err() != nil:
		_, _ = w.jobs.Cancel(fctx, job.ID)
		return
	case err != nil:
		pause := errorPause/2 + rand.N(errorPause)
		w.hub.Log.Warn("websub: job failed; it will run again", "job", job.ID, "err", err, "retry_in", pause.Round(time.Millisecond))
		if err := w.store().retryLater(fctx, member, time.Now().Add(pause)); err != nil {
			return // left claimed: job maintenance gives it back
		}
		w.scheduled()
	}
	if err := w.jobs.Finish(fctx, job.ID); err != nil {
		w.hub.Log.Warn("websub: finish job", "job", job.ID, "err", err)
		return
	}
	if ok {
		again, err := w.store().pendingAgain(fctx, member)
		if err == nil && again {
			err = w.enqueue(fctx, member)
		}
		if err != nil {
			// the sweeper puts stale marks again
			w.hub.Log.Warn("websub: queue a change that came meanwhile", "job", job.ID, "err", err)
		}
	}
}

// enqueue puts the job of a marked member; a job already queued or
// running for it is enough.
func (w *webSub) enqueue(ctx context.Context, member string) error {
	id, payload, high := jobFor(member)
	_, err := w.jobs.Put(ctx, payload, thoonk.PutOptions{ID: id, High: high})
	if errors.Is(err, thoonk.ErrFeedNotFound) { // Redis lost it (a restart without persistence)
		if err = w.ensureQueue(ctx); err == nil {
			_, err = w.jobs.Put(ctx, payload, thoonk.PutOptions{ID: id, High: high})
		}
	}
	if errors.Is(err, thoonk.ErrJobExists) {
		return nil
	}
	return err
}

// enqueueAll puts the jobs of several members, a few at a time (the
// store pipelines concurrent calls).
func (w *webSub) enqueueAll(ctx context.Context, members []string) error {
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, m := range members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := w.enqueue(ctx, m); err != nil {
				mu.Lock()
				first = firstErr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// ---- changes: from the atom loop to fan-out jobs ----

// changed hands a batch of recorded feed events to the notifier (called
// by the atom loop after it recorded them, so that fan-outs render the
// recorded times). Only feeds with subscriptions count (all, until the
// hub read them: the notifier sorts them out). Each event gets a dedup key
// from its content and how often this process saw that content lately,
// the same in every process of a fleet. Overflow policy: beyond maxPend
// waiting changes they are dropped and every subscribed feed is notified
// instead (deliveries of unchanged documents are skipped).
func (w *webSub) changed(evs []thoonk.Event, resync bool) {
	var add []change
	for _, ev := range evs {
		if !w.known.Load() || w.subscribed(ev.Feed) {
			add = append(add, change{feed: ev.Feed, key: w.dedupKey(ev), at: ev.At})
		}
	}
	if len(add) == 0 && !resync {
		return
	}
	w.pendMu.Lock()
	if resync || len(w.pend)+len(add) > maxPend {
		w.pend, w.pendAll = nil, true
	} else if !w.pendAll {
		w.pend = append(w.pend, add...)
	}
	w.pendMu.Unlock()
	poke(w.pendReady)
}

// poke wakes the goroutine waiting on ch, unless it was woken already.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// dedupKey names an event for every process: a hash of its content and
// its journal revision (each change has its own, the same in every
// process), and the number of times this content was seen within
// dedupWindow (for events without a revision: publish, retract, publish
// of the same item are then three changes).
func (w *webSub) dedupKey(ev thoonk.Event) string {
	h := sha256.New()
	for _, part := range []string{ev.Feed, ev.Type.String(), ev.ID, ev.Position, ev.Instance, ev.Rev} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(ev.Item)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	now := time.Now()
	if len(w.seen) > maxSeen {
		for k, o := range w.seen {
			if now.Sub(o.last) > dedupWindow {
				delete(w.seen, k)
			}
		}
		if len(w.seen) > maxSeen { // counts start over (see dedupKey)
			clear(w.seen)
		}
	}
	o := w.seen[sum]
	if now.Sub(o.last) > dedupWindow {
		o.n = 0
	}
	o.n++
	o.last = now
	w.seen[sum] = o
	return keySeen + hex.EncodeToString(sum[:16]) + "." + strconv.Itoa(o.n)
}

// notifier turns handed-over changes into fan-out jobs: one process (the
// first to set an event's dedup key) marks the feed changed and queues its
// fan-out. After a resync, or when a mark failed, every feed concerned is
// marked without dedup.
func (w *webSub) notifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.pendReady:
		}
		w.pendMu.Lock()
		batch, all := w.pend, w.pendAll
		w.pend, w.pendAll = nil, false
		w.pendMu.Unlock()
		batch = slices.DeleteFunc(batch, func(c change) bool { return !w.subscribed(c.feed) })
		for attempt := 0; ; attempt++ {
			err := w.notify(ctx, batch, all, attempt == 0)
			if err == nil || ctx.Err() != nil {
				break
			}
			d := thoonk.DefaultBackoff.Delay(attempt)
			w.hub.Log.Warn("websub: queue fan-outs of changed feeds; retrying", "err", err, "retry_in", d.Round(time.Millisecond))
			if thoonk.Sleep(ctx, d) != nil {
				return
			}
		}
	}
}

// notify marks the changed feeds and queues their fan-outs: the feeds of
// the batch whose events this process takes (all of them without dedup:
// after a failed attempt, whose dedup keys may be set already), and with
// every, each subscribed feed.
func (w *webSub) notify(ctx context.Context, batch []change, every, dedup bool) error {
	feeds := map[string]time.Time{}
	note := func(feed string, at time.Time) {
		if t, ok := feeds[feed]; !ok || at.Before(t) {
			feeds[feed] = at
		}
	}
	if every {
		for _, f := range w.subscribedFeeds() {
			note(f, time.Now())
		}
	}
	if !dedup {
		for _, c := range batch {
			note(c.feed, c.at)
		}
	} else if len(batch) > 0 {
		won, err := w.store().claimEvents(ctx, batch)
		if err != nil {
			return err
		}
		for i, c := range batch {
			if won[i] {
				note(c.feed, c.at)
			}
		}
	}
	for feed, at := range feeds {
		if err := w.mark(ctx, at, fanOutMember(feed)); err != nil {
			return err
		}
	}
	return nil
}

// mark records that members changed at at and queues the jobs of those
// not waiting for a retry.
func (w *webSub) mark(ctx context.Context, at time.Time, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	put, err := w.store().mark(ctx, at, members)
	if err != nil {
		return err
	}
	return w.enqueueAll(ctx, put)
}

// ---- subscribed feeds ----

// addedKept is how long a feed this process subscribed to counts as
// subscribed without Redis saying so (its subscription is being stored).
const addedKept = time.Minute

// subscribed reports whether feed has subscriptions, as this process knows.
func (w *webSub) subscribed(feed string) bool {
	w.feedsMu.RLock()
	defer w.feedsMu.RUnlock()
	_, added := w.added[feed]
	return w.feeds[feed] || added
}

func (w *webSub) subscribedFeeds() []string {
	w.feedsMu.RLock()
	defer w.feedsMu.RUnlock()
	out := make([]string, 0, len(w.feeds)+len(w.added))
	for f := range w.feeds {
		out = append(out, f)
	}
	for f := range w.added {
		if !w.feeds[f] {
			out = append(out, f)
		}
	}
	return out
}

// addFeed notes at once a subscription this process is storing.
func (w *webSub) addFeed(feed string) {
	w.feedsMu.Lock()
	w.added[feed] = time.Now()
	w.feedsMu.Unlock()
}

// refreshFeeds reads the feeds having subscriptions, made by any process.
func (w *webSub) refreshFeeds(ctx context.Context) error {
	names, err := w.store().subscribedFeeds(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	w.feedsMu.Lock()
	w.feeds = m
	for f, at := range w.added {
		if time.Since(at) > addedKept {
			delete(w.added, f)
		}
	}
	w.feedsMu.Unlock()
	return nil
}

// ---- the sweeper ----

// sweeper queues retries when they are due and, every sweepInterval,
// expires leases, queues the jobs of marks left behind by dead processes,
// refreshes the subscribed feeds and maintains the delivery queue.
func (w *webSub) sweeper(ctx context.Context) {
	maint := w.jobs.NewMaintenance()
	var lastSlow, lastMaint time.Time
	t := time.NewTimer(0)
	defer t.Stop()
	for attempt := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
		}
		next, err := w.sweepRetries(ctx)
		if err == nil && time.Since(lastSlow) >= sweepInterval {
			err = w.sweepSlow(ctx)
			lastSlow = time.Now()
		}
		if err == nil && time.Since(lastMaint) >= maintainInterval {
			_, err = maint.Pass(ctx)
			if errors.Is(err, thoonk.ErrFeedNotFound) {
				err = w.ensureQueue(ctx)
			}
			lastMaint = time.Now()
		}
		wait := min(time.Until(next), sweepInterval)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = thoonk.DefaultBackoff.Delay(attempt)
			attempt++
			w.hub.Log.Warn("websub: sweep", "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			attempt = 0
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(max(wait, 5*time.Millisecond))
	}
}

// sweepRetries queues the retries that are due; it returns when the next
// one is.
func (w *webSub) sweepRetries(ctx context.Context) (time.Time, error) {
	for {
		due, next, err := w.store().dueRetries(ctx, time.Now(), 256)
		if err != nil {
			return time.Time{}, err
		}
		if err := w.enqueueAll(ctx, due); err != nil {
			return time.Time{}, err
		}
		if len(due) < 256 {
			if next.IsZero() {
				next = time.Now().Add(sweepInterval)
			}
			return next, nil
		}
	}
}

// sweepSlow expires leases, queues again the jobs of stale marks and
// refreshes the subscribed feeds.
func (w *webSub) sweepSlow(ctx context.Context) error {
	s := w.store()
	expired, err := s.expired(ctx, time.Now(), 256)
	if err != nil {
		return err
	}
	for _, id := range expired {
		sub, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		if sub == nil {
			continue
		}
		if err := w.drop(ctx, sub, reasonExpired, "its lease ended", false); err != nil {
			return err
		}
	}
	stale, err := s.staleMarks(ctx, time.Now().Add(-staleMark), 256)
	if err != nil {
		return err
	}
	if err := w.enqueueAll(ctx, stale); err != nil {
		return err
	}
	return w.refreshFeeds(ctx)
}

// scheduled wakes the sweeper after a retry was scheduled, so that short
// delays are kept.
func (w *webSub) scheduled() { poke(w.wake) }

// ---- metrics ----

// Reasons a subscription ends, as the metrics and logs name them.
const (
	reasonExpired      = "expired"
	reasonUnsubscribed = "unsubscribed"
	reasonGone         = "gone"
	reasonFailing      = "failing"
	reasonDenied       = "denied"
)

// Delivery outcomes, as the metrics name them.
const (
	outcomeDelivered = "delivered"
	outcomeFailed    = "failed"
	outcomeAbandoned = "abandoned"
	outcomeUnchanged = "unchanged"
	outcomeDeferred  = "deferred"
)

// webSubMetrics are the hub's Prometheus metrics.
type webSubMetrics struct {
	deliveries    *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	verifications *prometheus.CounterVec
	fanouts       *prometheus.CounterVec
	latency       prometheus.Histogram
	lag           prometheus.Histogram
}

func newWebSubMetrics() *webSubMetrics {
	return &webSubMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_websub_deliveries_total",
			Help: "WebSub content distribution attempts by outcome (delivered, failed: retried later, abandoned: retries exhausted, unchanged: document already delivered, deferred: callback busy).",
		}, []string{"outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_websub_subscriptions_dropped_total",
			Help: "WebSub subscriptions ended, by reason (expired, unsubscribed, gone: 410, failing: drop_after, denied: feed gone or no longer readable).",
		}, []string{"reason"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_websub_verifications_total",
			Help: "WebSub verifications of intent, by mode and outcome (verified, failed, full).",
		}, []string{"mode", "outcome"}),
		fanouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbridge_websub_fanouts_total",
			Help: "Feed changes fanned out to their subscriptions (done), or deferred because delivery.max_pending deliveries were waiting.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "feedbridge_websub_delivery_seconds", Help: "Duration of WebSub delivery POSTs.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "feedbridge_websub_delivery_lag_seconds", Help: "Time from a feed change to its successful delivery to a subscriber.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
}

// collectors returns the metrics, with gauges read from Redis on scrape.
func (m *webSubMetrics) collectors(w *webSub) []prometheus.Collector {
	return []prometheus.Collector{m.deliveries, m.dropped, m.verifications, m.fanouts, m.latency, m.lag, &webSubGauges{w: w}}
}

// webSubGauges reads the hub's subscriptions and pending deliveries from
// Redis on each scrape.
type webSubGauges struct{ w *webSub }

var (
	descWebSubSubs = prometheus.NewDesc("feedbridge_websub_subscriptions",
		"Verified WebSub subscriptions of the hub (all processes).", nil, nil)
	descWebSubPending = prometheus.NewDesc("feedbridge_websub_pending",
		"WebSub jobs waiting: queued (fan-outs and deliveries waiting for a worker) and retry (deliveries waiting for their next attempt).", []string{"state"}, nil)
)

// Describe sends the gauges' descriptions.
func (g *webSubGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWebSubSubs
	ch <- descWebSubPending
}

// Collect reads the gauges from Redis.
func (g *webSubGauges) Collect(ch chan<- prometheus.Metric) {
	if ctx, _ := g.w.running(); ctx == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	subs, retry, err := g.w.store().counts(ctx)
	if err != nil {
		return
	}
	n, err := g.w.jobs.Counts(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descWebSubSubs, prometheus.GaugeValue, float64(subs))
	ch <- prometheus.MustNewConstMetric(descWebSubPending, prometheus.GaugeValue, float64(n.Available+n.InFlight), "queued")
	ch <- prometheus.MustNewConstMetric(descWebSubPending, prometheus.GaugeValue, float64(retry), "retry")
}
