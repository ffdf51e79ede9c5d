package irc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// sortedWait is how long a sorted feed's publish event waits for the
// position event that makes it an insert (both come from one script, back
// to back); without one it is an edit.
const sortedWait = 50 * time.Millisecond

// recentMargin is how many items beyond those posted a catch-up remembers,
// so that live events racing with it are not announced twice.
const recentMargin = 32

// mark is an announced item of a channel: where catch-up resumes. Its
// cursor is the item's as Redis placed it (the publish score on a plain
// feed, the index on a sorted one), never the bridge's clock, so that the
// catch-up counts what came after it even once it was edited (moved to
// the front), retracted or trimmed.
type mark struct {
	channel string // folded
	feed    string
	cur     thoonk.Cursor
}

// announcer turns feed events into channel announcements, runs catch-up
// and backlog after joins and resyncs, and asks the session to join. It is
// one goroutine: everything here that reads Redis runs on it, never on the
// IRC read goroutine.
type announcer struct {
	b     *Bridge
	types map[string]thoonk.FeedType
	// queued is the last item queued per channel and feed in the
	// channel's current stay (the resync catch-up point); the delivered
	// one is in the mark store.
	queued map[string]map[string]thoonk.Cursor
	// recent holds the ids a catch-up covered, per channel and feed, with
	// a hash of the content it read for each.
	recent map[string]map[string]map[string]uint64
	// early holds, per channel and feed, ids the channel has not seen:
	// published while it waited for its JOIN or catch-up, or written but
	// refused; a catch-up with no mark to start from shows them.
	early map[string]map[string]map[string]bool
	// baseline holds, per channel and feed, the ids a catch-up without a
	// mark read but did not post: its baseline (the newest of them) marks
	// them seen, so if one of them is posted live after all (its event
	// came after the catch-up), the mark moves back before it.
	baseline map[string]map[string]map[string]bool
	// caughtUp is when each channel's last catch-up started reading.
	caughtUp map[string]time.Time
	pending  *thoonk.Event // a sorted feed's publish, waiting for its position
}

func newAnnouncer(b *Bridge) *announcer {
	return &announcer{b: b, types: map[string]thoonk.FeedType{},
		queued: map[string]map[string]thoonk.Cursor{}, recent: map[string]map[string]map[string]uint64{},
		early: map[string]map[string]map[string]bool{}, baseline: map[string]map[string]map[string]bool{},
		caughtUp: map[string]time.Time{}}
}

func (a *announcer) run(ctx context.Context, sub *thoonk.Subscription) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
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
			if a.pending != nil {
				timer.Reset(sortedWait)
			}
		case <-timer.C:
			a.flushPending()
		}
	}
}

// housekeeping joins the channels of a newly registered session and
// catches up the channels just joined.
func (a *announcer) housekeeping(ctx context.Context) {
	b := a.b
	b.mu.Lock()
	s, ready, fresh, resumed, forget, unsent := b.sess, b.readyFor, b.fresh, b.resumed, b.forget, b.unsent
	b.readyFor, b.fresh, b.resumed, b.forget, b.unsent = nil, nil, nil, nil, nil
	b.mu.Unlock()
	if s == nil {
		return
	}
	for _, key := range forget {
		delete(a.queued, key) // its lane was dropped: resume from the delivered mark
	}
	for _, m := range unsent {
		a.remember(m.channel, m.feed, m.cur.ID, true)
	}
	if ready == s {
		clear(a.queued) // the queue was dropped with the old connection
		clear(a.early)
		clear(a.baseline)
		clear(a.caughtUp)
		b.join(s, b.desiredChannels(ctx, s))
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
	// event: an event in flight from before the join is then covered by
	// the catch-up, never posted ahead of the items it missed
	a.housekeeping(ctx)
	switch ev.Type {
	case thoonk.EventResync:
		a.flushPending()
		s := b.current()
		if s == nil {
			return
		}
		level := slog.LevelDebug // the listener's first connection
		if ev.Reason == thoonk.ResyncOverflow || b.hub.Events.Stats().Reconnects > 0 {
			level = slog.LevelInfo
		}
		b.log.Log(ctx, level, "irc: events may have been lost; catching up from Redis", "reason", ev.Reason)
		b.mu.Lock()
		names := slices.Collect(maps.Values(b.joinedCh))
		b.mu.Unlock()
		for _, n := range names {
			a.catchUp(ctx, s, n, false)
		}
		return
	case thoonk.EventCreate, thoonk.EventDelete, thoonk.EventConfig:
		delete(a.types, ev.Feed)
		if s := b.current(); ev.Type == thoonk.EventCreate && s != nil && b.c.auto != nil && b.public(ev.Feed) &&
			holdsItems(a.feedType(ctx, ev.Feed)) {
			if name := autoChannel(b.cfg.AutoChannels.Prefix, ev.Feed, s.channelLen()); name != "" && !b.isJoined(name) {
				b.join(s, []string{name})
			}
		}
		return
	case thoonk.EventJobFinish:
		return
	}
	if p := a.pending; p != nil {
		a.pending = nil
		if ev.Type == thoonk.EventPosition && ev.Feed == p.Feed && ev.ID == p.ID {
			a.announce(p.At, kindPublish, p.Feed, p.ID, p.Item, "", a.cursorOf(ctx, p.Feed, p.ID))
			return
		}
		a.announce(p.At, kindEdit, p.Feed, p.ID, p.Item, "", thoonk.Cursor{})
	}
	if live, waiting := b.targets(ev.Feed); len(live)+len(waiting) == 0 {
		return
	}
	switch ev.Type {
	case thoonk.EventPublish:
		switch a.feedType(ctx, ev.Feed) {
		case thoonk.TypeSorted:
			a.pending = &ev
		case thoonk.TypeFeed:
			a.announce(ev.At, kindPublish, ev.Feed, ev.ID, ev.Item, "", a.cursorOf(ctx, ev.Feed, ev.ID))
		}
	case thoonk.EventEdit:
		a.announce(ev.At, kindEdit, ev.Feed, ev.ID, ev.Item, "", thoonk.Cursor{})
	case thoonk.EventRetract:
		a.announce(ev.At, kindRetract, ev.Feed, ev.ID, nil, "", thoonk.Cursor{})
	case thoonk.EventPosition:
		item, err := b.hub.Store.Sorted(ev.Feed).Get(ctx, ev.ID)
		if err != nil && !errors.Is(err, thoonk.ErrNotFound) {
			b.log.Warn("irc: reading a moved item", "feed", ev.Feed, "id", ev.ID, "err", err)
		}
		a.announce(ev.At, kindPosition, ev.Feed, ev.ID, item, ev.Position, thoonk.Cursor{})
	}
}

// flushPending announces a sorted feed's lone publish as the edit it was.
func (a *announcer) flushPending() {
	if p := a.pending; p != nil {
		a.pending = nil
		a.announce(p.At, kindEdit, p.Feed, p.ID, p.Item, "", thoonk.Cursor{})
	}
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

// cursorOf returns an item's cursor as Redis places it, for its
// announcement's mark; an item already gone (or unreadable) gives none,
// and the channel's previous mark stays.
func (a *announcer) cursorOf(ctx context.Context, feed, id string) thoonk.Cursor {
	it, err := a.b.hub.Store.Item(ctx, feed, id)
	if err != nil {
		if !errors.Is(err, thoonk.ErrNotFound) {
			a.b.log.Warn("irc: reading an announced item's position", "feed", feed, "id", id, "err", err)
		}
		return thoonk.Cursor{}
	}
	return it.Cursor()
}

// announce queues an event, received at at, on every joined channel that
// shows it. A publish carries the item's cursor (when it has one),
// recorded once the server confirms its line. An edit or move received
// before a channel's catch-up read the item is left out there: the
// catch-up already showed (or counted) the item as it is.
func (a *announcer) announce(at time.Time, kind, feed, id string, item []byte, position string, cur thoonk.Cursor) {
	b := a.b
	s := b.current()
	if s == nil {
		return
	}
	cm := s.casemap()
	live, waiting := b.targets(feed)
	for _, t := range waiting {
		if kind == kindPublish {
			a.remember(cm.fold(t.name), feed, id, false)
		}
	}
	for _, t := range live {
		if !t.spec.events[kind] {
			continue
		}
		key := cm.fold(t.name)
		read, covered := a.recent[key][feed][id]
		if kind != kindPublish && covered && (at.Before(a.caughtUp[key]) || kind == kindEdit && read == thoonk.ContentSum(item)) {
			continue // the catch-up read the item after this change (it may reach us late)
		}
		var m *mark
		if kind == kindPublish {
			if covered {
				delete(a.recent[key][feed], id) // already covered by the catch-up
				continue
			}
			if cur.ID != "" {
				m = &mark{channel: key, feed: feed, cur: cur}
				setNested(a.queued, key, feed, cur)
				if a.baseline[key][feed][id] {
					// the baseline covers an item posted now: until its
					// line is confirmed, the mark stands just before it
					b.marks.delivered(mark{channel: key, feed: feed, cur: justBefore(cur, a.types[feed])})
					delete(a.baseline[key], feed)
				}
			}
		}
		a.post(s, t, kind, feed, id, item, position, m)
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
// or a resync. Per feed it posts up to catch_up missed items (the newest,
// oldest first), then "…and M more in feed X" for the rest.
func (a *announcer) catchUp(ctx context.Context, s *session, name string, onJoin bool) {
	b := a.b
	feeds, spec, err := b.channelFeeds(ctx, s, name)
	if err != nil {
		b.log.Warn("irc: catch-up: listing feeds", "channel", name, "err", err)
		return
	}
	if spec == nil || !spec.events[kindPublish] || !b.inChannel(name) {
		return // nothing to post, or the bot is not in the channel (yet: its JOIN's catch-up comes)
	}
	key := s.casemap().fold(name)
	a.recent[key] = map[string]map[string]uint64{}
	a.baseline[key] = map[string]map[string]bool{}
	a.caughtUp[key] = time.Now() // before reading Redis
	t := target{name, spec}
	for _, feed := range feeds {
		if err := a.catchUpFeed(ctx, s, t, key, feed, onJoin); err != nil && ctx.Err() == nil {
			b.log.Warn("irc: catch-up failed", "channel", name, "feed", feed, "err", err)
		}
	}
}

func (a *announcer) catchUpFeed(ctx context.Context, s *session, t target, key, feed string, onJoin bool) error {
	b := a.b
	typ := a.feedType(ctx, feed)
	if !holdsItems(typ) {
		return nil
	}
	// the last item queued in this stay in the channel, else the last
	// delivered (the queue does not outlive a connection or a stay)
	cur, ok := a.queued[key][feed]
	if !ok {
		var err error
		if cur, ok, err = b.marks.get(ctx, key, feed); err != nil {
			return err
		}
	}
	missed := 0
	if ok {
		n, err := countAfter(ctx, b.hub.Store, feed, typ, cur)
		switch {
		case errors.Is(err, thoonk.ErrNotFound):
			ok = false // the marked item is gone without a hint: start over from the newest
		case err != nil:
			return err
		}
		missed = n
	}
	show := min(missed, b.cfg.CatchUp)
	if onJoin {
		show = max(show, t.spec.backlog)
	}
	items, err := newestItems(ctx, b.hub.Store, feed, typ, show+recentMargin)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		if !ok {
			// an empty feed's baseline is its start: every item to come
			// counts as missed until one is confirmed delivered (a line
			// lost with the connection before any confirmation included)
			b.marks.delivered(mark{channel: key, feed: feed, cur: feedStart})
		}
		return nil
	}
	newest := mark{channel: key, feed: feed, cur: items[len(items)-1].Cursor()}
	setNested(a.queued, key, feed, newest.cur)
	shown := pickShown(items, show, ok, a.early[key][feed])
	delete(a.early[key], feed)
	// live events for what this covers are not announced again: with a
	// mark, every item read is announced, shown or counted; without one,
	// only those shown
	covered := items
	if !ok {
		covered = shown
		unposted := map[string]bool{}
		for _, it := range items[:len(items)-len(shown)] {
			unposted[it.ID] = true
		}
		a.baseline[key][feed] = unposted
	}
	recent := map[string]uint64{}
	for _, it := range covered {
		recent[it.ID] = thoonk.ContentSum(it.Data)
	}
	a.recent[key][feed] = recent
	for i, it := range shown {
		var m *mark
		if i == len(shown)-1 {
			m = &newest
		}
		a.post(s, t, kindPublish, feed, it.ID, it.Data, "", m)
	}
	more := missed // the summary counts the missed items not shown
	for _, it := range shown {
		if slices.IndexFunc(items, func(x thoonk.Item) bool { return x.ID == it.ID }) >= len(items)-missed {
			more--
		}
	}
	switch {
	case more > 0:
		text := fmt.Sprintf("…and %d more in feed %s", more, feed)
		if len(shown) == 0 {
			text = fmt.Sprintf("%d new items in feed %s while I was away", more, feed)
		}
		b.q.pushItem(key, t.name, t.spec.command, feed, more, b.summary(s, t.name, t.spec.command, feed, text, &newest), &newest)
	case !ok:
		b.marks.delivered(newest) // a first baseline for later catch-ups
	}
	return nil
}

// pickShown returns the items of a catch-up to post, oldest first, from
// items (the newest ones, oldest first): the newest show, and those the
// channel has not seen (early: id -> whether the server refused its line;
// else it was published while the channel waited for its JOIN). Without a
// mark, everything from the first unseen one on is posted (the items
// after it may still have their events in flight); with a mark, the
// refused ones are posted whatever catch_up says, even when the mark
// covers them (a first baseline can precede an item's live line).
func pickShown(items []thoonk.Item, show int, ok bool, early map[string]bool) []thoonk.Item {
	newest := max(len(items)-show, 0)
	unseen := func(it thoonk.Item) bool {
		refused, known := early[it.ID]
		return refused || (known && !ok)
	}
	first := slices.IndexFunc(items, unseen)
	switch {
	case first < 0 || first >= newest:
		return items[newest:]
	case !ok:
		return items[first:]
	}
	var picked []thoonk.Item
	for i, it := range items {
		if i >= newest || unseen(it) {
			picked = append(picked, it)
		}
	}
	return picked
}

// feedStart is the cursor before every item of a plain or sorted feed: a
// gone id whose hint places it at score 0 (plain) or index 0 (sorted).
var feedStart = thoonk.Cursor{ID: "-", Hint: "0"}

// justBefore returns a cursor placed just before the item at cur, so that
// the item counts as after it: a gone id at the float just below the
// item's score (plain feed) or at its index (sorted feed).
func justBefore(cur thoonk.Cursor, typ thoonk.FeedType) thoonk.Cursor {
	f, err := strconv.ParseFloat(cur.Hint, 64)
	if err != nil {
		return feedStart
	}
	if typ == thoonk.TypeFeed {
		f = math.Nextafter(f, math.Inf(-1))
	}
	return thoonk.Cursor{ID: feedStart.ID, Hint: strconv.FormatFloat(f, 'g', -1, 64)}
}

// countAfter counts the items newer than cur: published after it on a
// plain feed, placed after it on a sorted feed.
func countAfter(ctx context.Context, st *thoonk.Store, feed string, typ thoonk.FeedType, cur thoonk.Cursor) (int, error) {
	if typ == thoonk.TypeFeed {
		p, err := st.Page(ctx, feed, thoonk.PageRequest{Before: &cur, Limit: 1})
		return int(p.Start) + len(p.Items), err
	}
	p, err := st.Page(ctx, feed, thoonk.PageRequest{After: &cur, Limit: 1})
	return int(max(p.Total-p.Start, 0)), err
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

// remember notes an item a channel has not seen: published while it
// waited for its JOIN or catch-up, or (refused) its line was refused by
// the server. A catch-up without a mark to start from shows both; one
// with a mark shows the refused ones. At most recentMargin per channel
// and feed are kept.
func (a *announcer) remember(key, feed, id string, refused bool) {
	ids := a.early[key][feed]
	if ids == nil {
		ids = map[string]bool{}
		setNested(a.early, key, feed, ids)
	}
	if _, known := ids[id]; known || len(ids) < recentMargin {
		ids[id] = ids[id] || refused
	}
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
// feed, value = an encoded core.Cursor), so catch-up survives restarts.
// Writes are coalesced and never block the IRC writer.
type markStore struct {
	rdb    redis.UniversalClient
	prefix string
	log    *slog.Logger

	mu     sync.Mutex
	known  map[string]map[string]thoonk.Cursor
	loaded map[string]bool
	dirty  map[string]map[string]thoonk.Cursor
	notify chan struct{}
}

// markCoalesce is how long confirmed marks gather before they are written.
const markCoalesce = 20 * time.Millisecond

// markTTL keeps marks of channels no longer configured from piling up.
const markTTL = 30 * 24 * time.Hour

func newMarkStore(rdb redis.UniversalClient, server string, log *slog.Logger) *markStore {
	return &markStore{rdb: rdb, prefix: "feedbridge.irc.last:" + server + ":", log: log,
		known: map[string]map[string]thoonk.Cursor{}, loaded: map[string]bool{},
		dirty: map[string]map[string]thoonk.Cursor{}, notify: make(chan struct{}, 1)}
}

// get returns the delivered mark of a channel's feed, loading the channel's
// marks from Redis once.
func (m *markStore) get(ctx context.Context, channel, feed string) (thoonk.Cursor, bool, error) {
	m.mu.Lock()
	loaded := m.loaded[channel]
	m.mu.Unlock()
	if !loaded {
		vals, err := m.rdb.HGetAll(ctx, m.prefix+channel).Result()
		if err != nil {
			return thoonk.Cursor{}, false, fmt.Errorf("load marks of %s: %w", channel, err)
		}
		m.mu.Lock()
		for f, v := range vals {
			if _, set := m.known[channel][f]; set {
				continue
			}
			if c, err := thoonk.DecodeCursor(v); err == nil {
				setNested(m.known, channel, f, c)
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

// delivered records a mark whose line the server took.
func (m *markStore) delivered(mk mark) {
	m.mu.Lock()
	setNested(m.known, mk.channel, mk.feed, mk.cur)
	setNested(m.dirty, mk.channel, mk.feed, mk.cur)
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
	m.dirty = map[string]map[string]thoonk.Cursor{}
	m.mu.Unlock()
	if len(dirty) == 0 {
		return nil
	}
	pipe := m.rdb.Pipeline()
	for ch, feeds := range dirty {
		args := make([]any, 0, 2*len(feeds))
		for f, c := range feeds {
			args = append(args, f, c.Encode())
		}
		pipe.HSet(ctx, m.prefix+ch, args...)
		pipe.Expire(ctx, m.prefix+ch, markTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
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
