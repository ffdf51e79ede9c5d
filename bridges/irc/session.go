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
	timers  []*time.Timer
	failErr error
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
		user: "~" + b.cfg.User,
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
	var wg sync.WaitGroup
	wg.Go(func() {
		<-s.ctx.Done()
		if s.parent.Err() != nil && s.registered.Load() {
			// a write stuck on a server that stopped reading gives up now
			_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
			if lines, err := s.wireNow().buildLines("QUIT", nil, "feedbridge shutting down", ""); err == nil {
				_ = s.write(lines[0], time.Second) // best effort: the connection closes either way
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
	s.cancel()
	wg.Wait()
	s.mu.Lock()
	for _, t := range s.timers {
		t.Stop()
	}
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
			s.send("PING", nil, "feedbridge")
		}
	}
}

// writer sends queued lines once registration is over, paced by the rate
// limiter, and records announcements as written.
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
		if err := s.write(l.text, s.b.cfg.ConnectTimeout); err != nil {
			s.fail(err)
			return
		}
		if l.mark != nil {
			s.b.marks.written(*l.mark)
		}
	}
}

// write puts one line on the wire, failing when it takes over timeout.
func (s *session) write(line string, timeout time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
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
// QUIT); it still takes a token, so the overall rate stays within the limit.
func (s *session) send(cmd string, params []string, text string) {
	lines, err := s.wireNow().buildLines(cmd, params, text, "")
	if err != nil {
		s.log.Error("irc: line not sent", "err", err)
		return
	}
	for _, l := range lines {
		s.lim.Reserve()
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

// after runs f after d unless the session ends first.
func (s *session) after(d time.Duration, f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timers = append(s.timers, time.AfterFunc(d, func() {
		if s.ctx.Err() == nil {
			f()
		}
	}))
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
	case "432", "433", "436", "437":
		if !s.registered.Load() {
			s.nextNick(m.Command + " " + m.Trailing())
		}
	case "001":
		s.nick = m.Param(0)
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
	case "005":
		_ = s.isup.Handle(m)
	case "376", "422":
		select {
		case <-s.ready:
		default:
			if p := s.b.cfg.NickServ.Password.Reveal(); p != "" && s.b.cfg.SASL.Username == "" {
				s.queueCtrl("PRIVMSG", []string{s.b.cfg.NickServ.Nick}, "IDENTIFY "+p)
			}
			close(s.ready)
			s.b.sessionReady(s)
		}
	case "396":
		s.setPrefix(s.nick, "", m.Param(1))
	case "NICK":
		if m.Prefix != nil && s.isSelf(m.Prefix.Name) {
			s.nick = m.Param(0)
			s.setPrefix(s.nick, "", "")
		}
	case "JOIN":
		if m.Prefix != nil && s.isSelf(m.Prefix.Name) {
			s.setPrefix(s.nick, m.Prefix.User, m.Prefix.Host)
			s.b.joined(s, m.Param(0))
		}
	case "PART":
		if m.Prefix != nil && s.isSelf(m.Prefix.Name) {
			s.b.parted(s, m.Param(0))
		}
	case "KICK":
		if s.isSelf(m.Param(1)) {
			ch := m.Param(0)
			s.log.Warn("irc: kicked; rejoining later", "channel", ch, "by", prefixName(m), "reason", m.Trailing(), "rejoin_in", s.b.cfg.RejoinDelay)
			s.b.parted(s, ch)
			s.after(s.b.cfg.RejoinDelay, func() { s.b.join(s, []string{ch}) })
		}
	case "471", "473", "474", "475", "477":
		ch := m.Param(1)
		s.log.Warn("irc: the server refused a join; retrying later", "channel", ch, "code", m.Command, "reason", m.Trailing(), "retry_in", s.b.cfg.JoinRetry)
		s.b.parted(s, ch)
		s.after(s.b.cfg.JoinRetry, func() { s.b.join(s, []string{ch}) })
	case "403", "405", "476":
		s.log.Warn("irc: cannot join", "channel", m.Param(1), "code", m.Command, "reason", m.Trailing())
		s.b.parted(s, m.Param(1))
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
	s.setPrefix(s.nick, "", "")
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
