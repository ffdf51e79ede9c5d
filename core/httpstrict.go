package core

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadHeader and ErrBadQuery are the parents of the errors of
// ParseETags and ParseQuery.
var (
	ErrBadHeader = errors.New("malformed header")
	ErrBadQuery  = errors.New("malformed query")
)

// ETag is one entity tag of an If-Match or If-None-Match list.
type ETag struct {
	// Weak is set for W/"..." tags.
	Weak bool
	// Tag is the opaque tag with its quotes, as an ETag header shows it.
	Tag string
}

// ETagList is a parsed If-Match or If-None-Match header: "*" (Any), or
// entity tags.
type ETagList struct {
	Any  bool
	Tags []ETag
}

// ParseETags parses the values of an If-Match or If-None-Match header
// strictly (RFC 9110 13.1.1 and 13.1.2): "*" alone, or a comma-separated
// list of entity tags ([W/]"...", without control characters, spaces or
// quotes inside). Anything else is an error naming the header; a
// malformed list is never taken as "match anything".
func ParseETags(name string, values []string) (ETagList, error) {
	var l ETagList
	bad := func(why string) (ETagList, error) {
		return ETagList{}, fmt.Errorf("%s %s: %w", name, why, ErrBadHeader)
	}
	elements := 0
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			t := strings.Trim(part, " \t")
			if t == "" {
				continue // the list rule allows empty elements
			}
			elements++
			if t == "*" {
				l.Any = true
				continue
			}
			e := ETag{}
			if rest, ok := strings.CutPrefix(t, "W/"); ok {
				e.Weak, t = true, rest
			}
			if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
				return bad("holds " + fmt.Sprintf("%q", t) + ", not an entity tag such as \"abc\" or W/\"abc\"")
			}
			for i := 1; i < len(t)-1; i++ {
				if c := t[i]; c <= 0x20 || c == '"' || c == 0x7f {
					return bad(fmt.Sprintf("holds %q, whose opaque tag has a character an entity tag may not hold", t))
				}
			}
			e.Tag = t
			l.Tags = append(l.Tags, e)
		}
	}
	switch {
	case elements == 0 && len(values) > 0:
		return bad("is empty")
	case l.Any && elements > 1:
		return bad("mixes * with entity tags")
	}
	return l, nil
}

// Matches evaluates the list against the current ETag ("" when there is
// no current representation): strongly for If-Match, weakly (W/ ignored)
// for If-None-Match.
func (l ETagList) Matches(etag string, weak bool) bool {
	if etag == "" {
		return false
	}
	if l.Any {
		return true
	}
	for _, t := range l.Tags {
		if (weak || !t.Weak) && t.Tag == strings.TrimPrefix(etag, "W/") && (weak || !strings.HasPrefix(etag, "W/")) {
			return true
		}
	}
	return false
}

// ParseQuery parses a raw URL query strictly: every parameter must be
// percent-encoded correctly (a '%' not followed by two hex digits, or a
// ';' separator, is an error naming the parameter).
func ParseQuery(raw string) (url.Values, error) {
	q := url.Values{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || strings.Contains(k, ";") {
			return nil, fmt.Errorf("query parameter %q is not percent-encoded correctly: %w", k, ErrBadQuery)
		}
		val, err := url.QueryUnescape(v)
		if err != nil || strings.Contains(v, ";") {
			return nil, fmt.Errorf("query parameter %s: its value %q is not percent-encoded correctly: %w", key, v, ErrBadQuery)
		}
		q[key] = append(q[key], val)
	}
	return q, nil
}
