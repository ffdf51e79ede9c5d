package atom

import (
	"context"

	"github.com/feedbridge/feedbridge/core"
)

// Config is the atom section of bridge.yaml.
type Config struct {
	// Enabled turns the adapter on.
	Enabled bool `yaml:"enabled"`
	// Feeds replaces the global feed selection for this adapter.
	Feeds *core.FeedFilter `yaml:"feeds"`
}

// defaultConfig holds every default of the section, in one place.
func defaultConfig() Config { return Config{} }

// Factory registers the adapter under the "atom" section.
var Factory = core.Factory{Name: "atom", New: New}

// New decodes and validates the section; it returns nil when disabled.
func New(sec *core.Section) (core.Adapter, error) {
	cfg := defaultConfig()
	if err := sec.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Feeds != nil {
		if err := cfg.Feeds.Compile(sec, "feeds"); err != nil {
			return nil, err
		}
	}
	if !cfg.Enabled {
		return nil, nil
	}
	return &Bridge{cfg: cfg}, nil
}

// Bridge is the Atom adapter.
type Bridge struct {
	cfg Config
}

var _ core.Adapter = (*Bridge)(nil)

// Name returns "atom".
func (b *Bridge) Name() string { return "atom" }

// Run serves until ctx ends.
func (b *Bridge) Run(ctx context.Context, hub *core.Hub) error {
	hub.SetState(b.Name(), core.StateUp, nil)
	<-ctx.Done()
	return nil
}
