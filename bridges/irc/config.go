package irc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Config is the irc section of bridge.yaml.
type Config struct {
	// Enabled turns the adapter on.
	Enabled bool `yaml:"enabled"`
	// Server is the IRC server's host:port.
	Server string `yaml:"server"`
	// TLS is auto (on unless the server is on loopback), true or false.
	TLS string `yaml:"tls"`
	// TLSCAFile is a PEM file of CAs trusted instead of the system's.
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSSkipVerify accepts any server certificate (testing only).
	TLSSkipVerify bool `yaml:"tls_skip_verify"`
	// Nick is the bot's nick; AltNicks are tried in order when it is taken.
	Nick     string   `yaml:"nick"`
	AltNicks []string `yaml:"alt_nicks"`
	// NickRetry is how often the bot, registered under another nick, asks
	// for Nick again; it also asks as soon as it sees Nick's holder change
	// nick or quit. 0 asks only then.
	NickRetry time.Duration `yaml:"nick_retry"`
	// User and Realname fill the USER command.
	User     string `yaml:"user"`
	Realname string `yaml:"realname"`
	// Password is the server password (PASS).
	Password core.Secret `yaml:"password"`
	// SASL logs in with SASL PLAIN during registration when Username is set.
	SASL SASLConfig `yaml:"sasl"`
	// NickServ identifies with services after registration when Password
	// is set (and SASL is not used).
	NickServ NickServConfig `yaml:"nickserv"`
	// ConnectTimeout bounds dialing and registration.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// PingInterval is the silence after which the bot pings the server;
	// another PingInterval without any reply drops the connection.
	PingInterval time.Duration `yaml:"ping_interval"`
	// Reconnect spaces reconnect attempts (exponential, with jitter).
	Reconnect BackoffConfig `yaml:"reconnect"`
	// RejoinDelay is the wait before rejoining a channel after a kick.
	RejoinDelay time.Duration `yaml:"rejoin_delay"`
	// JoinRetry is the wait before retrying a channel the server refused
	// (banned, invite only, full, bad key).
	JoinRetry time.Duration `yaml:"join_retry"`
	// Rate limits every line the bot sends.
	Rate RateConfig `yaml:"rate"`
	// QueueLines bounds the lines waiting per channel; items beyond it are
	// counted and announced as "…and N more in feed X".
	QueueLines int `yaml:"queue_lines"`
	// MaxLines caps the lines one item (or reply) may take.
	MaxLines int `yaml:"max_lines"`
	// Formatting is strip (remove IRC formatting codes) or keep.
	Formatting string `yaml:"formatting"`
	// Links are the bridge's URLs for items and feeds, relative to
	// http.public_url: {feed} and {id} are replaced (path-escaped).
	Links LinksConfig `yaml:"links"`
	// CatchUp is how many missed items per feed are posted after a
	// reconnect before "…and M more in feed X"; 0 posts only a summary.
	CatchUp int `yaml:"catch_up"`
	// Feeds replaces the global feed selection for this adapter.
	Feeds *core.FeedFilter `yaml:"feeds"`
	// Announce is the default announcement settings of every channel.
	Announce Announce `yaml:"announce"`
	// Channels map feeds to channels.
	Channels []ChannelConfig `yaml:"channels"`
	// AutoChannels gives every exposed feed a channel of its own.
	AutoChannels AutoConfig `yaml:"auto_channels"`
	// Commands configures the commands people type.
	Commands CommandsConfig `yaml:"commands"`
}

// SASLConfig is the account for SASL PLAIN.
type SASLConfig struct {
	// Username is the account; Password its password.
	Username string      `yaml:"username"`
	Password core.Secret `yaml:"password"`
}

// NickServConfig is the account for NickServ IDENTIFY.
type NickServConfig struct {
	// Nick is the services bot to identify with; Password the account's.
	Nick     string      `yaml:"nick"`
	Password core.Secret `yaml:"password"`
}

// BackoffConfig bounds reconnect delays.
type BackoffConfig struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// RateConfig is a token bucket: one token per Interval, at most Burst
// saved; Interval 0 means no limit.
type RateConfig struct {
	Interval time.Duration `yaml:"interval"`
	Burst    int           `yaml:"burst"`
}

// LinksConfig holds URL templates relative to http.public_url (or
// absolute); empty turns a link off.
type LinksConfig struct {
	Item string `yaml:"item"`
	Feed string `yaml:"feed"`
}

// Announce says which events a channel shows and how. In a channel entry
// an unset field takes the value of the section's announce.
type Announce struct {
	// Events lists the event kinds shown: publish, edit, retract, position.
	Events []string `yaml:"events"`
	// Templates are Go text/templates per event kind.
	Templates map[string]string `yaml:"templates"`
	// Message is privmsg or notice.
	Message string `yaml:"message"`
	// Backlog is how many recent items are posted after each (re)join.
	Backlog *int `yaml:"backlog"`
}

// ChannelConfig maps feeds to one channel.
type ChannelConfig struct {
	// Name is the channel, such as #news.
	Name string `yaml:"name"`
	// Key is the channel key (+k), if any.
	Key core.Secret `yaml:"key"`
	// Feeds are glob patterns of the feeds announced here.
	Feeds []string `yaml:"feeds"`
	// Verbs are custom commands allowed here: verb -> feed the action targets.
	Verbs    map[string]string `yaml:"verbs"`
	Announce `yaml:",inline"`
}

// AutoConfig gives every exposed feed its own channel.
type AutoConfig struct {
	// Enabled turns auto channels on.
	Enabled bool `yaml:"enabled"`
	// Prefix starts every auto channel's name.
	Prefix   string `yaml:"prefix"`
	Announce `yaml:",inline"`
}

// CommandsConfig configures inbound commands.
type CommandsConfig struct {
	// Enabled turns commands on.
	Enabled bool `yaml:"enabled"`
	// Prefix starts a command in a channel (optional in private messages).
	Prefix string `yaml:"prefix"`
	// RequireAccount refuses actions from people not logged in to services.
	RequireAccount bool `yaml:"require_account"`
	// Whois asks the server (WHOIS, reply 330) for the services account of
	// people whose messages carry no account tag.
	Whois bool `yaml:"whois"`
	// Reply is where job results go: channel or notice.
	Reply string `yaml:"reply"`
	// ResultWait is how long the bot waits for a job's result.
	ResultWait time.Duration `yaml:"result_wait"`
	// Rate limits each person's commands.
	Rate RateConfig `yaml:"rate"`
	// Ignore lists nick patterns (globs, case-insensitive) never answered.
	Ignore []string `yaml:"ignore"`
	// ItemsMax caps N in "items FEED N".
	ItemsMax int `yaml:"items_max"`
}

// Event kinds a channel can show.
const (
	kindPublish  = "publish"
	kindEdit     = "edit"
	kindRetract  = "retract"
	kindPosition = "position"
)

var eventKinds = []string{kindPublish, kindEdit, kindRetract, kindPosition}

// builtinCommands are the command names custom verbs may not take.
var builtinCommands = []string{"help", "feeds", "items", core.VerbPublish, core.VerbEdit, core.VerbRetract, core.VerbMove}

// maxChannels bounds the configured channels.
const maxChannels = 1000

// defaultConfig holds every default of the section, in one place.
func defaultConfig() Config {
	backlog := 0
	return Config{
		TLS:            "auto",
		Nick:           "feedbot", // RFC 2812 nicks have at most 9 characters
		NickRetry:      5 * time.Minute,
		User:           "feedbridge",
		Realname:       "feedbridge",
		NickServ:       NickServConfig{Nick: "NickServ"},
		ConnectTimeout: 30 * time.Second,
		PingInterval:   90 * time.Second,
		Reconnect:      BackoffConfig{Min: 2 * time.Second, Max: 5 * time.Minute},
		RejoinDelay:    10 * time.Second,
		JoinRetry:      5 * time.Minute,
		Rate:           RateConfig{Interval: time.Second, Burst: 4},
		QueueLines:     50,
		MaxLines:       4,
		Formatting:     "strip",
		Links:          LinksConfig{Item: "/v1/feeds/{feed}/items/{id}", Feed: "/atom/{feed}"},
		Announce: Announce{
			Events: []string{kindPublish, kindEdit, kindRetract},
			Templates: map[string]string{
				kindPublish:  "[{{.Feed}}] {{.Title}}{{with .Link}} — {{.}}{{end}}",
				kindEdit:     "[{{.Feed}}] edited: {{.Title}}{{with .Link}} — {{.}}{{end}}",
				kindRetract:  "[{{.Feed}}] retracted {{.ID}}",
				kindPosition: "[{{.Feed}}] moved {{.Title}} {{.Position}}",
			},
			Message: "privmsg",
			Backlog: &backlog,
		},
		AutoChannels: AutoConfig{Prefix: "#feed-"},
		Commands: CommandsConfig{
			Enabled:    true,
			Prefix:     "!",
			Whois:      true,
			Reply:      "channel",
			ResultWait: 2 * time.Minute,
			Rate:       RateConfig{Interval: 5 * time.Second, Burst: 3},
			Ignore:     []string{"*bot", "*serv"},
			ItemsMax:   5,
		},
	}
}

// Factory registers the adapter under the "irc" section.
var Factory = core.Factory{Name: "irc", New: New}

// New decodes and validates the section; it returns nil when disabled.
func New(sec *core.Section) (core.Adapter, error) {
	cfg := defaultConfig()
	if err := sec.Decode(&cfg); err != nil {
		return nil, err
	}
	c, err := compile(&cfg, sec)
	if err != nil {
		return nil, err
	}
	if !cfg.Enabled {
		return nil, nil
	}
	return newBridge(cfg, c), nil
}

// compiled is the config in the shape the adapter runs on.
type compiled struct {
	tls      *tls.Config // nil: plain TCP
	channels []*channel
	auto     *announceSpec // nil: no auto channels
	ignore   []thoonk.Pattern
}

// channel is one configured channel, compiled.
type channel struct {
	name  string
	key   string
	feeds []thoonk.Pattern
	verbs map[string]string
	spec  *announceSpec
}

// announceSpec is a channel's announcement settings, compiled.
type announceSpec struct {
	events    map[string]bool
	templates map[string]*template.Template
	command   string // PRIVMSG or NOTICE
	backlog   int
}

// compile validates the config and collects every problem, each naming
// its key and the fix.
func compile(cfg *Config, sec *core.Section) (*compiled, error) {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, sec.Errorf(key, format, args...)) }
	c := &compiled{}
	if cfg.Feeds != nil {
		if err := cfg.Feeds.Compile(sec, "feeds"); err != nil {
			errs = append(errs, err)
		}
	}
	host, _, err := net.SplitHostPort(cfg.Server)
	switch {
	case cfg.Server == "" && cfg.Enabled:
		bad("server", "set the IRC server as host:port, for example irc.libera.chat:6697")
	case cfg.Server != "" && (err != nil || host == ""):
		bad("server", "%q must be host:port, for example irc.libera.chat:6697", cfg.Server)
	}
	if cfg.TLS != "auto" && cfg.TLS != "true" && cfg.TLS != "false" {
		bad("tls", "%q is not a choice: use auto (on unless the server is on loopback), true or false", cfg.TLS)
	} else if err == nil {
		if cfg.TLS == "true" || (cfg.TLS == "auto" && !isLoopback(host)) {
			c.tls = &tls.Config{ServerName: host, InsecureSkipVerify: cfg.TLSSkipVerify, MinVersion: tls.VersionTLS12}
			if cfg.TLSCAFile != "" {
				pem, err := os.ReadFile(cfg.TLSCAFile)
				pool := x509.NewCertPool()
				if err != nil || !pool.AppendCertsFromPEM(pem) {
					bad("tls_ca_file", "cannot load PEM certificates from %q (%v): give a readable PEM file or leave it empty for the system's CAs", cfg.TLSCAFile, err)
				}
				c.tls.RootCAs = pool
			}
		}
	}
	for i, n := range append([]string{cfg.Nick}, cfg.AltNicks...) {
		key := "nick"
		if i > 0 {
			key = fmt.Sprintf("alt_nicks[%d]", i-1)
		}
		if err := validNick(n); err != nil {
			bad(key, "%v", err)
		}
	}
	if err := validToken(cfg.User); err != nil {
		bad("user", "%v", err)
	}
	if strings.ContainsAny(cfg.Realname, "\r\n\x00") {
		bad("realname", "must be one line of text")
	}
	if (cfg.SASL.Username == "") != (cfg.SASL.Password == "") {
		bad("sasl", "set both username and password for SASL PLAIN, or neither")
	}
	if cfg.NickServ.Password != "" {
		if err := validNick(cfg.NickServ.Nick); err != nil {
			bad("nickserv.nick", "%v", err)
		}
	}
	for key, d := range map[string]time.Duration{"connect_timeout": cfg.ConnectTimeout, "ping_interval": cfg.PingInterval,
		"reconnect.min": cfg.Reconnect.Min, "rejoin_delay": cfg.RejoinDelay, "join_retry": cfg.JoinRetry} {
		if d < time.Second {
			bad(key, "must be at least 1s")
		}
	}
	if cfg.NickRetry != 0 && cfg.NickRetry < time.Second {
		bad("nick_retry", "must be 0 (only when the nick's holder is seen leaving it) or at least 1s")
	}
	if cfg.Reconnect.Max < cfg.Reconnect.Min {
		bad("reconnect.max", "must be at least reconnect.min (%s)", cfg.Reconnect.Min)
	}
	for key, r := range map[string]RateConfig{"rate": cfg.Rate, "commands.rate": cfg.Commands.Rate} {
		if r.Interval < 0 || r.Burst < 1 || r.Burst > 100 {
			bad(key, "interval must not be negative (0 = no limit) and burst must be 1 to 100")
		}
	}
	if cfg.QueueLines < 1 || cfg.QueueLines > 10000 {
		bad("queue_lines", "must be 1 to 10000")
	}
	if cfg.MaxLines < 1 || cfg.MaxLines > 100 {
		bad("max_lines", "must be 1 to 100")
	} else if cfg.QueueLines >= 1 && cfg.QueueLines < cfg.MaxLines {
		bad("queue_lines", "must be at least max_lines (%d): an item of max_lines lines would never fit a channel's queue", cfg.MaxLines)
	}
	if cfg.Formatting != "strip" && cfg.Formatting != "keep" {
		bad("formatting", "%q is not a choice: use strip or keep", cfg.Formatting)
	}
	for key, l := range map[string]string{"links.item": cfg.Links.Item, "links.feed": cfg.Links.Feed} {
		if l != "" && !strings.HasPrefix(l, "/") && cleanLink(l) == "" {
			bad(key, "%q must be a path such as /v1/feeds/{feed}/items/{id}, an http(s) URL, or empty", l)
		}
	}
	if cfg.CatchUp < 0 || cfg.CatchUp > 100 {
		bad("catch_up", "must be 0 (summary only) to 100")
	}
	defaults, err := compileAnnounce(cfg.Announce, nil, sec, "announce")
	errs = append(errs, err)
	if len(cfg.Channels) > maxChannels {
		bad("channels", "%d channels, over the limit of %d", len(cfg.Channels), maxChannels)
	}
	seen := map[string]string{}
	for i, ch := range cfg.Channels {
		at := fmt.Sprintf("channels[%d]", i)
		cc := &channel{name: ch.Name, key: ch.Key.Reveal(), verbs: ch.Verbs}
		if err := validChannel(ch.Name, "#&+!", 200); err != nil {
			bad(at+".name", "%v", err)
		} else if prev, dup := seen[casemap("rfc1459").fold(ch.Name)]; dup {
			bad(at+".name", "%q is already configured at %s: list each channel once", ch.Name, prev)
		}
		seen[casemap("rfc1459").fold(ch.Name)] = at
		if err := validToken(ch.Key.Reveal()); ch.Key != "" && err != nil {
			bad(at+".key", "a channel key must be one word without spaces, commas or controls")
		}
		for j, g := range ch.Feeds {
			p, err := thoonk.CompilePattern(g)
			if err != nil {
				bad(fmt.Sprintf("%s.feeds[%d]", at, j), "%v", err)
			}
			cc.feeds = append(cc.feeds, p)
		}
		for verb, feed := range ch.Verbs {
			if err := core.ValidateVerb(verb); err != nil {
				bad(at+".verbs."+verb, "%v", err)
			} else if slices.Contains(builtinCommands, verb) {
				bad(at+".verbs."+verb, "%q is a built-in command: choose another verb", verb)
			}
			if err := thoonk.ValidateFeedName(feed); err != nil {
				bad(at+".verbs."+verb, "name the feed the %s action targets: %v", verb, err)
			}
		}
		cc.spec, err = compileAnnounce(ch.Announce, defaults, sec, at)
		errs = append(errs, err)
		c.channels = append(c.channels, cc)
	}
	if cfg.AutoChannels.Enabled {
		if err := validChannel(cfg.AutoChannels.Prefix+"x", "#&+!", 50); err != nil {
			bad("auto_channels.prefix", "%q must start a valid channel name, such as #feed-: %v", cfg.AutoChannels.Prefix, err)
		}
		c.auto, err = compileAnnounce(cfg.AutoChannels.Announce, defaults, sec, "auto_channels")
		errs = append(errs, err)
	}
	cm := cfg.Commands
	if cm.Prefix == "" || len(cm.Prefix) > 8 || strings.ContainsFunc(cm.Prefix, func(r rune) bool { return r <= ' ' }) {
		bad("commands.prefix", "must be 1 to 8 characters without spaces, such as !")
	}
	if cm.Reply != "channel" && cm.Reply != "notice" {
		bad("commands.reply", "%q is not a choice: use channel or notice", cm.Reply)
	}
	if cm.ResultWait < 0 {
		bad("commands.result_wait", "must not be negative (0 = only acknowledge the job)")
	}
	if cm.ItemsMax < 1 || cm.ItemsMax > 50 {
		bad("commands.items_max", "must be 1 to 50")
	}
	for i, g := range cm.Ignore {
		p, err := thoonk.CompilePattern(strings.ToLower(g))
		if err != nil {
			bad(fmt.Sprintf("commands.ignore[%d]", i), "%v", err)
		}
		c.ignore = append(c.ignore, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// compileAnnounce checks a channel's announcement settings; fields left
// unset take the defaults' values (def nil: a is the defaults).
func compileAnnounce(a Announce, def *announceSpec, sec *core.Section, at string) (*announceSpec, error) {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, sec.Errorf(at+"."+key, format, args...)) }
	s := &announceSpec{events: map[string]bool{}, templates: map[string]*template.Template{}}
	if def != nil {
		*s = announceSpec{events: def.events, templates: maps.Clone(def.templates), command: def.command, backlog: def.backlog}
	}
	if a.Events != nil {
		s.events = map[string]bool{}
		for i, e := range a.Events {
			if !slices.Contains(eventKinds, e) {
				bad(fmt.Sprintf("events[%d]", i), "%q is not an event: use publish, edit, retract or position", e)
			}
			s.events[e] = true
		}
	}
	for kind, text := range a.Templates {
		if !slices.Contains(eventKinds, kind) {
			bad("templates."+kind, "%q is not an event: templates are keyed publish, edit, retract or position", kind)
			continue
		}
		t, err := parseTemplate(kind, text)
		if err != nil {
			bad("templates."+kind, "%v", err)
			continue
		}
		s.templates[kind] = t
	}
	switch a.Message {
	case "privmsg":
		s.command = "PRIVMSG"
	case "notice":
		s.command = "NOTICE"
	case "":
		if def == nil {
			bad("message", "use privmsg or notice")
		}
	default:
		bad("message", "%q is not a choice: use privmsg or notice", a.Message)
	}
	if a.Backlog != nil {
		s.backlog = *a.Backlog
		if s.backlog < 0 || s.backlog > 50 {
			bad("backlog", "must be 0 to 50")
		}
	}
	if def == nil {
		for _, k := range eventKinds {
			if a.Templates[k] == "" {
				bad("templates."+k, "give a template for %s events", k)
			}
		}
	}
	return s, errors.Join(errs...)
}

// validNick checks a nick: 1 to 31 bytes, not starting with a digit or
// '-', made of letters, digits and []\`_^{|}-.
func validNick(n string) error {
	if n == "" || len(n) > 31 {
		return fmt.Errorf("nick %q must be 1 to 31 characters", n)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("[]\\`_^{|}", c) >= 0 ||
			(i > 0 && (isDigit(c) || c == '-'))
		if !ok {
			return fmt.Errorf("nick %q: character %q at %d is not allowed (use letters, digits and []\\`_^{|}-, not starting with a digit or -)", n, c, i)
		}
	}
	return nil
}

// validToken checks a one-word protocol value (user name, channel key).
func validToken(s string) error {
	if s == "" || len(s) > 64 || s[0] == ':' || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == ',' || r == 0x7f || r == '@' }) {
		return fmt.Errorf("%q must be 1 to 64 characters without spaces, commas, '@' or controls, not starting with ':'", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// EffectiveConfig returns the section as decoded, secrets masked, for
// `bridge check`.
func (b *Bridge) EffectiveConfig() any { return b.cfg }
