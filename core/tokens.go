package core

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Token is a secret a client presents to an adapter (REST, Atom) to prove
// an identity: its Name becomes the actor id, "protocol:NAME" in the ACL.
type Token struct {
	// Name is the actor id the token proves.
	Name string `yaml:"name"`
	// Token is the secret itself, never printed.
	Token Secret `yaml:"token"`
}

// MinTokenLen is the shortest token accepted.
const MinTokenLen = 16

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateTokens checks a section's token list (at key, for example
// "tokens"): each name is 1 to 64 of A-Z a-z 0-9 . _ -, unique and not
// the anonymous actor's id; each token is at least MinTokenLen printable
// characters and unique. protocol is the adapter's actor protocol, named
// in the messages. Every problem is reported, never a token's value.
func ValidateTokens(tokens []Token, protocol string, sec *Section, key string) error {
	var errs []error
	add := func(at, format string, args ...any) { errs = append(errs, sec.Errorf(at, format, args...)) }
	names, secrets := map[string]bool{}, map[Secret]bool{}
	for i, t := range tokens {
		at := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case !tokenNameRE.MatchString(t.Name):
			add(at+".name", "%q: use 1-64 of A-Z a-z 0-9 . _ - (it becomes the actor %s:NAME)", t.Name, protocol)
		case t.Name == Anonymous:
			add(at+".name", "%q is the anonymous actor's id: choose another name", t.Name)
		case names[t.Name]:
			add(at+".name", "%q is used twice: give each token its own name", t.Name)
		}
		names[t.Name] = true
		switch tok := t.Token.Reveal(); {
		case len(tok) < MinTokenLen:
			add(at+".token", "is %d characters: use at least %d (for example `openssl rand -hex 24`), or ${ENV_VAR}", len(tok), MinTokenLen)
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			add(at+".token", "contains spaces or control characters: a token must be printable")
		case secrets[t.Token]:
			add(at+".token", "is the same as another token's: each token must be unique")
		}
		secrets[t.Token] = true
	}
	return errors.Join(errs...)
}

// TokenSet finds which configured token a client presented, in constant
// time: both sides are hashed, so neither the length nor the content of a
// configured token leaks through timing, and every token is compared on
// every lookup.
type TokenSet struct {
	names  []string
	hashes [][sha256.Size]byte
}

// NewTokenSet holds tokens (checked by ValidateTokens) for lookups.
func NewTokenSet(tokens []Token) *TokenSet {
	s := &TokenSet{}
	for _, t := range tokens {
		s.names = append(s.names, t.Name)
		s.hashes = append(s.hashes, sha256.Sum256([]byte(t.Token.Reveal())))
	}
	return s
}

// Lookup returns the name of the token presented, or false when it is
// none of them.
func (s *TokenSet) Lookup(presented string) (name string, ok bool) {
	h := sha256.Sum256([]byte(presented))
	found := -1
	for i := range s.hashes {
		if subtle.ConstantTimeCompare(h[:], s.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return s.names[found], true
}

// RequestToken returns the token an HTTP request presents, and whether it
// presents one: an RFC 6750 "Authorization: Bearer TOKEN", with basic the
// password of HTTP Basic authentication (any user name; feed readers
// support Basic), or, on GET and HEAD requests, RFC 6750's access_token
// query parameter (for clients that can send no header). An Authorization
// header of another scheme presents a token that matches none.
func RequestToken(r *http.Request, basic bool) (token string, given bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if _, pass, ok := r.BasicAuth(); ok && basic {
			return pass, true
		}
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", true
		}
		return strings.TrimSpace(tok), true
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if tok := r.URL.Query().Get("access_token"); tok != "" {
			return tok, true
		}
	}
	return "", false
}
