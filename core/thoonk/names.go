package thoonk

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names and ids; longer values are refused before touching Redis.
const (
	// MaxFeedNameLen is the longest feed name accepted, in bytes.
	MaxFeedNameLen = 256
	// MaxIDLen is the longest item or job id accepted, in bytes.
	MaxIDLen = 256
)

// ValidateFeedName checks that name can be used as a Thoonk feed name: not
// empty, at most MaxFeedNameLen bytes of valid UTF-8, without control,
// line-separator or bidi-override characters (which would corrupt the
// NUL-separated pubsub payloads or spoof text in other protocols). Glob
// characters are allowed, as the reference libraries allow them: a
// pattern matches a literal '*', '?' or '[' when escaped with '\'.
func ValidateFeedName(name string) error {
	return ValidateText("feed name", name, MaxFeedNameLen)
}

// ValidateID checks that id can be used as an item or job id: not empty, at
// most MaxIDLen bytes of valid UTF-8, without control, line-separator or
// bidi-override characters.
func ValidateID(id string) error {
	return ValidateText("id", id, MaxIDLen)
}

// ValidateText checks a short text (a name, an id, an actor) the way
// feed names and ids are checked: not empty, at most max bytes of valid
// UTF-8, without control, line-separator or bidi-override characters; what
// names it in the error.
func ValidateText(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s is empty: %w", what, ErrInvalid)
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, over the limit of %d: %w", what, len(s), max, ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8: %w", what, s, ErrInvalid)
	}
	for i, r := range s {
		if forbiddenRune(r) {
			return fmt.Errorf("%s %q: character %U at byte %d is not allowed: %w", what, s, r, i, ErrInvalid)
		}
	}
	return nil
}

// forbiddenRune reports control characters (C0, DEL, C1), Unicode line and
// paragraph separators, and bidirectional embedding/override/isolate controls.
func forbiddenRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// NewID returns a random id in the reference libraries' format: a version 4
// UUID as 32 lower-case hex digits without dashes.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// validFeed checks a feed name for this store: on Redis Cluster the name
// must also carry a hash tag, so that every key of the feed (and its Lua
// scripts) lives in one slot.
func (s *Store) validFeed(name string) error {
	if err := ValidateFeedName(name); err != nil {
		return err
	}
	if s.cluster && HashTag(name) == "" {
		return fmt.Errorf("feed name %q: on Redis Cluster a feed name needs a hash tag, such as {%s}, so that its keys share a slot: %w", name, name, ErrInvalid)
	}
	return nil
}

// HashTag returns the part of name Redis Cluster hashes: the text between
// the first '{' and the next '}', when not empty.
func HashTag(name string) string {
	open := strings.IndexByte(name, '{')
	if open < 0 {
		return ""
	}
	end := strings.IndexByte(name[open+1:], '}')
	if end <= 0 {
		return ""
	}
	return name[open+1 : open+1+end]
}
