package irc

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Bridge is the IRC adapter.
type Bridge struct {
	cfg Config
	c   *compiled

	// set by Run
	hub *core.Hub
	// lease is this process's lead of the network (nil: alone).
	lease atomic.Pointer[core.Lease]
	log   *slog.Logger
	q     *queue
	marks *markStore
	cmds  chan request
	users *userLimits
	// waits tracks the goroutines waiting for job results.
	waits sync.WaitGroup
	// waitSlots bounds them.
	waitSlots chan struct{}

	mu   sync.Mutex
	sess *session
	// joinedCh holds the channels the bot is in, or has asked to join, in
	// the current session (folded name -> name): announcements queued for
	// a channel being joined go out right after its JOIN.
	joinedCh map[string]string
	// member holds the channels the server confirmed the bot in (its JOIN
	// echo), not left since (folded names).
	member   map[string]bool
	fresh    []string      // joined, waiting for catch-up and backlog
	resumed  []string      // sendable again without a JOIN, waiting for catch-up
	forget   []string      // left (folded): their queued cursors are void
	unsent   []mark        // written to channels left, never confirmed: posted again by the catch-up
	readyFor *session      // registered, waiting for its join list
	wake     chan struct{} // wakes the announcer
	// busy paces the "busy" answers to commands dropped on a full queue.
	busy *rate.Limiter
}

var (
	_ core.Adapter                       = (*Bridge)(nil)
	_ interface{ EffectiveConfig() any } = (*Bridge)(nil)
)

// Limits of the adapter's bounded structures.
const (
	// eventQueue is the subscription's queue; on overflow the announcer
	// gets an EventResync and catches up from Redis.
	eventQueue = 4096
	// ctrlQueue bounds control lines (joins, replies).
	ctrlQueue = 200
	// commandQueue bounds commands waiting for a worker; more are dropped.
	commandQueue = 64
	// commandWorkers run commands (they read Redis and submit jobs).
	commandWorkers = 4
	// maxWaits bounds the jobs whose results are awaited at once; beyond
	// it a job is acknowledged without a result report.
	maxWaits = 256
	// busyEvery paces the answers to commands dropped because the command
	// queue is full: at most one per busyEvery, the others get none.
	busyEvery = 2 * time.Second
)

func newBridge(cfg Config, c *compiled) *Bridge {
	return &Bridge{cfg: cfg, c: c}
}

// Name returns "irc".
func (b *Bridge) Name() string { return "irc" }

// Run connects to the server and serves until ctx ends, reconnecting with
// backoff and jitter, in the one process of a fleet that holds the
// network's lease (server and nick; the others stand by and take over
// when it is lost); it returns nil when ctx ends.
func (b *Bridge) Run(ctx context.Context, hub *core.Hub) error {
	return hub.Lead(ctx, b.Name(), core.LeaseName("irc", b.cfg.Server, b.cfg.Nick), func(ctx context.Context, l *core.Lease) error {
		b.lease.Store(l)
		return b.lead(ctx, hub)
	})
}

// lead serves the network while this process holds its lease: the marks
// of what was announced are read from Redis as the channels are joined,
// so what was missed during a hand-over is posted.
func (b *Bridge) lead(ctx context.Context, hub *core.Hub) error {
	b.setup(hub)
	hub.SetState(b.Name(), core.StateStarting, nil)

	sub := hub.Events.SubscribeWith(thoonk.SubscribeOptions{Queue: eventQueue, Journal: true})
	defer sub.Close()
	// a bot that cannot see feed events yet would let items pass unannounced
	if hub.Events.WaitConnected(ctx) != nil {
		return nil
	}
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { newAnnouncer(b).run(bg, sub) })
	wg.Go(func() { b.marks.run(bg) })
	for range commandWorkers {
		wg.Go(func() { b.commandWorker(bg) })
	}
	b.connectLoop(ctx)
	stop()
	wg.Wait()
	b.waits.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := b.marks.flush(fctx); err != nil {
		b.log.Warn("irc: announcement marks not saved at shutdown", "err", err)
	}
	return nil
}

// setup makes the state of one Run.
func (b *Bridge) setup(hub *core.Hub) {
	b.hub = hub
	b.log = slog.Default()
	if hub.Log != nil {
		b.log = hub.Log
	}
	b.log = b.log.With("adapter", b.Name())
	b.q = newQueue(b.cfg.QueueLines, ctrlQueue, b.summaryLines)
	b.marks = newMarkStore(hub.Store, b.cfg.Server, b.log)
	b.cmds = make(chan request, commandQueue)
	b.users = newUserLimits(b.cfg.Commands.Rate)
	b.waitSlots = make(chan struct{}, maxWaits)
	b.wake = make(chan struct{}, 1)
	b.busy = rate.NewLimiter(rate.Every(busyEvery), 1)
}

// connectLoop runs sessions one after another until ctx ends.
func (b *Bridge) connectLoop(ctx context.Context) {
	bo := thoonk.Backoff{Min: b.cfg.Reconnect.Min, Max: b.cfg.Reconnect.Max}
	attempt := 0
	for {
		start := time.Now()
		s, err := b.connect(ctx)
		registered := false
		if err == nil {
			b.q.reset()
			b.setSession(s)
			registered, err = s.run()
			b.setSession(nil)
		}
		if ctx.Err() != nil {
			return
		}
		if registered && time.Since(start) > time.Minute {
			attempt = 0 // it worked for a while: no growing delay
		}
		d := bo.Delay(attempt)
		attempt++
		b.hub.SetState(b.Name(), core.StateReconnecting, err)
		b.hub.Metrics.Reconnect(b.Name())
		b.log.Warn("irc: disconnected; reconnecting", "err", err, "retry_in", d.Round(time.Millisecond))
		if thoonk.Sleep(ctx, d) != nil {
			return
		}
	}
}

func (b *Bridge) setSession(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sess = s
	b.joinedCh = map[string]string{}
	b.member = map[string]bool{}
	b.fresh, b.resumed, b.forget, b.unsent, b.readyFor = nil, nil, nil, nil, nil
}

func (b *Bridge) current() *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sess
}

func (b *Bridge) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// sessionReady is called on the read goroutine when registration is over;
// the announcer computes the channels to join.
func (b *Bridge) sessionReady(s *session) {
	b.mu.Lock()
	if b.sess == s {
		b.readyFor = s
	}
	b.mu.Unlock()
	b.poke()
}

// joining records channels whose JOIN is queued.
func (b *Bridge) joining(s *session, names []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess == s {
		for _, n := range names {
			b.joinedCh[s.casemap().fold(n)] = n
		}
	}
}

// joined records the bot's JOIN echo: results held for the channel go
// out, and the announcer catches up.
func (b *Bridge) joined(s *session, name string) {
	key := s.casemap().fold(name)
	b.mu.Lock()
	if b.sess != s {
		b.mu.Unlock()
		return
	}
	b.joinedCh[key] = name
	b.member[key] = true
	b.fresh = append(b.fresh, name)
	b.mu.Unlock()
	b.releaseHeld(s)
	b.poke()
}

// left records that the bot cannot send to a channel any more: it left
// it or was kicked (out), or the server refused a join or a message. What
// waits for the channel is dropped, and lost (announcements written there
// but never confirmed) is remembered; catch-up recovers both after rejoin.
func (b *Bridge) left(s *session, name string, out bool, lost []mark) {
	key := s.casemap().fold(name)
	b.mu.Lock()
	if b.sess != s {
		b.mu.Unlock()
		return
	}
	delete(b.joinedCh, key)
	if out {
		delete(b.member, key)
	}
	b.forget = append(b.forget, key)
	if len(b.unsent)+len(lost) <= maxInflight {
		b.unsent = append(b.unsent, lost...)
	}
	b.mu.Unlock()
	b.q.dropLane(key)
	b.poke()
}

// rejoin retries a channel the bot left or was refused: a JOIN when the
// bot is out of it, else (it is in, but a message was refused) a catch-up
// from the last delivered announcement.
func (b *Bridge) rejoin(s *session, name string) {
	key := s.casemap().fold(name)
	b.mu.Lock()
	if b.sess != s {
		b.mu.Unlock()
		return
	}
	if !b.member[key] {
		b.mu.Unlock()
		b.join(s, []string{name})
		return
	}
	b.joinedCh[key] = name
	b.resumed = append(b.resumed, name)
	b.mu.Unlock()
	b.releaseHeld(s)
	b.poke()
}

// releaseHeld queues the results held for channels the bot is in.
func (b *Bridge) releaseHeld(s *session) {
	cm := s.casemap()
	b.mu.Lock()
	in := maps.Clone(b.member)
	b.mu.Unlock()
	b.q.release(func(ch string) bool { return in[cm.fold(ch)] })
}

// isJoined reports whether the bot is in the channel or its JOIN is queued.
func (b *Bridge) isJoined(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess == nil {
		return false
	}
	_, ok := b.joinedCh[b.sess.casemap().fold(name)]
	return ok
}

// inChannel reports whether the server confirmed the bot in the channel
// (its JOIN echo) and the bot has not left it since.
func (b *Bridge) inChannel(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess == nil {
		return false
	}
	key := b.sess.casemap().fold(name)
	_, ok := b.joinedCh[key]
	return ok && b.member[key]
}

// staticChannel returns the configured channel of that name, or nil.
func (b *Bridge) staticChannel(cm casemap, name string) *channel {
	for _, ch := range b.c.channels {
		if cm.fold(ch.name) == cm.fold(name) {
			return ch
		}
	}
	return nil
}

// join queues JOIN commands for channels, packed several to a line, keyed
// channels first; names the server cannot accept are logged and skipped.
func (b *Bridge) join(s *session, names []string) {
	cm := s.casemap()
	chantypes, ok := s.isup.GetRaw("CHANTYPES")
	if !ok {
		chantypes = "#&"
	}
	chanLen := s.channelLen()
	type pair struct{ name, key string }
	var keyed, open []pair
	for _, n := range names {
		if err := validChannel(n, chantypes, chanLen); err != nil {
			b.log.Warn("irc: not joining", "channel", n, "err", err)
			continue
		}
		key := ""
		if ch := b.staticChannel(cm, n); ch != nil {
			key = ch.key
		}
		if key != "" {
			keyed = append(keyed, pair{n, key})
		} else {
			open = append(open, pair{n, ""})
		}
	}
	var chans, keys []string
	size := 0
	flush := func() {
		if len(chans) == 0 {
			return
		}
		params := []string{strings.Join(chans, ",")}
		if len(keys) > 0 {
			params = append(params, strings.Join(keys, ","))
		}
		s.queueCtrl("JOIN", params, "")
		b.joining(s, chans)
		chans, keys, size = nil, nil, 0
	}
	for _, p := range append(keyed, open...) {
		if size+len(p.name)+len(p.key)+2 > maxLine-16 {
			flush()
		}
		chans = append(chans, p.name)
		if p.key != "" {
			keys = append(keys, p.key)
		}
		size += len(p.name) + len(p.key) + 2
	}
	flush()
}

// channelLen is the server's CHANNELLEN (default 50).
func (s *session) channelLen() int {
	if v, ok := s.isup.GetRaw("CHANNELLEN"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return 50
}

// chanLimits applies the server's CHANLIMIT to names (in priority order)
// and returns those the bot may join.
func (s *session) chanLimits(names []string) (keep, over []string) {
	v, ok := s.isup.GetRaw("CHANLIMIT")
	if !ok {
		return names, nil
	}
	limits := map[byte]int{}
	for _, part := range strings.Split(v, ",") {
		prefixes, n, _ := strings.Cut(part, ":")
		lim, err := strconv.Atoi(n)
		if err != nil || lim <= 0 {
			continue // no limit for these prefixes
		}
		for i := range len(prefixes) {
			limits[prefixes[i]] = lim
		}
	}
	used := map[byte]int{}
	for _, n := range names {
		lim, limited := limits[n[0]]
		if limited && used[n[0]] >= lim {
			over = append(over, n)
			continue
		}
		used[n[0]]++
		keep = append(keep, n)
	}
	return keep, over
}

// desiredChannels lists the configured channels, then one per exposed
// feed when auto channels are on, without duplicates.
func (b *Bridge) desiredChannels(ctx context.Context, s *session) []string {
	cm := s.casemap()
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[cm.fold(n)] {
			seen[cm.fold(n)] = true
			names = append(names, n)
		}
	}
	for _, ch := range b.c.channels {
		add(ch.name)
	}
	if b.c.auto != nil {
		feeds, err := b.autoFeeds(ctx)
		if err != nil {
			b.log.Warn("irc: listing feeds for auto channels", "err", err)
		}
		for _, f := range feeds {
			add(autoChannel(b.cfg.AutoChannels.Prefix, f, s.channelLen()))
		}
	}
	keep, over := s.chanLimits(names)
	if len(over) > 0 {
		b.log.Warn("irc: the server's CHANLIMIT leaves channels out", "channels", over)
	}
	return keep
}

// exposedFeeds lists the feeds this adapter shows.
func (b *Bridge) exposedFeeds(ctx context.Context) ([]string, error) {
	all, err := b.hub.Store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(f string) bool { return !b.exposed(f) }), nil
}

func (b *Bridge) exposed(feed string) bool { return b.hub.Exposed(b.cfg.Feeds).Allows(feed) }

// publicFeeds lists the feeds channels may show (see public).
func (b *Bridge) publicFeeds(ctx context.Context) ([]string, error) {
	feeds, err := b.exposedFeeds(ctx)
	return slices.DeleteFunc(feeds, func(f string) bool { return !b.public(f) }), err
}

// autoFeeds lists the public feeds that hold items, one auto channel
// each: job feeds and queues have nothing to announce.
func (b *Bridge) autoFeeds(ctx context.Context) ([]string, error) {
	feeds, err := b.publicFeeds(ctx)
	if err != nil || len(feeds) == 0 {
		return nil, err
	}
	infos, err := b.hub.Store.Describe(ctx, feeds...)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range b.hub.Usable(b.Name(), infos) {
		if holdsItems(f.Type) {
			out = append(out, f.Name)
		}
	}
	return out, nil
}

// holdsItems reports whether a feed type holds announceable items.
func holdsItems(t thoonk.FeedType) bool { return t == thoonk.TypeFeed || t == thoonk.TypeSorted }

// target is a joined channel that shows a feed.
type target struct {
	name string
	spec *announceSpec
}

// public reports whether a feed may be shown in channels: it is exposed and
// the ACL lets anonymous IRC users read it (a channel's audience proves
// nothing).
func (b *Bridge) public(feed string) bool {
	return b.exposed(feed) && b.hub.ACL.Allowed(core.Actor{Protocol: "irc", ID: core.Anonymous}, feed, core.OpRead)
}

// targets returns the channels (joined, or with a JOIN queued) that show
// feed: live ones, and those waiting for their JOIN's echo or for their
// catch-up, which covers what happens meanwhile (a line posted before it
// would start the catch-up past what it missed).
func (b *Bridge) targets(feed string) (live, waiting []target) {
	if !b.public(feed) {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess == nil {
		return nil, nil
	}
	cm := b.sess.casemap()
	add := func(name string, spec *announceSpec) {
		key := cm.fold(name)
		if _, in := b.joinedCh[key]; !in {
			return
		}
		same := func(n string) bool { return cm.fold(n) == key }
		if !b.member[key] || slices.ContainsFunc(b.fresh, same) || slices.ContainsFunc(b.resumed, same) {
			waiting = append(waiting, target{name, spec})
		} else {
			live = append(live, target{name, spec})
		}
	}
	for _, ch := range b.c.channels {
		if matchAny(ch.feeds, feed) {
			add(ch.name, ch.spec)
		}
	}
	if b.c.auto != nil {
		if name := autoChannel(b.cfg.AutoChannels.Prefix, feed, b.sess.channelLen()); name != "" && b.staticChannel(cm, name) == nil {
			add(name, b.c.auto)
		}
	}
	return live, waiting
}

// channelFeeds returns the public feeds a channel shows.
func (b *Bridge) channelFeeds(ctx context.Context, s *session, name string) ([]string, *announceSpec, error) {
	feeds, err := b.publicFeeds(ctx)
	if err != nil {
		return nil, nil, err
	}
	cm := s.casemap()
	if ch := b.staticChannel(cm, name); ch != nil {
		return slices.DeleteFunc(feeds, func(f string) bool { return !matchAny(ch.feeds, f) }), ch.spec, nil
	}
	if b.c.auto == nil {
		return nil, nil, nil
	}
	return slices.DeleteFunc(feeds, func(f string) bool {
		return cm.fold(autoChannel(b.cfg.AutoChannels.Prefix, f, s.channelLen())) != cm.fold(name)
	}), b.c.auto, nil
}

func matchAny(ps []thoonk.Pattern, s string) bool {
	for _, p := range ps {
		if p.Match(s) {
			return true
		}
	}
	return false
}
