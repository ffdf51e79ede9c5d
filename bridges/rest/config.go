package rest

import (
	"errors"
	"fmt"
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
	// Tokens are the bearer tokens clients authenticate with; a token's
	// name becomes the actor id rest:NAME.
	Tokens []core.Token `yaml:"tokens"`
	// Anonymous lets requests without a token in, as actor rest:anonymous.
	Anonymous bool `yaml:"anonymous"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxWait caps Prefer: wait and long-poll waits.
	MaxWait time.Duration `yaml:"max_wait"`
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

// RateLimits bounds requests: authenticated ones per token, the others per
// client address.
type RateLimits struct {
	// PerToken limits each token.
	PerToken core.Rate `yaml:"per_token"`
	// PerIP limits anonymous and failed requests by client address.
	PerIP core.Rate `yaml:"per_ip"`
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
		Anonymous:    true,
		MaxBodyBytes: 256 << 10,
		MaxWait:      30 * time.Second,
		RateLimit: RateLimits{
			PerToken:   core.Rate{Rate: 100, Burst: 200},
			PerIP:      core.Rate{Rate: 20, Burst: 40},
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
	if err := core.ValidateTokens(c.Tokens, "rest", sec, "tokens"); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBodyBytes < 1 {
		add("max_body_bytes", "must be at least 1 (default %d)", defaultConfig().MaxBodyBytes)
	}
	if c.MaxWait < 0 {
		add("max_wait", "must be 0 (no waiting) or a positive duration such as 30s")
	}
	for key, r := range map[string]core.Rate{"rate_limit.per_token": c.RateLimit.PerToken, "rate_limit.per_ip": c.RateLimit.PerIP} {
		if err := r.Validate(sec, key); err != nil {
			errs = append(errs, err)
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
	if err := core.ValidateTrustedProxies(c.TrustedProxies, sec, "trusted_proxies"); err != nil {
		errs = append(errs, err)
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
