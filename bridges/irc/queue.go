package irc

import (
	"sync"
)

// outLine is one wire line waiting to be sent.
type outLine struct {
	text string
	// mark, when set, is recorded as announced once the line is written.
	mark *mark
	// keep survives a reconnect (job results); other lines are dropped
	// with the connection, and catch-up recovers the announcements.
	keep bool
	// channel is the channel a kept line is addressed to ("" for a
	// person): such a line waits until the bot is in that channel.
	channel string
}

// dropped counts the items of one feed left out of a full channel lane.
type dropped struct {
	feed  string
	count int
	mark  *mark
}

// lane is one channel's announcements, FIFO.
type lane struct {
	target  string
	cmd     string // PRIVMSG or NOTICE, for the summary
	lines   []outLine
	dropped []*dropped
}

// queue is the bot's outbound queue. The bot's own commands (JOIN,
// IDENTIFY, WHOIS) go first, then command replies; announcements wait in
// one lane per channel, served round-robin so a busy feed cannot starve
// other channels.
//
// Overflow policy: a lane holds at most laneCap lines; an item that does
// not fit whole is not queued but counted per feed, and once the lane has
// drained the count is announced as "…and N more in feed X" (with the
// feed's link). Replies beyond ctrlCap are dropped. The bot's own commands
// are never dropped: their number is bounded by the channels and the
// WHOIS lookups in flight. Kept replies (job results) for a channel the bot
// is not in yet wait in held, at most ctrlCap lines (beyond, dropped), and
// join the replies once the bot is in that channel (after its JOIN).
// Lines that must never wait (PONG, PING, registration, QUIT) bypass the queue.
type queue struct {
	mu      sync.Mutex
	proto   []outLine
	ctrl    []outLine
	held    []outLine
	lanes   map[string]*lane // by folded channel name
	order   []string
	next    int
	notify  chan struct{}
	laneCap int
	ctrlCap int
	// summarize builds the lines announcing a lane's dropped items.
	summarize func(target, cmd, feed string, n int, m *mark) []outLine
}

func newQueue(laneCap, ctrlCap int, summarize func(target, cmd, feed string, n int, m *mark) []outLine) *queue {
	return &queue{lanes: map[string]*lane{}, notify: make(chan struct{}, 1), laneCap: laneCap, ctrlCap: ctrlCap, summarize: summarize}
}

func (q *queue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// pushProto queues the bot's own commands, ahead of replies; they are
// never dropped.
func (q *queue) pushProto(lines ...outLine) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.proto = append(q.proto, lines...)
	q.wake()
}

// pushCtrl queues replies; it reports false when they were dropped.
func (q *queue) pushCtrl(lines ...outLine) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ctrl)+len(lines) > q.ctrlCap {
		return false
	}
	q.ctrl = append(q.ctrl, lines...)
	q.wake()
	return true
}

// pushHeld keeps replies for a channel the bot is not in until release;
// it reports false when they were dropped.
func (q *queue) pushHeld(lines ...outLine) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.held)+len(lines) > q.ctrlCap {
		return false
	}
	q.held = append(q.held, lines...)
	return true
}

// release moves the held replies of the channels that in selects to the
// replies, in the order they were held.
func (q *queue) release(in func(channel string) bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.held[:0]
	for _, l := range q.held {
		if in(l.channel) {
			q.ctrl = append(q.ctrl, l)
		} else {
			kept = append(kept, l)
		}
	}
	clear(q.held[len(kept):])
	q.held = kept
	q.wake()
}

// dropLane forgets a channel's waiting announcements and their dropped
// counts (the bot left the channel, or cannot send there): catch-up
// posts them after the bot is back.
func (q *queue) dropLane(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l := q.lanes[key]; l != nil {
		l.lines, l.dropped = nil, nil
	}
}

// pushItem queues the lines of one announcement on a channel's lane, whole
// or not at all; then the items it stands for (one, or a catch-up
// summary's count) are counted for the lane's summary.
func (q *queue) pushItem(key, target, cmd, feed string, items int, lines []outLine, m *mark) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.lanes[key]
	if l == nil {
		l = &lane{target: target, cmd: cmd}
		q.lanes[key] = l
		q.order = append(q.order, key)
	}
	// once items were dropped, later ones join the count until the
	// summary is out, so the channel never sees them out of order
	if len(l.dropped) > 0 || len(l.lines)+len(lines) > q.laneCap {
		l.drop(feed, items, m)
		q.wake()
		return false
	}
	l.lines = append(l.lines, lines...)
	q.wake()
	return true
}

func (l *lane) drop(feed string, items int, m *mark) {
	for _, d := range l.dropped {
		if d.feed == feed {
			d.count += items
			if m != nil {
				d.mark = m
			}
			return
		}
	}
	l.dropped = append(l.dropped, &dropped{feed: feed, count: items, mark: m})
}

// pop returns the next line to send: the bot's own commands first, then
// replies, then one line of the next lane in round-robin order; a drained
// lane with dropped items yields its summary lines.
func (q *queue) pop() (outLine, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.proto) > 0 {
		l := q.proto[0]
		q.proto = q.proto[1:]
		return l, true
	}
	if len(q.ctrl) > 0 {
		l := q.ctrl[0]
		q.ctrl = q.ctrl[1:]
		return l, true
	}
	for range len(q.order) {
		key := q.order[q.next%len(q.order)]
		q.next = (q.next + 1) % len(q.order)
		l := q.lanes[key]
		if len(l.lines) == 0 && len(l.dropped) > 0 {
			for _, d := range l.dropped {
				l.lines = append(l.lines, q.summarize(l.target, l.cmd, d.feed, d.count, d.mark)...)
			}
			l.dropped = nil
		}
		if len(l.lines) > 0 {
			out := l.lines[0]
			l.lines = l.lines[1:]
			return out, true
		}
	}
	return outLine{}, false
}

// pending reports whether anything waits.
func (q *queue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.proto) > 0 || len(q.ctrl) > 0 {
		return true
	}
	for _, l := range q.lanes {
		if len(l.lines) > 0 || len(l.dropped) > 0 {
			return true
		}
	}
	return false
}

// reset drops everything but lines marked keep, for a new connection;
// kept lines for channels are held until the bot is in them again.
func (q *queue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	var kept []outLine
	for _, l := range q.ctrl {
		switch {
		case !l.keep:
		case l.channel != "" && len(q.held) < q.ctrlCap:
			q.held = append(q.held, l)
		case l.channel == "":
			kept = append(kept, l)
		}
	}
	q.proto, q.ctrl = nil, kept
	q.lanes = map[string]*lane{}
	q.order, q.next = nil, 0
}
