package rest

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/feedbridge/feedbridge/core"
)

// Config is the rest section of bridge.yaml.
type Config struct {
	// Enabled turns the adapter on.
	Enabled bool `yaml:"enabled"`
	// Feeds replaces the global feed selection for this adapter.
	Feeds *core.FeedFilter `yaml:"feeds"`
	// Tokens are the bearer tokens clients authenticate with.
	Tokens []Token `yaml:"tokens"`
	// Anonymous lets requests without a token in, as actor rest:anonymous.
	Anonymous bool `yaml:"anonymous"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxWait caps Prefer: wait and long-poll waits.
	MaxWait time.Duration `yaml:"max_wait"`
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// RateLimit bounds requests per token and per client address.
	RateLimit RateLimits `yaml:"rate_limit"`
	// CORS lets browser pages on other origins call the API.
	CORS CORSConfig `yaml:"cors"`
	// TrustedProxies are the proxy addresses or CIDRs whose
	// X-Forwarded-For is believed when finding the client address.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Events tunes the Server-Sent Events streams.
	Events EventsConfig `yaml:"events"`
}

// Token is one bearer token; its name becomes the actor id rest:NAME.
type Token struct {
	// Name is the actor id the token proves.
	Name string `yaml:"name"`
	// Token is the secret a client sends as "Authorization: Bearer TOKEN".
	Token core.Secret `yaml:"token"`
}

// Rate is a token bucket: Rate requests per second, bursts up to Burst.
type Rate struct {
	// Rate is the sustained rate in requests per second; 0 turns the limit off.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests may come at once.
	Burst int `yaml:"burst"`
}

// RateLimits bounds requests: authenticated ones per token, the others per
// client address.
type RateLimits struct {
	// PerToken limits each token.
	PerToken Rate `yaml:"per_token"`
	// PerIP limits anonymous and failed requests by client address.
	PerIP Rate `yaml:"per_ip"`
	// MaxClients bounds the limiter state kept in memory (token buckets).
	MaxClients int `yaml:"max_clients"`
}

// CORSConfig configures cross-origin requests.
type CORSConfig struct {
	// AllowedOrigins lists the origins allowed ("https://app.example"), or "*".
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxAge is how long browsers may cache a preflight answer.
	MaxAge time.Duration `yaml:"max_age"`
}

// EventsConfig tunes the event streams and their replay buffer.
type EventsConfig struct {
	// Heartbeat is the interval of keep-alive comments on idle streams.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// ReplayEvents bounds the events kept for Last-Event-ID resume.
	ReplayEvents int `yaml:"replay_events"`
	// ReplayBytes bounds the memory of the kept events.
	ReplayBytes int `yaml:"replay_bytes"`
	// Queue is the adapter's event subscription queue; overflow resets streams.
	Queue int `yaml:"queue"`
	// MaxStreams bounds concurrent event streams and long polls.
	MaxStreams int `yaml:"max_streams"`
	// WriteTimeout drops a stream whose client stops reading for this long.
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// defaultConfig holds every default of the section, in one place.
func defaultConfig() Config {
	return Config{
		Anonymous:      true,
		MaxBodyBytes:   256 << 10,
		MaxWait:        30 * time.Second,
		IdempotencyTTL: 24 * time.Hour,
		RateLimit: RateLimits{
			PerToken:   Rate{Rate: 100, Burst: 200},
			PerIP:      Rate{Rate: 20, Burst: 40},
			MaxClients: 10000,
		},
		CORS: CORSConfig{MaxAge: 10 * time.Minute},
		Events: EventsConfig{
			Heartbeat: 15 * time.Second, ReplayEvents: 10000, ReplayBytes: 32 << 20,
			Queue: 8192, MaxStreams: 20000, WriteTimeout: 30 * time.Second,
		},
	}
}

// Factory registers the adapter under the "rest" section.
var Factory = core.Factory{Name: "rest", New: New}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// minTokenLen is the shortest token accepted.
const minTokenLen = 16

// New decodes and validates the section; it returns nil when disabled.
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
	return newBridge(cfg)
}

// validate checks every key and reports all problems at once.
func (c *Config) validate(sec *core.Section) error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, sec.Errorf(key, format, args...)) }
	if c.Feeds != nil {
		if err := c.Feeds.Compile(sec, "feeds"); err != nil {
			errs = append(errs, err)
		}
	}
	names, secrets := map[string]bool{}, map[core.Secret]bool{}
	for i, t := range c.Tokens {
		at := fmt.Sprintf("tokens[%d]", i)
		switch {
		case !tokenNameRE.MatchString(t.Name):
			add(at+".name", "%q: use 1-64 of A-Z a-z 0-9 . _ - (it becomes the actor rest:NAME)", t.Name)
		case t.Name == core.Anonymous:
			add(at+".name", "%q is the anonymous actor's id: choose another name", t.Name)
		case names[t.Name]:
			add(at+".name", "%q is used twice: give each token its own name", t.Name)
		}
		names[t.Name] = true
		switch tok := t.Token.Reveal(); {
		case len(tok) < minTokenLen:
			add(at+".token", "is %d characters: use at least %d (for example `openssl rand -hex 24`), or ${ENV_VAR}", len(tok), minTokenLen)
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			add(at+".token", "contains spaces or control characters: a bearer token must be printable")
		case secrets[t.Token]:
			add(at+".token", "is the same as another token's: each token must be unique")
		}
		secrets[t.Token] = true
	}
	if c.MaxBodyBytes < 1 {
		add("max_body_bytes", "must be at least 1 (default %d)", defaultConfig().MaxBodyBytes)
	}
	if c.MaxWait < 0 {
		add("max_wait", "must be 0 (no waiting) or a positive duration such as 30s")
	}
	if c.IdempotencyTTL < time.Second {
		add("idempotency_ttl", "must be at least 1s (default 24h)")
	}
	for key, r := range map[string]Rate{"rate_limit.per_token": c.RateLimit.PerToken, "rate_limit.per_ip": c.RateLimit.PerIP} {
		if r.Rate < 0 {
			add(key+".rate", "must be 0 (no limit) or more requests per second")
		}
		if r.Rate > 0 && r.Burst < 1 {
			add(key+".burst", "must be at least 1 when rate is set")
		}
	}
	if c.RateLimit.MaxClients < 1 {
		add("rate_limit.max_clients", "must be at least 1 (default 10000)")
	}
	for i, o := range c.CORS.AllowedOrigins {
		if o != "*" && (!strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") || strings.Count(o, "/") != 2) {
			add(fmt.Sprintf("cors.allowed_origins[%d]", i), "%q: write an origin as scheme://host[:port] without a path, or *", o)
		}
	}
	if c.CORS.MaxAge < 0 {
		add("cors.max_age", "must be 0 or a positive duration")
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				add(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not an IP address or CIDR such as 10.0.0.0/8", p)
			}
		}
	}
	e := c.Events
	if e.Heartbeat < time.Second {
		add("events.heartbeat", "must be at least 1s (default 15s)")
	}
	if e.ReplayEvents < 1 {
		add("events.replay_events", "must be at least 1 (default 10000)")
	}
	if e.ReplayBytes < 1<<10 {
		add("events.replay_bytes", "must be at least 1024 (default %d)", defaultConfig().Events.ReplayBytes)
	}
	if e.Queue < 16 {
		add("events.queue", "must be at least 16 (default 8192)")
	}
	if e.MaxStreams < 1 {
		add("events.max_streams", "must be at least 1 (default 20000)")
	}
	if e.WriteTimeout < time.Second {
		add("events.write_timeout", "must be at least 1s (default 30s)")
	}
	return errors.Join(errs...)
}
