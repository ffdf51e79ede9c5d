package irc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// request is a command someone sent, handed from the read goroutine to a
// command worker.
type request struct {
	s     *session
	nick  string
	actor core.Actor
	// account is true when the actor is a services account (account-tag).
	account bool
	// tagged is true when the server sends account tags (account-tag
	// negotiated): a message without one is from someone not logged in.
	tagged bool
	// channel is where it was said; "" for a private message.
	channel string
	text    string
}

// command is a parsed command.
type command struct {
	name string
	feed string
	id   string
	text string
	n    int
	args []string
}

// errUsage is a command typed wrong; its text is the usage to show.
type errUsage string

func (e errUsage) Error() string { return string(e) }

// commandText returns the command in a message: text after the prefix,
// or (in a private message) the whole text.
func commandText(text, prefix string, private bool) (string, bool) {
	t := strings.TrimSpace(text)
	if strings.HasPrefix(t, prefix) {
		t = strings.TrimSpace(t[len(prefix):])
		return t, t != ""
	}
	if !private || t == "" {
		return "", false
	}
	return t, true
}

// parseCommand splits a command into its name and arguments; itemsMax
// bounds N in "items FEED N".
func parseCommand(body string, itemsMax int) (command, error) {
	body = strings.ReplaceAll(cleanText(body, false), "\n", " ")
	name, rest := cutWord(body)
	c := command{name: strings.ToLower(name)}
	switch c.name {
	case "help", "feeds":
	case "items":
		c.feed, rest = cutWord(rest)
		n, rest := cutWord(rest)
		c.n = min(3, itemsMax)
		if c.feed == "" || strings.TrimSpace(rest) != "" {
			return c, errUsage("usage: items FEED [N]")
		}
		if n != "" {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 || v > itemsMax {
				return c, errUsage(fmt.Sprintf("usage: items FEED [N], N from 1 to %d", itemsMax))
			}
			c.n = v
		}
	case core.VerbPublish:
		c.feed, c.text = cutWord(rest)
		if c.feed == "" || c.text == "" {
			return c, errUsage("usage: publish FEED TEXT")
		}
	case core.VerbEdit:
		c.feed, rest = cutWord(rest)
		c.id, c.text = cutWord(rest)
		if c.id == "" || c.text == "" {
			return c, errUsage("usage: edit FEED ID TEXT")
		}
	case core.VerbRetract:
		c.feed, rest = cutWord(rest)
		c.id, rest = cutWord(rest)
		if c.id == "" || strings.TrimSpace(rest) != "" {
			return c, errUsage("usage: retract FEED ID")
		}
	default:
		c.args = strings.Fields(rest)
	}
	return c, nil
}

// cutWord returns the first space-separated word and the rest (trimmed).
func cutWord(s string) (string, string) {
	s = strings.TrimLeft(s, " ")
	w, rest, _ := strings.Cut(s, " ")
	return w, strings.TrimSpace(rest)
}

// onMessage handles a PRIVMSG on the read goroutine: it filters, rate
// limits and hands commands to the workers without waiting.
func (b *Bridge) onMessage(s *session, m *irc.Message) {
	if !b.cfg.Commands.Enabled || m.Prefix == nil || m.Prefix.User == "" || s.isSelf(m.Prefix.Name) {
		return // from the server, or the bot's own (echo-message)
	}
	nick := m.Prefix.Name
	text := m.Trailing()
	if strings.HasPrefix(text, "\x01") || matchAny(b.c.ignore, strings.ToLower(nick)) {
		return // CTCP, or an ignored bot
	}
	channel := m.Param(0)
	if s.isSelf(channel) {
		channel = ""
	}
	body, ok := commandText(text, b.cfg.Commands.Prefix, channel == "")
	if !ok {
		return
	}
	r := request{s: s, nick: nick, channel: channel, text: body, tagged: s.caps["account-tag"],
		actor: core.Actor{Protocol: "irc", ID: nick + "!" + m.Prefix.User + "@" + m.Prefix.Host, Display: nick}}
	// the rate limit follows the person, not the nick: a new nick keeps
	// the user@host (or the account) and so the bucket
	who := "host:" + m.Prefix.User + "@" + m.Prefix.Host
	if acct, ok := m.Tags["account"]; ok && r.tagged && acct != "" && acct != "*" {
		r.actor.ID, r.account = acct, true
		who = "account:" + acct
	}
	allowed, warn := b.users.allow(who)
	if !allowed {
		if warn {
			b.notice(r, "slow down: too many commands; try again in a few seconds", false)
		}
		return
	}
	b.hub.Metrics.RequestIn(b.Name())
	select {
	case b.cmds <- r:
	default:
		b.log.Warn("irc: too many commands waiting; one dropped", "from", nick)
		if b.busy.Allow() {
			b.notice(r, "busy: too many commands waiting; try again in a minute", false)
		}
	}
}

func (b *Bridge) commandWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-b.cmds:
			b.execute(ctx, r)
		}
	}
}

// execute runs one command and answers it.
func (b *Bridge) execute(ctx context.Context, r request) {
	c, err := parseCommand(r.text, b.cfg.Commands.ItemsMax)
	if err != nil {
		b.notice(r, err.Error(), false)
		return
	}
	var verbs map[string]string
	if r.channel != "" {
		if ch := b.staticChannel(r.s.casemap(), r.channel); ch != nil {
			verbs = ch.verbs
		}
	}
	switch c.name {
	case "help":
		b.notice(r, helpText(b.cfg.Commands.Prefix, verbs), false)
	case "feeds":
		b.prove(ctx, &r)
		b.listFeeds(ctx, r)
	case "items":
		b.prove(ctx, &r)
		b.listItems(ctx, r, c.feed, c.n)
	case core.VerbPublish, core.VerbEdit, core.VerbRetract:
		b.prove(ctx, &r)
		b.act(ctx, r, core.Action{Verb: c.name, Feed: c.feed, ID: c.id, Item: itemBytes(c)})
	default:
		feed, ok := verbs[c.name]
		if !ok {
			if r.channel == "" { // in a channel it may be another bot's command
				b.notice(r, fmt.Sprintf("unknown command %q; try %shelp", c.name, b.cfg.Commands.Prefix), false)
			}
			return
		}
		b.prove(ctx, &r)
		b.act(ctx, r, core.Action{Verb: c.name, Feed: feed, Args: c.args})
	}
}

// prove learns the services account of the sender of a command that
// needs an identity, by WHOIS, only when nothing told it yet: not when the
// message carried an account tag, nor when the server sends account tags
// at all (a message without one is from someone not logged in), nor with
// commands.whois off.
func (b *Bridge) prove(ctx context.Context, r *request) {
	if r.account || r.tagged || !b.cfg.Commands.Whois {
		return
	}
	if acct := r.s.lookupAccount(ctx, r.actor.ID); acct != "" {
		r.actor.ID, r.account = acct, true
	}
}

func itemBytes(c command) []byte {
	if c.name == core.VerbRetract {
		return nil
	}
	return []byte(c.text)
}

func helpText(prefix string, verbs map[string]string) string {
	cmds := []string{"feeds", "items FEED [N]", "publish FEED TEXT", "edit FEED ID TEXT", "retract FEED ID"}
	for _, v := range slices.Sorted(maps.Keys(verbs)) {
		cmds = append(cmds, v+" ARGS… (on "+verbs[v]+")")
	}
	return "commands: " + prefix + strings.Join(cmds, ", "+prefix)
}

// act submits an action as a job, acknowledges it with the job id, and
// reports the job's result when it comes.
func (b *Bridge) act(ctx context.Context, r request, a core.Action) {
	if b.cfg.Commands.RequireAccount && !r.account {
		b.reply(r, "log in to services (SASL or NickServ) to use "+a.Verb, false)
		return
	}
	if !b.exposed(a.Feed) {
		b.reply(r, fmt.Sprintf("no feed %q", a.Feed), false)
		return
	}
	a.Actor = r.actor
	watch := false
	if b.cfg.Commands.ResultWait > 0 {
		select {
		case b.waitSlots <- struct{}{}:
			watch = true
		default:
			b.log.Warn("irc: too many jobs awaited; this one's result will not be reported", "verb", a.Verb, "feed", a.Feed)
		}
	}
	var t core.Ticket
	var w *thoonk.ResultWaiter
	var err error
	if watch {
		t, w, err = b.hub.Actions.SubmitWatch(ctx, a)
	} else {
		t, err = b.hub.Actions.Submit(ctx, a)
	}
	if err != nil {
		if watch {
			<-b.waitSlots
		}
		b.reply(r, describeError(a, err), false)
		if !core.Refused(err) {
			b.log.Warn("irc: submitting an action", "verb", a.Verb, "feed", a.Feed, "err", err)
		}
		return
	}
	b.reply(r, fmt.Sprintf("%s on %s queued as job %s", a.Verb, a.Feed, t.JobID), false)
	if watch {
		b.waits.Go(func() {
			defer func() { <-b.waitSlots }()
			b.awaitResult(ctx, r, t, w)
		})
	}
}

// describeError answers a refused action briefly.
func describeError(a core.Action, err error) string {
	switch {
	case errors.Is(err, core.ErrDenied):
		return fmt.Sprintf("denied: you may not %s on %s", a.Verb, a.Feed)
	case errors.Is(err, thoonk.ErrFeedNotFound):
		return fmt.Sprintf("no feed %q", a.Feed)
	case core.Refused(err):
		return "refused: " + err.Error()
	}
	return "the job could not be stored; try again later"
}

// awaitResult reports a job's result to the person who asked; w was
// registered before the job was stored.
func (b *Bridge) awaitResult(ctx context.Context, r request, t core.Ticket, w *thoonk.ResultWaiter) {
	wctx, cancel := context.WithTimeout(ctx, b.cfg.Commands.ResultWait)
	defer cancel()
	res, err := core.WaitResult(wctx, w)
	switch {
	case err == nil:
		b.reply(r, resultText(t.JobID, res), true)
	case ctx.Err() == nil:
		b.reply(r, fmt.Sprintf("job %s is still pending after %s", t.JobID, b.cfg.Commands.ResultWait), true)
	}
}

// resultText reports a result briefly: the worker's message when it wrote
// one, else what happened.
func resultText(id string, res *core.Result) string {
	switch {
	case !res.OK && res.Message != "":
		return fmt.Sprintf("job %s failed (%d): %s", id, res.Code, res.Message)
	case !res.OK:
		return fmt.Sprintf("job %s failed (%d): %s", id, res.Code, res.Error)
	case res.Message != "":
		return fmt.Sprintf("job %s done: %s", id, res.Message)
	case res.ID != "":
		return fmt.Sprintf("job %s done: item %s", id, res.ID)
	}
	return fmt.Sprintf("job %s done", id)
}

// listFeeds answers "feeds" with the feeds the asker may read.
func (b *Bridge) listFeeds(ctx context.Context, r request) {
	feeds, err := b.exposedFeeds(ctx)
	if err != nil {
		b.notice(r, "cannot list feeds right now; try again later", false)
		return
	}
	feeds = slices.DeleteFunc(feeds, func(f string) bool { return !b.hub.ACL.Allowed(r.actor, f, core.OpRead) })
	if len(feeds) == 0 {
		b.notice(r, "no feeds you may read", false)
		return
	}
	const maxListed = 50
	infos, err := b.hub.Store.Describe(ctx, feeds[:min(len(feeds), maxListed)]...)
	if err != nil {
		b.notice(r, "cannot list feeds right now; try again later", false)
		return
	}
	var parts []string
	for _, f := range b.hub.Usable(b.Name(), infos) {
		if holdsItems(f.Type) { // not job feeds and queues
			parts = append(parts, fmt.Sprintf("%s (%d)", f.Name, f.Count))
		}
	}
	text := "feeds: " + strings.Join(parts, ", ")
	if len(feeds) > maxListed {
		text += fmt.Sprintf(" …and %d more", len(feeds)-maxListed)
	}
	b.notice(r, text, false)
}

// listItems answers "items FEED N" with the feed's first N items in
// display order, one line each.
func (b *Bridge) listItems(ctx context.Context, r request, feed string, n int) {
	if thoonk.ValidateFeedName(feed) != nil || !b.exposed(feed) || !b.hub.ACL.Allowed(r.actor, feed, core.OpRead) {
		b.notice(r, fmt.Sprintf("no feed %q you may read", feed), false)
		return
	}
	p, err := b.hub.Store.Page(ctx, feed, thoonk.PageRequest{Limit: n})
	switch {
	case errors.Is(err, thoonk.ErrNotFound):
		b.notice(r, fmt.Sprintf("no feed %q you may read", feed), false)
		return
	case errors.Is(err, thoonk.ErrWrongType):
		b.notice(r, fmt.Sprintf("%s has no items to show (%v)", feed, err), false)
		return
	case b.hub.Malformed(b.Name(), err):
		b.notice(r, fmt.Sprintf("%s cannot be shown: its data in Redis is malformed (the operator is told)", feed), false)
		return
	case err != nil:
		b.notice(r, "cannot read the feed right now; try again later", false)
		return
	}
	if len(p.Items) == 0 {
		b.notice(r, feed+" is empty", false)
		return
	}
	s := r.s
	w := s.wireNow()
	w.maxLines = 1
	var out []outLine
	for _, it := range p.Items {
		url := linkURL(b.cfg.Links.Item, b.hub.PublicURL, feed, it.ID)
		v := newView(kindPublish, feed, it.ID, it.Data, "", url)
		lines, err := w.buildLines("NOTICE", []string{r.nick}, it.ID+": "+v.Title, url)
		if err == nil {
			out = append(out, outLines(lines, nil, false)...)
		}
	}
	if p.Total > int64(len(p.Items)) {
		lines, err := w.buildLines("NOTICE", []string{r.nick}, fmt.Sprintf("(%d of %d)", len(p.Items), p.Total), "")
		if err == nil {
			out = append(out, outLines(lines, nil, false)...)
		}
	}
	b.q.pushCtrl(out...)
}

// notice answers the asker privately.
func (b *Bridge) notice(r request, text string, keep bool) {
	b.say(r, "NOTICE", r.nick, text, keep)
}

// reply answers where commands.reply says: in the channel (addressed to
// the asker) or by notice; private messages are answered by notice.
func (b *Bridge) reply(r request, text string, keep bool) {
	if r.channel != "" && b.cfg.Commands.Reply == "channel" {
		b.say(r, "PRIVMSG", r.channel, r.nick+": "+text, keep)
		return
	}
	b.notice(r, text, keep)
}

// say queues a reply on the current connection (a result may come after
// a reconnect); keep makes it survive one more, and a kept reply to a
// channel waits until the bot is in the channel (after its JOIN).
func (b *Bridge) say(r request, cmd, target, text string, keep bool) {
	s := b.current()
	if s == nil {
		s = r.s
	}
	lines, err := s.wireNow().buildLines(cmd, []string{target}, text, "")
	if err != nil {
		return
	}
	out := outLines(lines, nil, keep)
	if !keep || target != r.channel {
		if !b.q.pushCtrl(out...) {
			b.log.Warn("irc: reply queue full; reply dropped", "to", target)
		}
		return
	}
	for i := range out {
		out[i].channel = target
	}
	if !b.q.pushHeld(out...) {
		b.log.Warn("irc: too many results waiting for their channels; one dropped", "to", target)
	}
	b.releaseHeld(s) // at once when the bot is in the channel
}

// userLimits rate-limits each person's commands. It holds at most
// maxUsers people; idle entries are dropped first.
type userLimits struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	users map[string]*userLimit
}

type userLimit struct {
	lim    *rate.Limiter
	warned bool
	seen   time.Time
}

const maxUsers = 10000

func newUserLimits(rc RateConfig) *userLimits {
	every := rate.Inf
	if rc.Interval > 0 {
		every = rate.Every(rc.Interval)
	}
	return &userLimits{every: every, burst: rc.Burst, users: map[string]*userLimit{}}
}

// allow reports whether id may run a command now, and whether to warn
// (once per run of refusals).
func (u *userLimits) allow(id string) (ok, warn bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	l := u.users[id]
	if l == nil {
		if len(u.users) >= maxUsers {
			maps.DeleteFunc(u.users, func(_ string, l *userLimit) bool { return now.Sub(l.seen) > 10*time.Minute })
			if len(u.users) >= maxUsers {
				clear(u.users)
			}
		}
		l = &userLimit{lim: rate.NewLimiter(u.every, u.burst)}
		u.users[id] = l
	}
	l.seen = now
	if l.lim.AllowN(now, 1) {
		l.warned = false
		return true, false
	}
	warn = !l.warned
	l.warned = true
	return false, warn
}
