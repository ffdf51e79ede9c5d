package irc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// mark is an announced change of a feed in a channel: its journal
// revision, where the channel's catch-up resumes once the server confirmed
// the line (see thoonk.Journal).
type mark struct {
	channel string // folded
	feed    string
	rev     string
}

// announcer turns the feeds' journal events into channel announcements,
// runs catch-up and backlog after joins and resyncs, and asks the session
// to join. It is one goroutine: everything here that reads Redis runs on
// it, never on the IRC read goroutine. Live events and catch-ups read one
// record, the journal, in one order (its revisions), so a change is never
// announced twice in one stay in a channel and none is missed: an event
// at or before what a channel was already given is skipped.
type announcer struct {
	b     *Bridge
	types map[string]thoonk.FeedType
	// queued is the revision of the last change queued per channel and
	// feed in the channel's current stay (the delivered one is in the
	// mark store).
	queued map[string]map[string]string
	// joinBase is, per channel and feed without a mark, the journal's end
	// read before the JOIN went out: a first join starts there, so that a
	// change made while the server answers the JOIN is posted.
	joinBase map[string]map[string]string
}

func newAnnouncer(b *Bridge) *announcer {
	return &announcer{b: b, types: map[string]thoonk.FeedType{}, queued: map[string]map[string]string{},
		joinBase: map[string]map[string]string{}}
}

// joinChangesMax bounds the changes a first join posts from while its
// JOIN was answered (see joinBase).
const joinChangesMax = 1000

// join asks the session to join channels, having read first, for each
// feed a channel shows and has no mark for yet (a first join), where the
// feed's journal ends (see joinBase).
func (a *announcer) join(ctx context.Context, s *session, names []string) {
	b := a.b
	for _, name := range names {
		feeds, spec, err := b.channelFeeds(ctx, s, name)
		if err != nil || spec == nil {
			continue // the catch-up after the JOIN says why
		}
		key := s.casemap().fold(name)
		delete(a.joinBase, key)
		for _, feed := range feeds {
			if !holdsItems(a.feedType(ctx, feed)) {
				continue
			}
			if _, marked, err := b.marks.get(ctx, key, feed); err != nil || marked {
				continue
			}
			if last, err := b.hub.Store.Journal(feed).Last(ctx); err == nil {
				setNested(a.joinBase, key, feed, last)
			}
		}
	}
	b.join(s, names)
}

func (a *announcer) run(ctx context.Context, sub *thoonk.Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.b.wake:
			a.housekeeping(ctx)
		case <-sub.Ready():
			for {
				ev, ok := sub.TryNext()
				if !ok {
					break
				}
				a.handle(ctx, ev)
			}
		}
	}
}

// housekeeping joins the channels of a newly registered session and
// catches up the channels just joined (or sendable again).
func (a *announcer) housekeeping(ctx context.Context) {
	b := a.b
	b.mu.Lock()
	s, ready, fresh, resumed, forget := b.sess, b.readyFor, b.fresh, b.resumed, b.forget
	b.readyFor, b.fresh, b.resumed, b.forget, b.unsent = nil, nil, nil, nil, nil
	b.mu.Unlock()
	if s == nil {
		return
	}
	for _, key := range forget {
		// its lane was dropped: resume from the delivered mark, so lines
		// written there but never confirmed are posted again
		delete(a.queued, key)
	}
	if ready == s {
		clear(a.queued) // the queue was dropped with the old connection
		a.join(ctx, s, b.desiredChannels(ctx, s))
	}
	for _, name := range fresh {
		a.catchUp(ctx, s, name, true)
	}
	for _, name := range resumed {
		a.catchUp(ctx, s, name, false)
	}
}

func (a *announcer) handle(ctx context.Context, ev thoonk.Event) {
	b := a.b
	// a channel joined since the last wake-up is caught up before any
	// event, so an event in flight from before the join is covered by
	// the catch-up (and skipped here), never posted ahead of what it missed
	a.housekeeping(ctx)
	switch {
	case ev.Type == thoonk.EventResync:
		s := b.current()
		if s == nil {
			return
		}
		level := slog.LevelDebug // the listener's first connection
		if ev.Reason == thoonk.ResyncOverflow || b.hub.Events.Stats().Reconnects > 0 {
			level = slog.LevelInfo
		}
		b.log.Log(ctx, level, "irc: events may have been lost; catching up from the journals", "reason", ev.Reason)
		b.mu.Lock()
		names := slices.Collect(maps.Values(b.joinedCh))
		b.mu.Unlock()
		for _, n := range names {
			a.catchUp(ctx, s, n, false)
		}
		return
	case ev.Type == thoonk.EventCreate || ev.Type == thoonk.EventConfig || ev.Type == thoonk.EventDelete && ev.Rev == "":
		delete(a.types, ev.Feed)
		if s := b.current(); ev.Type == thoonk.EventCreate && s != nil && b.c.auto != nil && b.public(ev.Feed) &&
			holdsItems(a.feedType(ctx, ev.Feed)) {
			if name := autoChannel(b.cfg.AutoChannels.Prefix, ev.Feed, s.channelLen()); name != "" && !b.isJoined(name) {
				a.join(ctx, s, []string{name})
			}
		}
		return
	case ev.Rev == "":
		return // job results: not announced
	}
	if ev.Type == thoonk.EventDelete {
		delete(a.types, ev.Feed)
		return
	}
	if live, _ := b.targets(ev.Feed); len(live) == 0 {
		return // the channels waiting for their JOIN or catch-up get it from the journal
	}
	a.announce(ctx, ev)
}

func (a *announcer) feedType(ctx context.Context, feed string) thoonk.FeedType {
	if t, ok := a.types[feed]; ok {
		return t
	}
	t, err := a.b.hub.Store.Type(ctx, feed)
	if err != nil {
		return ""
	}
	if len(a.types) > 10000 {
		clear(a.types)
	}
	a.types[feed] = t
	return t
}

// kindOf returns the announcement kind of a journal event.
func kindOf(t thoonk.EventType) string {
	switch t {
	case thoonk.EventPublish:
		return kindPublish
	case thoonk.EventEdit:
		return kindEdit
	case thoonk.EventRetract:
		return kindRetract
	case thoonk.EventPosition:
		return kindPosition
	}
	return ""
}

// content returns what a line about a change shows of its item: the
// content the journal kept, else (an item too large to journal, or a
// move) the item as the feed holds it now.
func (a *announcer) content(ctx context.Context, ev thoonk.Event) []byte {
	if ev.Item != nil || ev.Type == thoonk.EventRetract {
		return ev.Item
	}
	it, err := a.b.hub.Store.Item(ctx, ev.Feed, ev.ID)
	if err != nil {
		if !errors.Is(err, thoonk.ErrNotFound) {
			a.b.log.Warn("irc: reading an announced item", "feed", ev.Feed, "id", ev.ID, "err", err)
		}
		return nil
	}
	return it.Data
}

// announce queues a journal event on every joined, caught-up channel that
// shows it and was not given it yet; each line carries the change's
// revision as its mark, recorded once the server confirms the line.
func (a *announcer) announce(ctx context.Context, ev thoonk.Event) {
	b := a.b
	s := b.current()
	if s == nil {
		return
	}
	kind := kindOf(ev.Type)
	if kind == "" {
		return
	}
	live, _ := b.targets(ev.Feed)
	var item []byte
	read := false
	for _, t := range live {
		key := s.casemap().fold(t.name)
		if q, ok := a.queued[key][ev.Feed]; ok && !thoonk.RevBefore(q, ev.Rev) {
			continue // the catch-up gave it already
		}
		setNested(a.queued, key, ev.Feed, ev.Rev)
		m := &mark{channel: key, feed: ev.Feed, rev: ev.Rev}
		if !t.spec.events[kind] {
			b.marks.delivered(*m) // not shown here: nothing to confirm
			continue
		}
		if !read {
			item, read = a.content(ctx, ev), true
		}
		a.post(s, t, kind, ev.Feed, ev.ID, item, ev.Position, m)
	}
}

// post renders one item for a channel and queues its lines.
func (a *announcer) post(s *session, t target, kind, feed, id string, item []byte, position string, m *mark) {
	b := a.b
	itemURL := linkURL(b.cfg.Links.Item, b.hub.PublicURL, feed, id)
	text, err := render(t.spec.templates[kind], newView(kind, feed, id, item, position, itemURL))
	if err != nil {
		b.log.Warn("irc: template failed; posting a plain line", "channel", t.name, "feed", feed, "err", err)
		text = fmt.Sprintf("[%s] %s %s", feed, kind, id)
	}
	lines, err := s.wireNow().buildLines(t.spec.command, []string{t.name}, text, itemURL)
	if err != nil || len(lines) == 0 {
		return
	}
	if b.q.pushItem(s.casemap().fold(t.name), t.name, t.spec.command, feed, 1, outLines(lines, m, false), m) {
		b.hub.Metrics.EventOut(b.Name(), 1)
	}
}

// summaryLines announces n items of feed left out of a channel; the
// queue calls it when a lane that dropped items has drained.
func (b *Bridge) summaryLines(target, cmd, feed string, n int, m *mark) []outLine {
	s := b.current()
	if s == nil {
		return nil
	}
	b.log.Info("irc: channel queue was full; items summarized", "channel", target, "feed", feed, "items", n)
	return b.summary(s, target, cmd, feed, fmt.Sprintf("…and %d more in feed %s", n, feed), m)
}

func (b *Bridge) summary(s *session, target, cmd, feed, text string, m *mark) []outLine {
	link := linkURL(b.cfg.Links.Feed, b.hub.PublicURL, feed, "")
	if link != "" {
		text += " — " + link
	}
	lines, err := s.wireNow().buildLines(cmd, []string{target}, text, "")
	if err != nil {
		return nil
	}
	return outLines(lines, m, false)
}

// catchUp posts what a channel missed, after a join (plus the backlog)
// or a resync, from the feeds' journals: per feed, the changes after the
// channel's mark, up to catch_up of them (the newest, oldest first), then
// "…and M more in feed X" for the rest.
func (a *announcer) catchUp(ctx context.Context, s *session, name string, onJoin bool) {
	b := a.b
	feeds, spec, err := b.channelFeeds(ctx, s, name)
	if err != nil {
		b.log.Warn("irc: catch-up: listing feeds", "channel", name, "err", err)
		return
	}
	if spec == nil || !b.inChannel(name) {
		return // nothing to post, or the bot is not in the channel (yet: its JOIN's catch-up comes)
	}
	key := s.casemap().fold(name)
	t := target{name, spec}
	for _, feed := range feeds {
		if err := a.catchUpFeed(ctx, s, t, key, feed, onJoin); err != nil && ctx.Err() == nil {
			b.log.Warn("irc: catch-up failed", "channel", name, "feed", feed, "err", err)
		}
	}
}

func (a *announcer) catchUpFeed(ctx context.Context, s *session, t target, key, feed string, onJoin bool) error {
	b := a.b
	if !holdsItems(a.feedType(ctx, feed)) {
		return nil
	}
	// the last change queued in this stay in the channel, else the last
	// delivered (the queue does not outlive a connection or a stay)
	from, ok := a.queued[key][feed]
	if !ok {
		var err error
		if from, ok, err = b.marks.get(ctx, key, feed); err != nil {
			return err
		}
	}
	j := b.hub.Store.Journal(feed)
	base, before := a.joinBase[key][feed]
	delete(a.joinBase[key], feed)
	if !ok && (!before || onJoin && t.spec.backlog > 0) {
		// a first join: the baseline is the journal's end, nothing is
		// posted but the backlog (the newest items, which hold what was
		// published while the JOIN was answered)
		last, err := j.Last(ctx)
		if err != nil {
			return err
		}
		setNested(a.queued, key, feed, last)
		b.marks.delivered(mark{channel: key, feed: feed, rev: last})
		if onJoin && t.spec.backlog > 0 {
			return a.backlog(ctx, s, t, feed, t.spec.backlog)
		}
		return nil
	}
	keep := b.cfg.CatchUp
	if !ok {
		// a first join without backlog: what changed since the journal's
		// end before the JOIN went out is posted, as live changes are
		// (catch_up bounds what was missed while away, not this; the
		// channel's queue bounds it)
		from, keep = base, joinChangesMax
		b.marks.delivered(mark{channel: key, feed: feed, rev: base})
	}
	kept, missed, after, err := j.Newest(ctx, from, keep, func(e thoonk.Entry) bool { return t.spec.events[kindOf(e.Type)] })
	var gap *thoonk.GapError
	if errors.As(err, &gap) {
		// older than what the journal keeps: say so, go on from its end
		last, lerr := j.Last(ctx)
		if lerr != nil {
			return lerr
		}
		b.log.Info("irc: changes missed in a channel are no longer in the journal; summarized", "channel", t.name, "feed", feed, "reason", gap.Reason)
		m := &mark{channel: key, feed: feed, rev: last}
		setNested(a.queued, key, feed, last)
		b.q.pushItem(key, t.name, t.spec.command, feed, 1,
			b.summary(s, t.name, t.spec.command, feed, fmt.Sprintf("changes in feed %s while I was away", feed), m), m)
		return nil
	}
	if err != nil {
		return err
	}
	if after == from {
		if onJoin && t.spec.backlog > 0 {
			return a.backlog(ctx, s, t, feed, t.spec.backlog)
		}
		return nil
	}
	setNested(a.queued, key, feed, after)
	end := &mark{channel: key, feed: feed, rev: after} // the last line carries the newest revision read
	if more := missed - len(kept); more > 0 {
		text := fmt.Sprintf("%d changes in feed %s while I was away", more, feed)
		var m *mark
		if len(kept) == 0 {
			m = end
		}
		b.q.pushItem(key, t.name, t.spec.command, feed, more, b.summary(s, t.name, t.spec.command, feed, text, m), m)
	}
	if len(kept) == 0 && missed == 0 {
		b.marks.delivered(*end) // only changes this channel does not show
	}
	for i, e := range kept {
		ev := e.Event(feed)
		var m *mark
		if i == len(kept)-1 {
			m = end
		}
		a.post(s, t, kindOf(e.Type), feed, e.ID, a.content(ctx, ev), e.Position, m)
	}
	return nil
}

// backlog posts a feed's n newest items (oldest first) to a channel just
// joined, as publishes: a reminder of what is there, not changes.
func (a *announcer) backlog(ctx context.Context, s *session, t target, feed string, n int) error {
	items, err := newestItems(ctx, a.b.hub.Store, feed, a.feedType(ctx, feed), n)
	if err != nil {
		return err
	}
	for _, it := range items {
		a.post(s, t, kindPublish, feed, it.ID, it.Data, "", nil)
	}
	return nil
}

// newestItems returns up to n of the newest items, oldest first.
func newestItems(ctx context.Context, st *thoonk.Store, feed string, typ thoonk.FeedType, n int) ([]thoonk.Item, error) {
	if typ == thoonk.TypeFeed {
		p, err := st.Page(ctx, feed, thoonk.PageRequest{Limit: n})
		slices.Reverse(p.Items)
		return p.Items, err
	}
	p, err := st.Page(ctx, feed, thoonk.PageRequest{Limit: 1})
	if err != nil {
		return nil, err
	}
	p, err = st.Page(ctx, feed, thoonk.PageRequest{Offset: max(p.Total-int64(n), 0), Limit: n})
	return p.Items, err
}

// setNested sets m[k1][k2], making the inner map when needed.
func setNested[V any](m map[string]map[string]V, k1, k2 string, v V) {
	if m[k1] == nil {
		m[k1] = map[string]V{}
	}
	m[k1][k2] = v
}

// markStore keeps the last delivered announcement per channel and feed, in
// memory and in Redis (hash feedbridge.irc.last:SERVER:CHANNEL, field =
// feed, value = the change's journal revision), so catch-up survives
// restarts and a fleet's hand-over. Writes are coalesced and never block
// the IRC writer; a mark never moves back.
type markStore struct {
	store  *thoonk.Store
	prefix string
	log    *slog.Logger

	mu     sync.Mutex
	known  map[string]map[string]string
	loaded map[string]bool
	dirty  map[string]map[string]string
	notify chan struct{}
}

// markCoalesce is how long confirmed marks gather before they are written.
const markCoalesce = 20 * time.Millisecond

// markTTL keeps marks of channels no longer configured from piling up.
const markTTL = 30 * 24 * time.Hour

func newMarkStore(store *thoonk.Store, server string, log *slog.Logger) *markStore {
	return &markStore{store: store, prefix: "feedbridge.irc.last:" + server + ":", log: log,
		known: map[string]map[string]string{}, loaded: map[string]bool{},
		dirty: map[string]map[string]string{}, notify: make(chan struct{}, 1)}
}

// get returns the delivered mark of a channel's feed, loading the channel's
// marks from Redis once.
func (m *markStore) get(ctx context.Context, channel, feed string) (string, bool, error) {
	m.mu.Lock()
	loaded := m.loaded[channel]
	m.mu.Unlock()
	if !loaded {
		vals, err := m.store.Client().HGetAll(ctx, m.prefix+channel).Result()
		if err != nil {
			return "", false, fmt.Errorf("load marks of %s: %w", channel, err)
		}
		m.mu.Lock()
		for f, v := range vals {
			if _, set := m.known[channel][f]; set {
				continue
			}
			if thoonk.ValidRev(v) { // (a mark of an older version is no revision: a first join)
				setNested(m.known, channel, f, v)
			}
		}
		m.loaded[channel] = true
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.known[channel][feed]
	return c, ok, nil
}

// delivered records a mark whose line the server took; an older one
// than the channel's (a confirmation arriving late) changes nothing.
func (m *markStore) delivered(mk mark) {
	m.mu.Lock()
	if old, ok := m.known[mk.channel][mk.feed]; ok && !thoonk.RevBefore(old, mk.rev) {
		m.mu.Unlock()
		return
	}
	setNested(m.known, mk.channel, mk.feed, mk.rev)
	setNested(m.dirty, mk.channel, mk.feed, mk.rev)
	m.mu.Unlock()
	m.poke()
}

// run writes dirty marks to Redis, coalescing bursts; while Redis fails
// it retries every few seconds.
func (m *markStore) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.notify:
		}
		// a short wait gathers a burst's marks into one write, and keeps
		// what a standby would post again after a crash small
		if thoonk.Sleep(ctx, markCoalesce) != nil {
			return
		}
		if err := m.flush(ctx); err != nil {
			m.log.Warn("irc: saving announcement marks; retrying", "err", err)
			if thoonk.Sleep(ctx, 5*time.Second) != nil {
				return
			}
			m.poke()
		}
	}
}

func (m *markStore) poke() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// flush writes the dirty marks; on failure they stay dirty.
func (m *markStore) flush(ctx context.Context) error {
	m.mu.Lock()
	dirty := m.dirty
	m.dirty = map[string]map[string]string{}
	m.mu.Unlock()
	if len(dirty) == 0 {
		return nil
	}
	var failed error
	for ch, feeds := range dirty {
		// a mark only moves on: a late write (a process that lost its
		// lead of the network) cannot take it back
		if err := m.store.AdvanceMarks(ctx, m.prefix+ch, markTTL, feeds); err != nil {
			failed = err
			continue
		}
		delete(dirty, ch)
	}
	if err := failed; err != nil {
		m.mu.Lock()
		for ch, feeds := range dirty {
			for f, c := range feeds {
				if _, newer := m.dirty[ch][f]; !newer {
					setNested(m.dirty, ch, f, c)
				}
			}
		}
		m.mu.Unlock()
		return fmt.Errorf("save marks: %w", err)
	}
	return nil
}
