package core

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Actor is who asked for something, as the protocol proved it: never an
// identity claimed inside a payload.
type Actor struct {
	// Protocol is the adapter that authenticated the actor: "xmpp", "irc",
	// "rest", "atom", or "core" for programs using the Go API.
	Protocol string `json:"protocol"`
	// ID is the proven identity: a bare JID (xmpp), an account name or a
	// nick!user@host mask (irc), a token name (rest), or "anonymous".
	ID string `json:"id"`
	// Display is a human-readable name, when the protocol offers one.
	Display string `json:"display,omitempty"`
}

// Anonymous is the ID of actors that proved nothing.
const Anonymous = "anonymous"

// String returns "protocol:id", the form ACL actor patterns match.
func (a Actor) String() string { return a.Protocol + ":" + a.ID }

// Operations the ACL grants besides action verbs.
const (
	// OpRead covers discovering, reading and subscribing to a feed.
	OpRead = "read"
	// OpAdmin covers operating on a job feed's jobs: retrying or
	// dropping stalled ones (the console's buttons).
	OpAdmin = "admin"
	// OpAll in an ACL rule grants every operation, custom verbs included.
	OpAll = "*"
)

// The standard verbs, applied by the built-in worker.
const (
	VerbPublish = "publish"
	VerbEdit    = "edit"
	VerbRetract = "retract"
	VerbMove    = "move"
)

// StandardVerbs lists the verbs the built-in worker applies.
var StandardVerbs = []string{VerbPublish, VerbEdit, VerbRetract, VerbMove}

var verbRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// ValidateVerb checks a verb name: 1 to 32 of a-z, 0-9, '_' and '-',
// starting with a letter.
func ValidateVerb(verb string) error {
	if !verbRE.MatchString(verb) {
		return fmt.Errorf("verb %q: want 1-32 of a-z 0-9 _ -, starting with a letter: %w", verb, thoonk.ErrInvalid)
	}
	return nil
}

// FeedFilter selects feeds by glob patterns: a feed is selected when it
// matches an include pattern and no exclude pattern.
type FeedFilter struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`

	include, exclude []thoonk.Pattern
	// hidden are feeds selected only when an include pattern names them
	// literally (the bridge's own job feeds).
	hidden []string
}

// Hiding returns a copy of the filter that selects the feeds in hidden
// only when an include pattern names them literally.
func (f *FeedFilter) Hiding(hidden []string) *FeedFilter {
	if f == nil {
		f = &FeedFilter{include: []thoonk.Pattern{thoonk.MustPattern("*")}}
	}
	c := *f
	c.hidden = hidden
	return &c
}

// Compile checks the patterns; sec and key name them in errors.
func (f *FeedFilter) Compile(sec *Section, key string) error {
	var e1, e2 []error
	f.include, e1 = compilePatterns(f.Include, sec, key+".include")
	f.exclude, e2 = compilePatterns(f.Exclude, sec, key+".exclude")
	return errors.Join(append(e1, e2...)...)
}

// Allows reports whether the filter selects feed.
func (f *FeedFilter) Allows(feed string) bool {
	if f == nil {
		return true
	}
	in := false
	hidden := slices.Contains(f.hidden, feed)
	for _, p := range f.include {
		if p.Match(feed) && (!hidden || p.Literal()) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range f.exclude {
		if p.Match(feed) {
			return false
		}
	}
	return true
}

// ACLRule grants operations on feeds to actors. Actors are glob patterns
// over "protocol:id" ("xmpp:*@example.org", "irc:alice", "rest:deploy",
// "*:anonymous", "*"); Feeds are glob patterns over feed names; Allow
// lists operations: "read", verbs ("publish", "edit", "retract", "move",
// custom ones) or "*" for all.
type ACLRule struct {
	Actors []string `yaml:"actors"`
	Feeds  []string `yaml:"feeds"`
	Allow  []string `yaml:"allow"`

	actors, feeds []thoonk.Pattern
}

// ACL decides what each actor may do on each feed. Everything is denied
// unless a rule allows it.
type ACL struct {
	rules []ACLRule
}

// NewACL compiles rules; sec and key name them in errors. An operation
// must be read, admin, *, a standard verb, or one of the custom verbs
// declared (in actions.verbs or a route's verbs): anything else is a typo
// that would silently grant nothing, and is an error.
func NewACL(rules []ACLRule, sec *Section, key string, customVerbs ...string) (*ACL, error) {
	var errs []error
	out := make([]ACLRule, len(rules))
	for i, r := range rules {
		at := fmt.Sprintf("%s[%d]", key, i)
		if len(r.Actors) == 0 || len(r.Feeds) == 0 || len(r.Allow) == 0 {
			errs = append(errs, sec.Errorf(at, "a rule needs actors, feeds and allow (for example actors: [\"*\"], feeds: [\"*\"], allow: [read])"))
		}
		var e1, e2 []error
		r.actors, e1 = compilePatterns(r.Actors, sec, at+".actors")
		r.feeds, e2 = compilePatterns(r.Feeds, sec, at+".feeds")
		errs = append(append(errs, e1...), e2...)
		for j, op := range r.Allow {
			if err := checkOperation(op, customVerbs); err != nil {
				errs = append(errs, sec.Errorf(fmt.Sprintf("%s.allow[%d]", at, j), "%v", err))
			}
		}
		out[i] = r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &ACL{rules: out}, nil
}

// knownOperations are the operations every ACL understands.
var knownOperations = append([]string{OpRead, OpAdmin, OpAll}, StandardVerbs...)

// checkOperation accepts a known operation or a declared custom verb, and
// explains anything else, with the nearest known name when one is close.
func checkOperation(op string, customVerbs []string) error {
	if slices.Contains(knownOperations, op) || slices.Contains(customVerbs, op) {
		return nil
	}
	all := append(slices.Clone(knownOperations), customVerbs...)
	hint := ""
	if near := nearest(op, all); near != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", near)
	}
	if ValidateVerb(op) == nil {
		return fmt.Errorf("%q is not an operation%s: use read, admin, publish, edit, retract, move, *, "+
			"or declare the custom verb in actions.verbs", op, hint)
	}
	return fmt.Errorf("%q is not an operation%s: use read, admin, publish, edit, retract, move, * or a declared custom verb", op, hint)
}

// nearest returns the candidate within two edits of s, if any.
func nearest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD && c != OpAll {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (adjacent swaps count
// as one edit, as in "raed" for "read").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range rb {
		d[0][j+1] = j + 1
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// MustACL builds an ACL from rules known to be valid; it panics otherwise.
// Any custom verb a rule names is taken as declared.
func MustACL(rules ...ACLRule) *ACL {
	var verbs []string
	for _, r := range rules {
		verbs = append(verbs, r.Allow...)
	}
	a, err := NewACL(rules, &Section{File: "acl"}, "acl", verbs...)
	if err != nil {
		panic(err)
	}
	return a
}

// Allowed reports whether actor may perform op on feed.
func (a *ACL) Allowed(actor Actor, feed, op string) bool {
	if a == nil {
		return false
	}
	who := actor.String()
	for _, r := range a.rules {
		if !slices.Contains(r.Allow, op) && !slices.Contains(r.Allow, OpAll) {
			continue
		}
		if !anyMatch(r.actors, who) || !anyMatch(r.feeds, feed) {
			continue
		}
		return true
	}
	return false
}

func anyMatch(ps []thoonk.Pattern, s string) bool {
	for _, p := range ps {
		if p.Match(s) {
			return true
		}
	}
	return false
}

// compilePatterns compiles a list of globs; sec and key name them in errors.
func compilePatterns(globs []string, sec *Section, key string) ([]thoonk.Pattern, []error) {
	var errs []error
	out := make([]thoonk.Pattern, 0, len(globs))
	for i, g := range globs {
		p, err := thoonk.CompilePattern(g)
		if err != nil {
			errs = append(errs, sec.Errorf(fmt.Sprintf("%s[%d]", key, i), "%v", err))
		}
		out = append(out, p)
	}
	return out, errs
}
