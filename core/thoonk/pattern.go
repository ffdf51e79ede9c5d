package thoonk

import (
	"fmt"
	"unicode/utf8"
)

// Pattern is a glob over feed names with Redis' semantics: '*' matches any
// run of characters (including ':' and '/'), '?' exactly one character,
// '[abc]', '[a-z]' and '[^abc]' one character of (or not of) a class, and
// '\' makes the next character literal. The zero Pattern matches nothing.
type Pattern struct {
	src     string
	literal bool
}

// CompilePattern checks a glob and returns it as a Pattern.
func CompilePattern(glob string) (Pattern, error) {
	if glob == "" {
		return Pattern{}, fmt.Errorf("pattern is empty: %w", ErrInvalid)
	}
	if !utf8.ValidString(glob) {
		return Pattern{}, fmt.Errorf("pattern %q is not valid UTF-8: %w", glob, ErrInvalid)
	}
	literal := true
	for i := 0; i < len(glob); i++ {
		switch glob[i] {
		case '\\':
			if i+1 >= len(glob) {
				return Pattern{}, fmt.Errorf("pattern %q ends with a lone '\\': %w", glob, ErrInvalid)
			}
			literal = false
			i++
		case '*', '?':
			literal = false
		case '[':
			literal = false
			end := classEnd(glob, i+1)
			if end < 0 {
				return Pattern{}, fmt.Errorf("pattern %q has an unclosed '[': %w", glob, ErrInvalid)
			}
			i = end
		}
	}
	return Pattern{src: glob, literal: literal}, nil
}

// MustPattern is CompilePattern for patterns known to be valid; it panics otherwise.
func MustPattern(glob string) Pattern {
	p, err := CompilePattern(glob)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the glob the pattern was compiled from.
func (p Pattern) String() string { return p.src }

// IsZero reports whether p is the zero Pattern.
func (p Pattern) IsZero() bool { return p.src == "" }

// Literal reports whether the pattern has no wildcards, so it matches one name only.
func (p Pattern) Literal() bool { return p.literal }

// Match reports whether name matches the pattern.
func (p Pattern) Match(name string) bool {
	if p.src == "" {
		return false
	}
	if p.literal {
		return p.src == name
	}
	return globMatch(p.src, name)
}

// classEnd returns the index of the ']' closing a class whose body starts at
// i, or -1. A ']' right after '[' or '[^' is part of the class.
func classEnd(p string, i int) int {
	if i < len(p) && p[i] == '^' {
		i++
	}
	if i < len(p) && p[i] == ']' {
		i++
	}
	for ; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case ']':
			return i
		}
	}
	return -1
}

// globMatch matches with one backtracking point per '*', which is linear in
// practice and never exponential.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				pi++
				si += n
				continue
			case '[':
				r, n := utf8.DecodeRuneInString(s[si:])
				end := classEnd(p, pi+1)
				if classMatch(p[pi+1:end], r) {
					pi = end + 1
					si += n
					continue
				}
			case '\\':
				pr, pn := utf8.DecodeRuneInString(p[pi+1:])
				r, n := utf8.DecodeRuneInString(s[si:])
				if pr == r {
					pi += 1 + pn
					si += n
					continue
				}
			default:
				pr, pn := utf8.DecodeRuneInString(p[pi:])
				r, n := utf8.DecodeRuneInString(s[si:])
				if pr == r {
					pi += pn
					si += n
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// classMatch matches r against a class body (between '[' and ']').
func classMatch(body string, r rune) bool {
	negate := false
	if body != "" && body[0] == '^' {
		negate = true
		body = body[1:]
	}
	matched := false
	for i := 0; i < len(body); {
		c, n := utf8.DecodeRuneInString(body[i:])
		if c == '\\' && i+n < len(body) {
			i += n
			c, n = utf8.DecodeRuneInString(body[i:])
		}
		i += n
		if i+1 < len(body) && body[i] == '-' {
			j := i + 1
			hi, hn := utf8.DecodeRuneInString(body[j:])
			if hi == '\\' && j+hn < len(body) {
				j += hn
				hi, hn = utf8.DecodeRuneInString(body[j:])
			}
			i = j + hn
			lo := c
			if lo > hi {
				lo, hi = hi, lo
			}
			if r >= lo && r <= hi {
				matched = true
			}
			continue
		}
		if c == r {
			matched = true
		}
	}
	return matched != negate
}
