package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/feedbridge/feedbridge/core"
)

// ConfigReporter is an adapter that can show its effective config (with
// core.Secret fields masked) for `bridge check`.
type ConfigReporter interface {
	EffectiveConfig() any
}

// loaded is a validated config with its adapters built (not started).
type loaded struct {
	cfg      *core.Config
	adapters []core.Adapter
	schemas  []core.CompiledSchema
}

// load reads, validates and builds everything that needs no network.
func load(path string) (*loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := core.LoadConfig(path, data, registryNames())
	if cfg == nil {
		return nil, err
	}
	l := &loaded{cfg: cfg}
	errs := []error{err}
	for _, f := range registry {
		a, err := f.New(cfg.Adapter(f.Name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if a != nil {
			l.adapters = append(l.adapters, a)
		}
	}
	if cfg.Worker.Enabled {
		l.schemas, err = core.CompileSchemas(cfg.Worker.Schemas, cfg.Root(), "worker.schemas")
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// check validates the config and prints the effective one.
func check(path string, out io.Writer) error {
	l, err := load(path)
	if err != nil {
		return err
	}
	shared, err := l.cfg.MarshalEffective()
	if err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	fmt.Fprintf(out, "# %s is valid. Effective config (secrets masked):\n%s", path, shared)
	enabled := map[string]core.Adapter{}
	for _, a := range l.adapters {
		enabled[a.Name()] = a
	}
	for _, name := range registryNames() {
		a, ok := enabled[name]
		if !ok {
			fmt.Fprintf(out, "%s:\n  enabled: false\n", name)
			continue
		}
		r, ok := a.(ConfigReporter)
		if !ok {
			fmt.Fprintf(out, "%s:\n  enabled: true\n", name)
			continue
		}
		b, err := yaml.Marshal(map[string]any{name: r.EffectiveConfig()})
		if err != nil {
			return fmt.Errorf("render %s config: %w", name, err)
		}
		out.Write(b)
	}
	return nil
}
