package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// An unset ${VAR} is one problem among the others, not the only one shown,
// and what its empty value breaks on the same line is not repeated.
func TestCheckReportsUnsetVariablesWithEveryOtherProblem(t *testing.T) {
	t.Setenv("FB_SURELY_UNSET", "")
	p := writeConfig(t, `log:
  level: loud
rest:
  enabled: true
  tokens:
    - {name: local, token: "${FB_NOT_SET_ANYWHERE}"}
acl:
  - actors: ["*"]
    feeds: ["*"]
    allow: [raed]
`)
	var out, errOut bytes.Buffer
	if code := cli([]string{"check", "-config", p}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	msg := errOut.String()
	for _, want := range []string{
		p + ":6: ${FB_NOT_SET_ANYWHERE} is not set in the environment",
		p + `:2: log.level: "loud" is not a level`,
		p + `:10: acl[0].allow[0]: "raed" is not an operation (did you mean "read"?)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "is 0 characters") {
		t.Errorf("the unset variable's empty token is reported again:\n%s", msg)
	}
}

// A YAML syntax error names the line where the problem is (yaml.v3 alone
// names the line before, or the first line) and shows it.
func TestCheckNamesTheLineOfASyntaxError(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"log:\n  level: info\n\tformat: json\nhttp:\n  listen: 127.0.0.1:1\n", ":3: YAML syntax error: found character '\\t'"},
		{"log:\n  level: info\nacl:\n  - actors: [\"*\"]\n    feeds: [\"*\"\n    allow: [read]\n", ":6: YAML syntax error"},
	} {
		p := writeConfig(t, tc.doc)
		var errOut bytes.Buffer
		if code := cli([]string{"check", "-config", p}, io.Discard, &errOut); code != 1 {
			t.Fatalf("exit %d", code)
		}
		if !strings.Contains(errOut.String(), p+tc.want) || !strings.Contains(errOut.String(), "> ") {
			t.Errorf("want %q with the line shown, got:\n%s", p+tc.want, errOut.String())
		}
	}
}

// The effective config shows the values the bridge uses, not the empty
// defaults that stand for them.
func TestCheckPrintsResolvedDefaults(t *testing.T) {
	p := writeConfig(t, "http:\n  listen: 127.0.0.1:9911\natom:\n  enabled: true\n")
	var out bytes.Buffer
	if code := cli([]string{"check", "-config", p}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"public_url: http://127.0.0.1:9911 # from http.listen",
		"queues:\n    - feedbridge.actions",
		"instance: \"\" # empty: a random id at each start",
		"feeds: # the global feeds\n    include:",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
}

func TestHelpAndVersionFlags(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		var out bytes.Buffer
		if code := cli(args, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "bridge check") {
			t.Errorf("%v: exit %d, %q", args, code, out.String())
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if code := cli(args, &out, io.Discard); code != 0 || !regexp.MustCompile(`^feedbridge \S+ \(commit \S+\) go1\.`).MatchString(out.String()) {
			t.Errorf("%v: exit %d, %q", args, code, out.String())
		}
	}
	commit = "abc123"
	defer func() { commit = "" }()
	var out bytes.Buffer
	cli([]string{"version"}, &out, io.Discard)
	if !strings.Contains(out.String(), "(commit abc123)") {
		t.Errorf("stamped commit not shown: %q", out.String())
	}
}

// startRun runs the bridge in-process on free ports and waits until ready.
func startRun(t *testing.T, extra string) (base string, logs *testenv.LogBuffer) {
	t.Helper()
	httpAddr, redisAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := writeConfig(t, "redis:\n  embedded_addr: "+redisAddr+"\nhttp:\n  listen: "+httpAddr+"\n"+extra)
	logs = &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, p, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	base = "http://" + httpAddr
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With log.requests every request is logged (JSON: durations as text,
// never the query, which may hold a token), and /metrics counts requests
// per route and status, times them, and names the build.
func TestRequestLogsAndHTTPMetrics(t *testing.T) {
	base, logs := startRun(t, "log: {format: json, requests: true}\natom: {enabled: false}\nrest: {enabled: true}\n")
	get(t, base+"/v1/feeds?access_token=secret-in-the-query") // 401: no such token
	get(t, base+"/v1/feeds")
	get(t, base+"/v1/feeds/nope")
	get(t, base+"/nowhere")
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`feedbridge_http_requests_total{code="200",method="GET",route="/v1/feeds"} 1`,
		`feedbridge_http_requests_total{code="401",method="GET",route="/v1/feeds"} 1`,
		`feedbridge_http_requests_total{code="404",method="GET",route="/v1/feeds/:feed"} 1`,
		`feedbridge_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`feedbridge_http_request_duration_seconds_bucket{code="200",method="GET",route="/v1/feeds",le="+Inf"} 1`,
		`feedbridge_build_info{commit=`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	var seen bool
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != "http request" || rec["route"] != "/v1/feeds" || rec["status"] != 200.0 {
			continue
		}
		seen = true
		if d, ok := rec["duration"].(string); !ok || !regexp.MustCompile(`^[0-9.]+(ns|µs|ms|s)$`).MatchString(d) {
			t.Errorf("duration logged as %#v, want text such as 1.2ms", rec["duration"])
		}
		if rec["path"] != "/v1/feeds" || rec["method"] != "GET" {
			t.Errorf("request log %v", rec)
		}
	}
	if !seen {
		t.Fatalf("no request log line:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "secret-in-the-query") {
		t.Error("a query's access_token reached the log")
	}
}

// Without log.requests, requests are logged at debug level only.
func TestRequestLogsFollowTheLevel(t *testing.T) {
	base, logs := startRun(t, "log: {level: info}\natom: {enabled: false}\nrest: {enabled: false}\n")
	get(t, base+"/healthz")
	if strings.Contains(logs.String(), "http request") {
		t.Fatalf("requests logged at info without log.requests:\n%s", logs.String())
	}
	base, logs = startRun(t, "log: {level: debug}\natom: {enabled: false}\nrest: {enabled: false}\n")
	get(t, base+"/healthz")
	if !regexp.MustCompile(`level=DEBUG msg="http request" .*path=/healthz route="GET /healthz" status=200 `).MatchString(logs.String()) {
		t.Fatalf("no request log at debug:\n%s", logs.String())
	}
}

// An interactive redis-cli session on the embedded Redis works: redis-cli
// 7 asks COMMAND DOCS first, which miniredis answers with the wrong shape
// (redis-cli aborts). script(1) gives redis-cli the terminal it needs to
// be interactive; TERM=dumb keeps its line editor from querying the
// terminal.
func TestInteractiveRedisCLIOnTheEmbeddedRedis(t *testing.T) {
	cliBin := testenv.Require(t, "redis-cli", "redis-tools")
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (Debian bsdutils) is needed to give redis-cli a terminal")
	}
	httpAddr, redisAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := writeConfig(t, "redis:\n  embedded_addr: "+redisAddr+"\nhttp:\n  listen: "+httpAddr+"\ncreate_feeds:\n  - {name: news, type: feed}\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, p, io.Discard) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := getQuiet("http://" + httpAddr + "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
	}
	host, port, _ := strings.Cut(redisAddr, ":")
	cmd := exec.Command(script, "-qfec", cliBin+" -h "+host+" -p "+port, "/dev/null")
	cmd.Env = append(cmd.Environ(), "TERM=dumb")
	stdin, _ := cmd.StdinPipe()
	var out testenv.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), s); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("redis-cli never printed %q:\n%s", s, out.String())
			}
		}
	}
	waitFor(redisAddr + ">") // the interactive prompt
	io.WriteString(stdin, "SMEMBERS feeds\n")
	waitFor(`"news"`)
	io.WriteString(stdin, "quit\n")
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil || strings.Contains(out.String(), "Assertion") {
		t.Fatalf("redis-cli: %v\n%s", err, out.String())
	}
}

func getQuiet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
