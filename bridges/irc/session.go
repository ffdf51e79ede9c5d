package irc

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core"
)

// wantCaps are the IRCv3 capabilities requested when the server offers
// them; the bot works fully without any.
var wantCaps = []string{"message-tags", "server-time", "account-tag", "echo-message"}

// maxInbound bounds one received line: 8191 bytes of tags plus 512.
const maxInbound = 8191 + 512 + 2

// Delivery confirmation. An announcement line written to the socket may
// still be refused by the server (404 cannot send to channel) or lost with
// the connection, so its catch-up mark is kept in flight until the server
// answers a PING written after it: the server handles a client's lines in
// order, so any refusal of the line has arrived by then.
const (
	// pingToken starts the token of the bot's PINGs ("feedbridge:N").
	pingToken = "feedbridge:"
	// confirmBatch is how many announcement lines may be written before a
	// PING confirms them (one is also sent whenever the queue runs empty).
	confirmBatch = 32
	// maxInflight bounds the marks awaiting confirmation; beyond it the
	// oldest is forgotten (its item may be posted again by a catch-up).
	maxInflight = 4096
)

// sentMark is an announcement's mark written to the server, waiting for
// the answer to PING number ping.
type sentMark struct {
	ping uint64
	mark mark
}

// session is one connection to the server: a new one per (re)connect.
type session struct {
	b    *Bridge
	conn net.Conn
	log  *slog.Logger
	lim  *rate.Limiter
	isup *irc.ISupportTracker

	parent context.Context // the adapter's: its end means shutdown
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed once registration is over (end of MOTD)
	wmu    sync.Mutex    // one write at a time

	registered atomic.Bool
	lastRead   atomic.Int64 // unix nanoseconds

	// state of the read goroutine
	nick      string
	nickTries int
	capLS     []string
	caps      map[string]bool
	saslOnly  bool
	serverErr string

	// whois holds the pending services-account lookups, by folded nick.
	whois map[string]*whoisQuery

	mu      sync.Mutex
	wire    wire
	user    string
	host    string
	timers  map[string]*time.Timer // pending, by purpose
	failErr error
	// current is the nick the server knows the bot by (nick is the read
	// goroutine's copy).
	current string
	// inflight holds the marks of written announcements in the order
	// written; pings counts the PINGs written, pongs those answered, and
	// uncovered the marks written since the last PING.
	inflight  []sentMark
	pings     uint64
	pongs     uint64
	uncovered int
}

// connect dials the server (TLS when configured) and returns a session
// ready to register.
func (b *Bridge) connect(ctx context.Context) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(dctx, "tcp", b.cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", b.cfg.Server, err)
	}
	if b.c.tls != nil {
		tc := tls.Client(conn, b.c.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", b.cfg.Server, err)
		}
		conn = tc
	}
	lim := rate.NewLimiter(rate.Inf, b.cfg.Rate.Burst)
	if b.cfg.Rate.Interval > 0 {
		lim = rate.NewLimiter(rate.Every(b.cfg.Rate.Interval), b.cfg.Rate.Burst)
	}
	s := &session{
		b: b, conn: conn, log: b.log, lim: lim, isup: irc.NewISupportTracker(),
		ready: make(chan struct{}), nick: b.cfg.Nick, caps: map[string]bool{}, whois: map[string]*whoisQuery{},
		user: "~" + b.cfg.User, current: b.cfg.Nick, timers: map[string]*time.Timer{},
	}
	s.parent = ctx
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wire = wire{keepFormatting: b.cfg.Formatting == "keep", maxLines: b.cfg.MaxLines}
	s.setPrefix(b.cfg.Nick, "", "")
	s.lastRead.Store(time.Now().UnixNano())
	return s, nil
}

// run registers and serves the connection until it fails or ctx ends; it
// reports whether registration completed. Every goroutine it starts has
// returned when it returns.
func (s *session) run() (registered bool, err error) {
	defer s.cancel()
	readDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		<-s.ctx.Done()
		if s.parent.Err() != nil && s.registered.Load() {
			// a write stuck on a server that stopped reading gives up now
			_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
			confirm := s.unconfirmed() && s.ping() == nil // best effort: its PONG confirms the last announcements
			if lines, err := s.wireNow().buildLines("QUIT", nil, "feedbridge shutting down", ""); err == nil {
				_ = s.write(lines[0], time.Second) // best effort: the connection closes either way
			}
			if confirm {
				// the server answers the PING, then closes the connection
				// after QUIT; one that does neither gets a second
				select {
				case <-readDone:
				case <-time.After(time.Second):
				}
			}
		}
		s.conn.Close()
	})
	wg.Go(s.keepalive)
	wg.Go(s.writer)
	s.send("CAP", []string{"LS", "302"}, "")
	if p := s.b.cfg.Password.Reveal(); p != "" {
		s.send("PASS", nil, p)
	}
	s.send("NICK", []string{s.nick}, "")
	s.send("USER", []string{s.b.cfg.User, "0", "*"}, cmp.Or(s.b.cfg.Realname, s.b.cfg.Nick))
	readErr := s.read()
	close(readDone)
	s.cancel()
	wg.Wait()
	s.mu.Lock()
	for _, t := range s.timers {
		t.Stop()
	}
	clear(s.timers)
	s.mu.Unlock()
	switch {
	case s.failure() != nil:
		err = s.failure()
	case s.serverErr != "":
		err = fmt.Errorf("server closed the connection: %s", s.serverErr)
	case errors.Is(readErr, net.ErrClosed) || readErr == nil:
		err = io.EOF
	default:
		err = readErr
	}
	return s.registered.Load(), err
}

// fail ends the session with err (the first failure wins).
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.failErr == nil {
		s.failErr = err
	}
	s.mu.Unlock()
	s.cancel()
}

func (s *session) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failErr
}

// read reads and handles lines until the connection ends.
func (s *session) read() error {
	sc := bufio.NewScanner(s.conn)
	sc.Buffer(make([]byte, 4096), maxInbound)
	for sc.Scan() {
		s.lastRead.Store(time.Now().UnixNano())
		m, err := irc.ParseMessage(sc.Text())
		if err != nil {
			continue
		}
		s.handle(m)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// keepalive pings a silent server and drops a dead connection; it also
// bounds registration.
func (s *session) keepalive() {
	cfg := s.b.cfg
	tick := time.NewTicker(min(cfg.PingInterval, cfg.ConnectTimeout) / 4)
	defer tick.Stop()
	start := time.Now()
	var pinged time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		last := time.Unix(0, s.lastRead.Load())
		switch {
		case !s.registered.Load() && time.Since(start) > cfg.ConnectTimeout:
			s.fail(fmt.Errorf("registration did not complete within %s (irc.connect_timeout)", cfg.ConnectTimeout))
			return
		case time.Since(last) > 2*cfg.PingInterval:
			s.fail(fmt.Errorf("no reply from the server for %s", time.Since(last).Round(time.Second)))
			return
		case time.Since(last) > cfg.PingInterval && pinged.Before(last):
			pinged = time.Now()
			if err := s.ping(); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

// writer sends queued lines once registration is over, paced by the rate
// limiter; a PING follows announcements (every confirmBatch of them, and
// whenever the queue runs empty) so that the server's answer confirms them.
func (s *session) writer() {
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return
	}
	q := s.b.q
	for {
		if !q.pending() {
			select {
			case <-q.notify:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if err := s.lim.Wait(s.ctx); err != nil {
			return
		}
		l, ok := q.pop()
		if !ok {
			continue
		}
		if err := s.writeLine(l); err != nil {
			s.fail(err)
			return
		}
		if s.mustConfirm(!q.pending()) {
			if err := s.lim.Wait(s.ctx); err != nil {
				return
			}
			if err := s.ping(); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

// writeLine writes a queued line; an announcement's mark waits for the
// next PING's answer. The mark is recorded before the line goes out, so a
// refusal the server sends at once (404) always finds it to forget.
func (s *session) writeLine(l outLine) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if l.mark != nil {
		s.mu.Lock()
		if len(s.inflight) >= maxInflight {
			s.inflight = s.inflight[1:]
		}
		s.inflight = append(s.inflight, sentMark{ping: s.pings + 1, mark: *l.mark})
		s.uncovered++
		s.mu.Unlock()
	}
	// on failure the connection is gone: no PONG confirms the mark
	return s.writeLocked(l.text, s.b.cfg.ConnectTimeout)
}

// mustConfirm reports whether a PING should confirm the announcements
// written since the last one: confirmBatch of them, or any once idle.
func (s *session) mustConfirm(idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uncovered >= confirmBatch || (idle && s.uncovered > 0)
}

// unconfirmed reports whether written announcements await confirmation.
func (s *session) unconfirmed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight) > 0
}

// ping writes a numbered PING at once (like PONG, it never waits for the
// rate limiter, though it takes a token); keepalive and confirmation
// share the numbering, so that answers match in order.
func (s *session) ping() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.pings++
	n := s.pings
	s.uncovered = 0
	s.mu.Unlock()
	lines, err := s.wireNow().buildLines("PING", nil, pingToken+strconv.FormatUint(n, 10), "")
	if err != nil {
		return err
	}
	s.lim.Reserve()
	return s.writeLocked(lines[0], s.b.cfg.ConnectTimeout)
}

// pong records the server's answer to a PING: the announcements written
// before it are delivered, and their marks are kept. A server that does
// not echo the token answers PINGs in order all the same.
func (s *session) pong(token string) {
	s.mu.Lock()
	n := s.pongs + 1
	if v, ok := strings.CutPrefix(token, pingToken); ok {
		if x, err := strconv.ParseUint(v, 10, 64); err == nil {
			n = x
		}
	}
	s.pongs = max(s.pongs, min(n, s.pings))
	i := 0
	for i < len(s.inflight) && s.inflight[i].ping <= s.pongs {
		i++
	}
	done := s.inflight[:i:i]
	s.inflight = s.inflight[i:]
	s.mu.Unlock()
	for _, sm := range done {
		s.b.marks.delivered(sm.mark)
	}
}

// leave records that the bot cannot send to a channel any more (see
// Bridge.left): the marks in flight there are forgotten, and handed to the
// catch-up as lines to post again.
func (s *session) leave(name string, out bool) {
	key := s.casemap().fold(name)
	var lost []mark
	s.mu.Lock()
	s.inflight = slices.DeleteFunc(s.inflight, func(sm sentMark) bool {
		if sm.mark.channel == key {
			lost = append(lost, sm.mark)
			return true
		}
		return false
	})
	s.mu.Unlock()
	s.b.left(s, name, out, lost)
}

// write puts one line on the wire, failing when it takes over timeout.
func (s *session) write(line string, timeout time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(line, timeout)
}

// errLeaseLost refuses a write once another process may lead the network.
var errLeaseLost = errors.New("the fleet lease was lost: another bridge process leads this network")

// writeLocked is write with wmu held. Nothing is written once this
// process no longer leads the network (its lease): the connection is
// closed instead.
func (s *session) writeLocked(line string, timeout time.Duration) error {
	if !s.b.lease.Load().Valid() {
		_ = s.conn.Close()
		return errLeaseLost
	}
	if s.ctx.Err() != nil {
		timeout = min(timeout, time.Second) // the session is ending: no long waits
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(s.conn, line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// send writes a command at once, ahead of the queue (registration, PONG,
// QUIT); once registered it still takes a token, so the overall rate
// stays within the limit. Registration's few lines take none: a new
// connection (a reconnect, a fleet's hand-over) joins its channels with
// the whole burst left.
func (s *session) send(cmd string, params []string, text string) {
	lines, err := s.wireNow().buildLines(cmd, params, text, "")
	if err != nil {
		s.log.Error("irc: line not sent", "err", err)
		return
	}
	for _, l := range lines {
		if s.registered.Load() {
			s.lim.Reserve()
		}
		if err := s.write(l, s.b.cfg.ConnectTimeout); err != nil {
			s.fail(err)
			return
		}
	}
}

// queueCtrl queues one of the bot's own commands (JOIN, IDENTIFY, WHOIS)
// ahead of replies and announcements.
func (s *session) queueCtrl(cmd string, params []string, text string) {
	lines, err := s.wireNow().buildLines(cmd, params, text, "")
	if err != nil {
		s.log.Error("irc: line not sent", "err", err)
		return
	}
	s.b.q.pushProto(outLines(lines, nil, false)...)
}

func outLines(lines []string, m *mark, keep bool) []outLine {
	out := make([]outLine, len(lines))
	for i, l := range lines {
		out[i] = outLine{text: l, keep: keep}
	}
	if m != nil && len(out) > 0 {
		out[len(out)-1].mark = m
	}
	return out
}

func (s *session) wireNow() wire {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wire
}

// setPrefix records how the server relays the bot's messages; an unknown
// user or host counts as the longest allowed (USERLEN 10 plus '~', HOSTLEN 63).
func (s *session) setPrefix(nick, user, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user != "" {
		s.user = user
	}
	if host != "" {
		s.host = host
	}
	u, h := len(s.user), len(s.host)
	if s.host == "" {
		u, h = max(u, 11), 63
	}
	s.wire.prefixLen = 1 + len(nick) + 1 + u + 1 + h + 1
}

// after runs f after d unless the session ends first. There is one
// timer per key: while one is pending, after does nothing and reports
// false.
func (s *session) after(key string, d time.Duration, f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, pending := s.timers[key]; pending || s.ctx.Err() != nil {
		return false
	}
	s.timers[key] = time.AfterFunc(d, func() {
		s.mu.Lock()
		delete(s.timers, key)
		s.mu.Unlock()
		if s.ctx.Err() == nil {
			f()
		}
	})
	return true
}

// isChannel reports whether name is a channel (by the server's CHANTYPES).
func (s *session) isChannel(name string) bool {
	chantypes, ok := s.isup.GetRaw("CHANTYPES")
	if !ok {
		chantypes = "#&"
	}
	return name != "" && strings.IndexByte(chantypes, name[0]) >= 0
}

// setNick records the bot's nick as the server knows it.
func (s *session) setNick(n string) {
	s.nick = n
	s.mu.Lock()
	s.current = n
	s.mu.Unlock()
	s.setPrefix(n, "", "")
}

// hasNick reports whether the bot holds its configured nick.
func (s *session) hasNick() bool {
	s.mu.Lock()
	current := s.current
	s.mu.Unlock()
	return s.casemap().fold(current) == s.casemap().fold(s.b.cfg.Nick)
}

// regain asks for the configured nick when the bot, registered under
// another one, sees its holder give it up (nick is who changed nick or
// quit), or when force (the periodic try).
func (s *session) regain(nick string, force bool) {
	if !s.registered.Load() || s.hasNick() {
		return
	}
	if !force && s.casemap().fold(nick) != s.casemap().fold(s.b.cfg.Nick) {
		return
	}
	s.queueCtrl("NICK", []string{s.b.cfg.Nick}, "")
}

// regainLater tries the configured nick every nick_retry until the bot
// holds it.
func (s *session) regainLater() {
	if s.b.cfg.NickRetry <= 0 {
		return
	}
	s.after("nick", s.b.cfg.NickRetry, func() {
		if !s.hasNick() {
			s.regain("", true)
			s.regainLater()
		}
	})
}

// identify sends NickServ IDENTIFY when configured (and SASL is not).
func (s *session) identify() {
	if p := s.b.cfg.NickServ.Password.Reveal(); p != "" && s.b.cfg.SASL.Username == "" {
		s.queueCtrl("PRIVMSG", []string{s.b.cfg.NickServ.Nick}, "IDENTIFY "+p)
	}
}

// refused handles the server refusing a channel: a join (banned, invite
// only, full, bad key, TLS, operators or registered nicks only) or a
// message (404, cannot send to channel). Nothing more is queued for the
// channel, the marks of lines in flight there are forgotten (catch-up posts
// them again), and the channel is retried after delay.
func (s *session) refused(m *irc.Message, delay time.Duration) {
	ch := m.Param(1)
	s.leave(ch, false)
	if s.after("join:"+s.casemap().fold(ch), delay, func() { s.b.rejoin(s, ch) }) {
		s.log.Warn("irc: the server refused the channel; retrying later", "channel", ch, "code", m.Command, "reason", m.Trailing(), "retry_in", delay)
	}
}

func (s *session) casemap() casemap {
	cm, ok := s.isup.GetRaw("CASEMAPPING")
	if !ok {
		return "rfc1459"
	}
	return casemap(cm)
}

func (s *session) isSelf(nick string) bool {
	cm := s.casemap()
	return cm.fold(nick) == cm.fold(s.nick)
}

// handle processes one message on the read goroutine: it never waits for
// Redis (commands and joins are handed to other goroutines).
func (s *session) handle(m *irc.Message) {
	switch m.Command {
	case "PING":
		s.send("PONG", nil, m.Trailing())
	case "ERROR":
		s.serverErr = m.Trailing()
	case "CAP":
		s.handleCap(m)
	case "421", "451":
		if strings.EqualFold(m.Param(1), "CAP") && s.b.cfg.SASL.Username != "" {
			s.fail(errors.New("the server does not support CAP, so SASL is impossible: remove irc.sasl or use another server"))
		}
	case "AUTHENTICATE":
		if m.Param(0) == "+" {
			s.authenticate()
		}
	case "900":
		s.log.Info("irc: logged in with SASL", "account", m.Param(2))
	case "903":
		s.send("CAP", []string{"END"}, "")
	case "902", "904", "905", "906", "908":
		s.fail(fmt.Errorf("SASL PLAIN login refused by the server (%s %s): check irc.sasl.username and irc.sasl.password", m.Command, m.Trailing()))
	case "432", "433", "436":
		if !s.registered.Load() {
			s.nextNick(m.Command + " " + m.Trailing())
		}
	case "437": // nick or channel temporarily unavailable
		switch {
		case s.isChannel(m.Param(1)):
			s.refused(m, s.b.cfg.JoinRetry)
		case !s.registered.Load():
			s.nextNick(m.Command + " " + m.Trailing())
		}
	case "001":
		s.setNick(m.Param(0))
		user, host := "", ""
		if f := strings.Fields(m.Trailing()); len(f) > 0 {
			if p := irc.ParsePrefix(f[len(f)-1]); p.User != "" && p.Host != "" {
				user, host = p.User, p.Host
			}
		}
		s.setPrefix(s.nick, user, host)
		s.registered.Store(true)
		s.b.hub.SetState(s.b.Name(), core.StateUp, nil)
		s.log.Info("irc: registered", "server", s.b.cfg.Server, "nick", s.nick, "caps", s.enabledCaps())
		s.regainLater()
	case "005":
		_ = s.isup.Handle(m)
	case "376", "422":
		select {
		case <-s.ready:
		default:
			s.identify()
			close(s.ready)
			s.b.sessionReady(s)
		}
	case "396":
		s.setPrefix(s.nick, "", m.Param(1))
	case "NICK":
		switch {
		case m.Prefix == nil:
		case s.isSelf(m.Prefix.Name):
			s.setNick(m.Param(0))
			if s.registered.Load() && s.hasNick() {
				s.log.Info("irc: regained the configured nick", "nick", s.nick)
				s.identify() // services may tie the login to the nick
			}
		default:
			s.regain(m.Prefix.Name, false)
		}
	case "QUIT":
		s.regain(prefixName(m), false)
	case "PONG":
		s.pong(m.Trailing())
	case "JOIN":
		if m.Prefix != nil && s.isSelf(m.Prefix.Name) {
			s.setPrefix(s.nick, m.Prefix.User, m.Prefix.Host)
			s.b.joined(s, m.Param(0))
		}
	case "PART":
		if m.Prefix != nil && s.isSelf(m.Prefix.Name) {
			s.leave(m.Param(0), true)
		}
	case "KICK":
		if s.isSelf(m.Param(1)) {
			ch := m.Param(0)
			s.log.Warn("irc: kicked; rejoining later", "channel", ch, "by", prefixName(m), "reason", m.Trailing(), "rejoin_in", s.b.cfg.RejoinDelay)
			s.leave(ch, true)
			s.after("join:"+s.casemap().fold(ch), s.b.cfg.RejoinDelay, func() { s.b.rejoin(s, ch) })
		}
	case "471", "473", "474", "475", "477", "489", "520":
		s.refused(m, s.b.cfg.JoinRetry)
	case "404":
		if s.isChannel(m.Param(1)) {
			s.refused(m, s.b.cfg.JoinRetry)
		}
	case "403", "405", "476":
		s.log.Warn("irc: cannot join", "channel", m.Param(1), "code", m.Command, "reason", m.Trailing())
		s.leave(m.Param(1), false)
	case "PRIVMSG":
		s.b.onMessage(s, m)
	case "311", "330", "318":
		s.whoisReply(m)
	}
}

func prefixName(m *irc.Message) string {
	if m.Prefix == nil {
		return ""
	}
	return m.Prefix.Name
}

// handleCap runs the CAP LS 302 / REQ / ACK / NAK exchange.
func (s *session) handleCap(m *irc.Message) {
	sasl := s.b.cfg.SASL.Username != ""
	switch strings.ToUpper(m.Param(1)) {
	case "LS":
		s.capLS = append(s.capLS, strings.Fields(m.Trailing())...)
		if m.Param(2) == "*" {
			return // more LS lines follow
		}
		offered := map[string]string{}
		for _, c := range s.capLS {
			name, val, _ := strings.Cut(c, "=")
			offered[name] = val
		}
		var req []string
		for _, c := range wantCaps {
			if _, ok := offered[c]; ok {
				req = append(req, c)
			}
		}
		if sasl {
			mechs, ok := offered["sasl"]
			if !ok || (mechs != "" && !strings.Contains(","+mechs+",", ",PLAIN,")) {
				s.fail(fmt.Errorf("the server does not offer SASL PLAIN (offered: %q): remove irc.sasl or use NickServ", strings.Join(s.capLS, " ")))
				return
			}
			req = append(req, "sasl")
		}
		s.requestCaps(req)
	case "ACK":
		for _, c := range strings.Fields(m.Trailing()) {
			s.caps[strings.TrimPrefix(c, "-")] = !strings.HasPrefix(c, "-")
		}
		if sasl && s.caps["sasl"] {
			s.send("AUTHENTICATE", []string{"PLAIN"}, "")
			return
		}
		s.send("CAP", []string{"END"}, "")
	case "NAK":
		if sasl && !s.saslOnly {
			s.saslOnly = true // the set was refused as a whole: ask for SASL alone
			s.requestCaps([]string{"sasl"})
			return
		}
		if sasl {
			s.fail(fmt.Errorf("the server refused the sasl capability (%s): remove irc.sasl or use NickServ", m.Trailing()))
			return
		}
		s.send("CAP", []string{"END"}, "")
	}
}

func (s *session) requestCaps(req []string) {
	if len(req) == 0 {
		s.send("CAP", []string{"END"}, "")
		return
	}
	s.send("CAP", []string{"REQ"}, strings.Join(req, " "))
}

func (s *session) enabledCaps() []string {
	var out []string
	for c, on := range s.caps {
		if on {
			out = append(out, c)
		}
	}
	return out
}

// authenticate sends the SASL PLAIN credentials in 400-byte pieces.
func (s *session) authenticate() {
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + s.b.cfg.SASL.Username + "\x00" + s.b.cfg.SASL.Password.Reveal()))
	for len(cred) >= 400 {
		s.send("AUTHENTICATE", []string{cred[:400]}, "")
		cred = cred[400:]
	}
	s.send("AUTHENTICATE", []string{cmp.Or(cred, "+")}, "")
}

// nextNick tries the next alternate nick, then the nick's first five
// characters with four random digits: nine characters, the RFC 2812 limit
// that every server accepts (ngIRCd's default). refused is the server's
// last refusal, for the error when no nick is left.
func (s *session) nextNick(refused string) {
	s.nickTries++
	alts := s.b.cfg.AltNicks
	switch {
	case s.nickTries <= len(alts):
		s.nick = alts[s.nickTries-1]
	case s.nickTries <= len(alts)+10:
		base := s.b.cfg.Nick
		s.nick = base[:min(len(base), 5)] + strconv.Itoa(1000+rand.IntN(9000))
	default:
		s.fail(fmt.Errorf("the server refused every nick tried (last: %s): change irc.nick or add irc.alt_nicks", refused))
		return
	}
	s.log.Info("irc: nick refused; trying another", "refused", refused, "nick", s.nick)
	s.setNick(s.nick)
	s.send("NICK", []string{s.nick}, "")
}

// whoisQuery is one WHOIS asked to learn a person's services account.
type whoisQuery struct {
	userHost string // nick!user@host the answer must be about
	seen     string // user@host the server reported (311)
	account  string // the account (330)
	done     chan string
}

// maxWhois bounds the lookups in flight.
const maxWhois = 64

// lookupAccount asks the server which services account the person behind
// mask (nick!user@host) is logged in as: "" when none, when the nick now
// belongs to someone else, or when the server does not say in time.
func (s *session) lookupAccount(ctx context.Context, mask string) string {
	nick, userHost, _ := strings.Cut(mask, "!")
	key := s.casemap().fold(nick)
	s.mu.Lock()
	q, asked := s.whois[key], true
	if q == nil && len(s.whois) < maxWhois {
		q = &whoisQuery{userHost: userHost, done: make(chan string, 1)}
		s.whois[key], asked = q, false
	}
	s.mu.Unlock()
	if q == nil || q.userHost != userHost {
		return ""
	}
	if !asked {
		s.queueCtrl("WHOIS", []string{nick}, "")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case acct := <-q.done:
		q.done <- acct // for others waiting on the same query
		return acct
	case <-ctx.Done():
		s.mu.Lock()
		if s.whois[key] == q {
			delete(s.whois, key)
		}
		s.mu.Unlock()
		return ""
	}
}

// whoisReply collects 311 (user and host), 330 (account) and, at 318 (end
// of WHOIS), answers the lookup; the account counts only when the host
// matches the message's sender.
func (s *session) whoisReply(m *irc.Message) {
	key := s.casemap().fold(m.Param(1))
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.whois[key]
	if q == nil {
		return
	}
	switch m.Command {
	case "311":
		q.seen = m.Param(2) + "@" + m.Param(3)
	case "330":
		q.account = m.Param(2)
	case "318":
		delete(s.whois, key)
		if q.seen != q.userHost {
			q.account = ""
		}
		q.done <- q.account
	}
}
