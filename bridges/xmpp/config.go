package xmpp

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Config is the xmpp section of bridge.yaml.
type Config struct {
	// Enabled turns the adapter on.
	Enabled bool `yaml:"enabled"`
	// JID is the component's address, a domain such as
	// pubsub.example.org, declared as a Component in the XMPP server.
	JID string `yaml:"jid"`
	// Server is the host:port of the XMPP server's component listener.
	Server string `yaml:"server"`
	// Secret is the component's shared secret.
	Secret core.Secret `yaml:"secret"`
	// Name is the service's name in service discovery.
	Name string `yaml:"name"`
	// NodePrefix is prepended to feed names to make node names.
	NodePrefix string `yaml:"node_prefix"`
	// Feeds replaces the global feed selection for this adapter.
	Feeds *core.FeedFilter `yaml:"feeds"`
	// Payloads choose, per feed pattern, how items are wrapped; first
	// match wins, feeds matching none use auto.
	Payloads []PayloadRule `yaml:"payloads"`
	// NotificationType is the type of notification messages: headline
	// or normal.
	NotificationType string `yaml:"notification_type"`
	// Wait is how long a publish or retract waits for the worker's
	// result before answering; 0 answers once the job is stored.
	Wait time.Duration `yaml:"wait"`
	// MaxItemBytes bounds a published item and the payloads embedded in
	// notifications and item replies.
	MaxItemBytes int `yaml:"max_item_bytes"`
	// MaxStanzaBytes is the server's stanza size limit for the component
	// (Prosody: component_stanza_size_limit); replies and notifications
	// stay below it.
	MaxStanzaBytes int `yaml:"max_stanza_bytes"`
	// PageSize is the number of items in one reply when the client does
	// not ask for fewer; longer feeds are paged with RSM.
	PageSize int `yaml:"page_size"`
	// QueueSize bounds the notifications waiting to be sent, per node.
	QueueSize int `yaml:"queue_size"`
	// QueueBytes bounds the memory of every node's waiting notifications
	// together; beyond it, the oldest notification of any node is dropped.
	QueueBytes int `yaml:"queue_bytes"`
	// CatchUpMax bounds the items a node's subscribers receive at once
	// after a restart or lost events; older missed items are skipped and
	// the loss is logged.
	CatchUpMax int `yaml:"catch_up_max"`
	// MaxSubscriptionsPerJID bounds the subscriptions of one account (bare
	// JID, all its resources together); 0 means no limit.
	MaxSubscriptionsPerJID int `yaml:"max_subscriptions_per_jid"`
	// Workers is the number of requests handled at once.
	Workers int `yaml:"workers"`
	// RateLimit bounds each sender's requests.
	RateLimit RateLimit `yaml:"rate_limit"`
	// ConnectTimeout bounds the TCP connection and the handshake.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Reconnect spaces reconnection attempts.
	Reconnect thoonk.Backoff `yaml:"reconnect"`

	// writeTimeout bounds one write to the server (not a config key:
	// tests shorten it).
	writeTimeout time.Duration
}

// PayloadRule sets the payload format of the feeds matching a pattern.
type PayloadRule struct {
	// Feeds are glob patterns over feed names.
	Feeds []string `yaml:"feeds"`
	// Format is auto, json, xml or text.
	Format string `yaml:"format"`

	feeds []thoonk.Pattern
}

// RateLimit is a token bucket per sender's bare JID and another per
// sender's domain (every account of a server together).
type RateLimit struct {
	// PerSecond is the sustained rate per bare JID; 0 turns the limit off.
	PerSecond float64 `yaml:"per_second"`
	// Burst is the number of requests a bare JID may send at once.
	Burst int `yaml:"burst"`
	// DomainPerSecond is the sustained rate per domain; 0 turns the
	// limit off.
	DomainPerSecond float64 `yaml:"domain_per_second"`
	// DomainBurst is the number of requests a domain may send at once.
	DomainBurst int `yaml:"domain_burst"`
}

// defaultConfig holds every default of the section, in one place.
func defaultConfig() Config {
	return Config{
		Name:             "feedbridge",
		NotificationType: "headline",
		Wait:             5 * time.Second,
		MaxItemBytes:     256 << 10,
		MaxStanzaBytes:   512 << 10,
		PageSize:         100,
		QueueSize:        1024,
		QueueBytes:       64 << 20,
		CatchUpMax:       1000,
		Workers:          16,
		RateLimit:        RateLimit{PerSecond: 20, Burst: 100, DomainPerSecond: 200, DomainBurst: 1000},
		ConnectTimeout:   10 * time.Second,
		Reconnect:        thoonk.Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second},

		MaxSubscriptionsPerJID: 100,

		writeTimeout: 10 * time.Second,
	}
}

// Factory registers the adapter under the "xmpp" section.
var Factory = core.Factory{Name: "xmpp", New: New}

// New decodes and validates the section; it returns nil when disabled.
// The connection settings are required only when the adapter is enabled.
func New(sec *core.Section) (core.Adapter, error) {
	cfg := defaultConfig()
	if err := sec.Decode(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(sec); err != nil {
		return nil, err
	}
	if !cfg.Enabled {
		return nil, nil
	}
	return &Bridge{cfg: cfg}, nil
}

func (c *Config) validate(sec *core.Section) error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, sec.Errorf(key, format, args...)) }
	if c.JID != "" {
		j, err := jid.Parse(c.JID)
		if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
			bad("jid", "%q is not a domain JID: use the component's domain, such as pubsub.example.org", c.JID)
		} else {
			c.JID = j.String()
		}
	} else if c.Enabled {
		bad("jid", "set the component's domain, such as pubsub.example.org (declared as a Component in your XMPP server)")
	}
	if c.Server != "" {
		if _, _, err := net.SplitHostPort(c.Server); err != nil {
			bad("server", "%q must be host:port of the server's component listener, such as 127.0.0.1:5347", c.Server)
		}
	} else if c.Enabled {
		bad("server", "set host:port of the XMPP server's component listener, such as 127.0.0.1:5347")
	}
	if c.Enabled && c.Secret == "" {
		bad("secret", "set the component's shared secret (the server's component_secret), for example ${XMPP_COMPONENT_SECRET}")
	}
	if c.Name == "" {
		bad("name", "set the service's name shown in service discovery, for example feedbridge")
	}
	if c.NodePrefix != "" {
		if err := thoonk.ValidateID(c.NodePrefix); err != nil {
			bad("node_prefix", "%v", err)
		}
	}
	if c.Feeds != nil {
		if err := c.Feeds.Compile(sec, "feeds"); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range c.Payloads {
		r := &c.Payloads[i]
		at := fmt.Sprintf("payloads[%d]", i)
		if !slices.Contains(formats, r.Format) {
			bad(at+".format", "%q is not a format: use auto, json, xml or text", r.Format)
		}
		if len(r.Feeds) == 0 {
			bad(at+".feeds", "list the feed patterns this format applies to, for example [\"logs:*\"]")
		}
		r.feeds = nil
		for j, g := range r.Feeds {
			p, err := thoonk.CompilePattern(g)
			if err != nil {
				bad(fmt.Sprintf("%s.feeds[%d]", at, j), "%v", err)
			}
			r.feeds = append(r.feeds, p)
		}
	}
	if c.NotificationType != "headline" && c.NotificationType != "normal" {
		bad("notification_type", "%q is not a notification type: use headline or normal", c.NotificationType)
	}
	if c.Wait < 0 || c.Wait > time.Minute {
		bad("wait", "must be between 0 (answer once the job is stored) and 1m, for example 5s")
	}
	if c.MaxItemBytes < 1024 || c.MaxItemBytes > 16<<20 {
		bad("max_item_bytes", "must be between 1024 and 16777216, for example 262144")
	}
	if c.MaxStanzaBytes < 16<<10 {
		bad("max_stanza_bytes", "must be at least 16384; set it to the server's limit (Prosody's component_stanza_size_limit, 524288 by default)")
	}
	if c.PageSize < 1 || c.PageSize > thoonk.MaxPageSize {
		bad("page_size", "must be between 1 and %d, for example 100", thoonk.MaxPageSize)
	}
	if c.QueueSize < 1 || c.QueueSize > 1<<20 {
		bad("queue_size", "must be between 1 and 1048576, for example 1024")
	}
	if c.QueueBytes < 4*c.MaxStanzaBytes {
		bad("queue_bytes", "must be at least 4 times max_stanza_bytes (%d), for example 67108864", 4*c.MaxStanzaBytes)
	}
	if c.CatchUpMax < 1 || c.CatchUpMax > 1<<20 {
		bad("catch_up_max", "must be between 1 and 1048576, for example 1000")
	}
	if c.MaxSubscriptionsPerJID < 0 {
		bad("max_subscriptions_per_jid", "must not be negative (0 means no limit), for example 100")
	}
	if c.Workers < 1 || c.Workers > 1024 {
		bad("workers", "must be between 1 and 1024, for example 16")
	}
	if c.RateLimit.PerSecond < 0 {
		bad("rate_limit.per_second", "must not be negative (0 turns the limit off)")
	}
	if c.RateLimit.PerSecond > 0 && c.RateLimit.Burst < 1 {
		bad("rate_limit.burst", "must be at least 1, for example 100")
	}
	if c.RateLimit.DomainPerSecond < 0 {
		bad("rate_limit.domain_per_second", "must not be negative (0 turns the limit off)")
	}
	if c.RateLimit.DomainPerSecond > 0 && c.RateLimit.DomainBurst < 1 {
		bad("rate_limit.domain_burst", "must be at least 1, for example 1000")
	}
	if c.ConnectTimeout < time.Second {
		bad("connect_timeout", "must be at least 1s, for example 10s")
	}
	if c.Reconnect.Min <= 0 || c.Reconnect.Max < c.Reconnect.Min {
		bad("reconnect", "min must be more than 0 and max at least min, for example min: 500ms, max: 30s")
	}
	return errors.Join(errs...)
}

// format returns the payload format of feed.
func (c *Config) format(feed string) string {
	for _, r := range c.Payloads {
		for _, p := range r.feeds {
			if p.Match(feed) {
				return r.Format
			}
		}
	}
	return formatAuto
}
