package core_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core"
)

func TestTokenSetLookup(t *testing.T) {
	const deploy, reader = "deploy-token-0123456789", "reader-token-abcdefghij"
	set := core.NewTokenSet([]core.Token{{Name: "deploy", Token: deploy}, {Name: "reader", Token: reader}})
	for presented, want := range map[string]string{deploy: "deploy", reader: "reader"} {
		if name, ok := set.Lookup(presented); !ok || name != want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", presented, name, ok, want)
		}
	}
	for _, near := range []string{
		"", "deploy", "deploy-token-012345678", // prefixes
		"deploy-token-0123456789x", " deploy-token-0123456789", // longer
		"deploy-token-0123456788", "Deploy-token-0123456789", "DEPLOY-TOKEN-0123456789", // one character off
	} {
		if name, ok := set.Lookup(near); ok {
			t.Errorf("Lookup(%q) accepted a near-miss as %q", near, name)
		}
	}
	if name, ok := core.NewTokenSet(nil).Lookup(""); ok {
		t.Errorf("an empty set accepted the empty token as %q", name)
	}
}

func TestValidateTokens(t *testing.T) {
	sec := &core.Section{File: "bridge.yaml", Path: "atom"}
	good := []core.Token{{Name: "feed.reader_1", Token: "0123456789abcdef"}, {Name: "b", Token: "0123456789abcdeg"}}
	if err := core.ValidateTokens(good, "atom", sec, "tokens"); err != nil {
		t.Fatalf("valid tokens refused: %v", err)
	}
	err := core.ValidateTokens([]core.Token{
		{Name: "bad name", Token: "short-secret"},
		{Name: "anonymous", Token: "has a space in it!"},
		{Name: "ok", Token: "same-secret-0123456789"},
		{Name: "ok", Token: "same-secret-0123456789"},
		{Name: strings.Repeat("x", 65), Token: "tab\tseparated-0123456789"},
	}, "atom", sec, "tokens")
	if err == nil {
		t.Fatal("bad tokens accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`atom.tokens[0].name: "bad name": use 1-64`, "the actor atom:NAME", "atom.tokens[0].token: is 12 characters: use at least 16",
		`atom.tokens[1].name: "anonymous" is the anonymous actor's id`, "atom.tokens[1].token: contains spaces",
		`atom.tokens[3].name: "ok" is used twice`, "atom.tokens[3].token: is the same as another token's",
		"atom.tokens[4].name", "atom.tokens[4].token: contains spaces or control characters",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	for _, secret := range []string{"short-secret", "same-secret", "has a space", "separated"} {
		if strings.Contains(msg, secret) {
			t.Errorf("the error shows a token (%q):\n%s", secret, msg)
		}
	}
}

func TestRequestToken(t *testing.T) {
	for _, c := range []struct {
		method, target, auth string
		basic                bool
		token                string
		given                bool
	}{
		{"GET", "/x", "", true, "", false},
		{"GET", "/x", "Bearer abc", false, "abc", true},
		{"GET", "/x", "bearer  abc ", false, "abc", true},
		{"GET", "/x", "Basic dXNlcjpzM2NyZXQ=", true, "s3cret", true}, // user:s3cret
		{"GET", "/x", "Basic dXNlcjpzM2NyZXQ=", false, "", true},      // Basic not accepted: matches nothing
		{"GET", "/x", "Digest username=u", true, "", true},
		{"GET", "/x?access_token=q", "", false, "q", true},
		{"HEAD", "/x?access_token=q", "", true, "q", true},
		{"GET", "/x?access_token=", "", true, "", false},
		{"POST", "/x?access_token=q", "", false, "", false},
		{"GET", "/x?access_token=q", "Bearer h", false, "h", true}, // the header wins
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		if tok, given := core.RequestToken(r, c.basic); tok != c.token || given != c.given {
			t.Errorf("%s %s %q (basic %v): %q %v, want %q %v", c.method, c.target, c.auth, c.basic, tok, given, c.token, c.given)
		}
	}
}
