// Package atomtest checks feed documents the way outside readers see
// them, for the tests of the Atom adapter: Atom documents are validated
// against RFC 4287's RELAX NG schema with jing (Debian package jing), and
// every format is parsed with an independent reader, gofeed.
package atomtest

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/mmcdole/gofeed"
)

// batch collects one test's Atom documents for a single jing run (the JVM
// takes about half a second to start).
type batch struct {
	dir   string
	files []string
}

var (
	mu      sync.Mutex
	batches = map[testing.TB]*batch{}
)

// Parse parses a feed document (Atom, RSS or JSON Feed) with gofeed,
// failing the test if it cannot. An Atom document is also queued for
// validation against RFC 4287's schema, which runs once, when the test
// ends, and fails the test with jing's messages and the document.
func Parse(tb testing.TB, body []byte) *gofeed.Feed {
	tb.Helper()
	f, err := gofeed.NewParser().Parse(bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("gofeed cannot parse the document: %v\n%s", err, body)
	}
	if f.FeedType == "atom" {
		queue(tb, body)
	}
	return f
}

func queue(tb testing.TB, body []byte) {
	tb.Helper()
	mu.Lock()
	b := batches[tb]
	if b == nil {
		b = &batch{dir: tb.TempDir()}
		batches[tb] = b
		tb.Cleanup(func() { validate(tb) }) // runs before TempDir's removal
	}
	name := filepath.Join(b.dir, fmt.Sprintf("doc%03d.atom", len(b.files)))
	b.files = append(b.files, name)
	mu.Unlock()
	if err := os.WriteFile(name, body, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// Schema returns the path of RFC 4287's RELAX NG schema (compact syntax).
func Schema() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "atom.rnc")
}

func validate(tb testing.TB) {
	mu.Lock()
	b := batches[tb]
	delete(batches, tb)
	mu.Unlock()
	jing, err := exec.LookPath("jing")
	if err != nil {
		msg := "jing is not installed (Debian package jing): Atom documents were not validated against RFC 4287's schema"
		if os.Getenv("CI") == "true" {
			tb.Error(msg)
		} else {
			tb.Log(msg)
		}
		return
	}
	out, err := exec.Command(jing, append([]string{"-c", Schema()}, b.files...)...).Output()
	if err == nil {
		return
	}
	tb.Errorf("jing: %v\n%s", err, out)
	for _, f := range b.files {
		if strings.Contains(string(out), f) {
			data, _ := os.ReadFile(f)
			tb.Errorf("%s:\n%s", filepath.Base(f), data)
		}
	}
}

// Check checks a fetched answer the way outside readers see it when it is
// a feed document (a 200 answer to a GET, of an Atom, RSS or JSON Feed
// media type): it is parsed as Parse does (and an Atom document validated
// with jing), and returned. Any other answer (a 304, a problem, a HEAD,
// the discovery page) gives nil.
func Check(tb testing.TB, resp *http.Response, body []byte) *gofeed.Feed {
	tb.Helper()
	if resp.Request == nil || resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return nil
	}
	switch mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt {
	case "application/atom+xml", "application/rss+xml", "application/feed+json":
		return Parse(tb, body)
	}
	return nil
}
