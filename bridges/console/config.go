package console

import (
	"errors"

	"github.com/feedbridge/feedbridge/core"
)

// Config is the console section of bridge.yaml.
type Config struct {
	// Enabled turns the console on.
	Enabled bool `yaml:"enabled"`
	// Feeds replaces the global feed selection for the console's feed
	// lists (job feeds are listed by the ACL alone).
	Feeds *core.FeedFilter `yaml:"feeds"`
	// Tokens prove operators (actor console:NAME) for Retry and Drop.
	Tokens []core.Token `yaml:"tokens"`
	// Items is how many newest items the dashboard shows per feed.
	Items int `yaml:"items"`
	// MaxFeeds bounds the feeds the dashboard lists.
	MaxFeeds int `yaml:"max_feeds"`
	// PageSize is the number of items per feed page.
	PageSize int `yaml:"page_size"`
	// StalledJobs bounds the stalled jobs a job feed's page lists.
	StalledJobs int `yaml:"stalled_jobs"`
	// RateLimit bounds wrong tokens and admin requests per client address.
	RateLimit RateLimits `yaml:"rate_limit"`
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// RateLimits bounds admin requests per client address.
type RateLimits struct {
	PerIP      core.Rate `yaml:"per_ip"`
	MaxClients int       `yaml:"max_clients"`
}

// defaultConfig holds every default of the section, in one place.
func defaultConfig() Config {
	return Config{
		Items: 5, MaxFeeds: 100, PageSize: 20, StalledJobs: 100,
		RateLimit: RateLimits{PerIP: core.Rate{Rate: 1, Burst: 20}, MaxClients: 10000},
	}
}

// Factory registers the adapter under the "console" section.
var Factory = core.Factory{Name: "console", New: New}

// New decodes and validates the section; it returns nil when disabled.
func New(sec *core.Section) (core.Adapter, error) {
	cfg := defaultConfig()
	// a key that fails to decode keeps its default: the others are
	// still checked, so that every problem is listed at once
	if err := errors.Join(sec.Decode(&cfg), cfg.validate(sec)); err != nil {
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
		errs = append(errs, c.Feeds.Compile(sec, "feeds"))
	}
	errs = append(errs, core.ValidateTokens(c.Tokens, "console", sec, "tokens"))
	if c.Items < 1 || c.Items > 50 {
		add("items", "must be between 1 and 50 (default 5)")
	}
	if c.MaxFeeds < 1 || c.MaxFeeds > 1000 {
		add("max_feeds", "must be between 1 and 1000 (default 100)")
	}
	if c.PageSize < 1 || c.PageSize > 1000 {
		add("page_size", "must be between 1 and 1000 (default 20)")
	}
	if c.StalledJobs < 1 || c.StalledJobs > 1000 {
		add("stalled_jobs", "must be between 1 and 1000 (default 100)")
	}
	errs = append(errs, c.RateLimit.PerIP.Validate(sec, "rate_limit.per_ip"))
	if c.RateLimit.MaxClients < 1 {
		add("rate_limit.max_clients", "must be at least 1 (default 10000)")
	}
	errs = append(errs, core.ValidateTrustedProxies(c.TrustedProxies, sec, "trusted_proxies"))
	return errors.Join(errs...)
}
