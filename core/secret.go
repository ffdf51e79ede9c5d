package core

import (
	"log/slog"
	"net/url"
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

// secretQuery lists the query parameters of Redis URLs that hold
// credentials (go-redis' failover URLs carry the master's there).
var secretQuery = []string{"password", "sentinel_password", "username", "sentinel_username"}

// String returns the URL with its password (and credential query
// parameters) replaced by "xxxxx", as url.URL.Redacted does; a URL that
// does not parse shows only as "***", since where its secret sits cannot be
// known.
func (u SecretURL) String() string {
	p, err := url.Parse(string(u))
	if err != nil {
		return "***"
	}
	q := p.Query()
	for _, k := range secretQuery {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			p.RawQuery = q.Encode()
		}
	}
	return p.Redacted()
}

// LogValue masks the password in slog output.
func (u SecretURL) LogValue() slog.Value { return slog.StringValue(u.String()) }

// MarshalYAML masks the password in printed configs.
func (u SecretURL) MarshalYAML() (any, error) { return u.String(), nil }

// Reveal returns the URL with its password, for the one place that dials.
func (u SecretURL) Reveal() string { return string(u) }
