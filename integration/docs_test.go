package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// shellBlock returns the first ```sh block of a document.
func shellBlock(t *testing.T, path string) string {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```sh\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("%s has no sh block", path)
	}
	return block
}

// runBlock runs a documented shell block against the quick start: only
// the address is moved to the test's port, and the line that starts the
// bridge is left out (the test started it).
func runBlock(t *testing.T, q *quickStart, block string, env ...string) string {
	t.Helper()
	host := strings.TrimPrefix(q.Base, "http://")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, "go run ./cmd/bridge") {
			continue
		}
		l = strings.ReplaceAll(l, "localhost:8080", host)
		lines = append(lines, strings.ReplaceAll(l, "127.0.0.1:8080", host))
	}
	cmd := exec.Command("bash", "-c", "set -u +e\n"+strings.Join(lines, "\n"))
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TestDocsRESTQuickStartRunsVerbatim: docs/rest.md's quick start, as
// written, works on the shipped config: the publish is applied (201 with
// the item), the item is listed, a custom verb waits queued, the event
// stream answers. With FEEDBRIDGE_TOKEN unset (the export left out) the
// publish is a 401 that says the token is empty.
func TestDocsRESTQuickStartRunsVerbatim(t *testing.T) {
	q := startQuickStart(t)
	block := shellBlock(t, "../docs/rest.md")
	out := runBlock(t, q, block)
	for _, want := range []string{
		`"name":"news"`, // GET /v1/feeds
		`"state":"finished","failures":0,"result":{"ok":true,"code":201`, // the publish, applied
		`"item":{"title":"hello"}`,                                       // listed
		`"state":"queued"`,                                               // the custom verb waits for a worker
		"retry: 2000",                                                    // the event stream
	} {
		if !strings.Contains(out, want) {
			t.Errorf("docs/rest.md quick start: no %s in its output:\n%s", want, out)
		}
	}
	var noExport []string
	for _, l := range strings.Split(block, "\n") {
		if !strings.HasPrefix(l, "export FEEDBRIDGE_TOKEN=") {
			noExport = append(noExport, l)
		}
	}
	out = runBlock(t, q, strings.Replace(strings.Join(noExport, "\n"), "set -u", "", 1), "FEEDBRIDGE_TOKEN=")
	if !strings.Contains(out, `"status":401`) || !strings.Contains(out, "the bearer token is empty") {
		t.Errorf("with FEEDBRIDGE_TOKEN empty, no 401 saying so:\n%s", out)
	}
}

// TestDocsREADMETryItRunsVerbatim: the README's "Try it" block works on
// the shipped config as written (the endless event stream is cut after a
// moment).
func TestDocsREADMETryItRunsVerbatim(t *testing.T) {
	q := startQuickStart(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(readme), "## Try it")
	block := shellBlock(t, writeTemp(t, rest))
	block = strings.ReplaceAll(block, "curl -N ", "timeout 2 curl -N ")
	block = strings.ReplaceAll(block, "redis-cli -p 6399", "redis-cli -p "+strings.Split(q.RedisAddr, ":")[1])
	out := runBlock(t, q, block)
	for _, want := range []string{`"code":201`, `"title":"Hello"`, "retry: 2000", `<title type="text">News</title>`, "news"} {
		if !strings.Contains(out, want) {
			t.Errorf("README's Try it: no %s in its output:\n%s", want, out)
		}
	}
}

func writeTemp(t *testing.T, s string) string {
	t.Helper()
	p := t.TempDir() + "/doc.md"
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
