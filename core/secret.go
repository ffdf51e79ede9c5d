package core

import (
	"log/slog"
	"net/url"
	"strings"
)

// Secret is a config string that is never printed: `bridge check`, logs and
// fmt show it as "***" (or "" when empty).
type Secret string

// String masks the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// LogValue masks the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML masks the secret in printed configs.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Reveal returns the secret's value, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// SecretURL is a URL config value whose password is never printed.
type SecretURL string

// String returns the URL with its password replaced by "***".
func (u SecretURL) String() string {
	p, err := url.Parse(string(u))
	if err != nil || p.User == nil {
		if err != nil && strings.Contains(string(u), "@") {
			return "***"
		}
		return string(u)
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "***")
	}
	return strings.Replace(p.String(), "%2A%2A%2A", "***", 1)
}

// LogValue masks the password in slog output.
func (u SecretURL) LogValue() slog.Value { return slog.StringValue(u.String()) }

// MarshalYAML masks the password in printed configs.
func (u SecretURL) MarshalYAML() (any, error) { return u.String(), nil }

// Reveal returns the URL with its password, for the one place that dials.
func (u SecretURL) Reveal() string { return string(u) }
