package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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
	if err := errors.Join(withoutFollowOn(errs)...); err != nil {
		return nil, err
	}
	return l, nil
}

// withoutFollowOn lists every problem once: a value that names an unset
// ${VAR} reads as empty, and what that empty value breaks on the same
// line (a token too short, a required key missing) is left out.
func withoutFollowOn(errs []error) []error {
	var all []error
	for _, e := range errs {
		if e != nil {
			all = append(all, flatten(e)...)
		}
	}
	unset := map[string]bool{}
	for _, e := range all {
		var u *core.UnsetEnvError
		if errors.As(e, &u) {
			unset[fmt.Sprintf("%s:%d: ", u.File, u.Line)] = true
		}
	}
	out := all[:0]
	for _, e := range all {
		var u *core.UnsetEnvError
		if !errors.As(e, &u) && unset[lineOf(e.Error())] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// lineOf returns the "file:line: " a message starts with, or "".
func lineOf(msg string) string {
	file, rest, ok := strings.Cut(msg, ":")
	if !ok {
		return ""
	}
	line, _, ok := strings.Cut(rest, ": ")
	if !ok || line == "" || strings.Trim(line, "0123456789") != "" {
		return ""
	}
	return file + ":" + line + ": "
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
		var n yaml.Node
		if err := n.Encode(map[string]any{name: r.EffectiveConfig()}); err != nil {
			return fmt.Errorf("render %s config: %w", name, err)
		}
		// an adapter without its own feeds: selection serves the global one
		if len(n.Content) == 2 && n.Content[1].Kind == yaml.MappingNode {
			sec := n.Content[1]
			for i := 0; i+1 < len(sec.Content); i += 2 {
				if sec.Content[i].Value == "feeds" && sec.Content[i+1].Tag == "!!null" {
					var g yaml.Node
					if err := g.Encode(l.cfg.Feeds); err == nil {
						sec.Content[i].LineComment = "the global feeds"
						sec.Content[i+1] = &g
					}
				}
			}
		}
		b, err := core.MarshalYAML(&n)
		if err != nil {
			return fmt.Errorf("render %s config: %w", name, err)
		}
		out.Write(b)
	}
	return nil
}
