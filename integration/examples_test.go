package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// serveExamples serves examples/browser on the origin the quick start's
// CORS config allows for them.
func serveExamples(t *testing.T, q *quickStart) string {
	t.Helper()
	ln, err := net.Listen("tcp", strings.TrimPrefix(q.ExamplesOrigin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir("../examples/browser"))}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return q.ExamplesOrigin
}

// TestExampleEventSourcePage: the EventSource example, served from its own
// origin, follows the quick start's events in Chromium.
func TestExampleEventSourcePage(t *testing.T) {
	q := startQuickStart(t)
	origin := serveExamples(t, q)
	page := testenv.StartChromium(t).Open(origin + "/eventsource.html?bridge=" + url.QueryEscape(q.Base))
	page.WaitFor(`document.body.dataset.state === "open"`, 20*time.Second)
	q.publish("news", `{"title":"seen by EventSource"}`, "es1")
	page.WaitFor(`[...document.querySelectorAll('#events li[data-type="publish"]')].some(li => li.textContent.includes("seen by EventSource"))`, 20*time.Second)
}

// TestExampleWebSocketPage: the WebSocket example subscribes, receives
// events, publishes an item as an action and shows its job's result, in
// Chromium against the quick start.
func TestExampleWebSocketPage(t *testing.T) {
	q := startQuickStart(t)
	origin := serveExamples(t, q)
	page := testenv.StartChromium(t).Open(origin + "/websocket.html?bridge=" + url.QueryEscape(q.Base))
	page.WaitFor(`document.querySelector('#log li[data-type="subscribed"]')`, 20*time.Second)
	q.publish("news", `{"title":"seen on the socket"}`, "ws1")
	page.WaitFor(`[...document.querySelectorAll('#log li[data-type="event"]')].some(li => li.textContent.includes("seen on the socket"))`, 20*time.Second)
	page.Eval(`document.getElementById("title").value = "sent from the page"; document.getElementById("publish").requestSubmit()`)
	page.WaitFor(`document.querySelector('#log li[data-type="accepted"]')`, 20*time.Second)
	page.WaitFor(`[...document.querySelectorAll('#log li[data-type="result"]')].some(li => li.textContent.includes('"code":201'))`, 20*time.Second)
	page.WaitFor(`[...document.querySelectorAll('#log li[data-type="event"]')].some(li => li.textContent.includes("sent from the page"))`, 20*time.Second)
	// a page from an origin the config does not name is refused
	other := testenv.FreeAddr(t)
	ln, err := net.Listen("tcp", other)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir("../examples/browser"))}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	foreign := testenv.StartChromium(t).Open("http://" + other + "/websocket.html?bridge=" + url.QueryEscape(q.Base))
	foreign.WaitFor(`document.body.dataset.state === "closed"`, 20*time.Second)
	if foreign.String(`document.body.dataset.state`) == "open" {
		t.Fatal("a page of a foreign origin opened the socket")
	}
}

// shout posts a custom verb action to news and waits for its result.
func (q *quickStart) action(verb, arg string) (int, map[string]any) {
	q.t.Helper()
	req, _ := http.NewRequest("POST", q.Base+"/v1/feeds/news/actions/"+verb, strings.NewReader(`{"args":[`+strings.TrimSpace(mustJSON(arg))+`]}`))
	req.Header.Set("Authorization", "Bearer "+quickStartToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "wait=20")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		q.t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	if loc := res.Header.Get("Location"); res.StatusCode == 201 && loc != "" {
		item, err := http.Get(q.Base + loc)
		if err != nil {
			q.t.Fatal(err)
		}
		defer item.Body.Close()
		var it map[string]any
		_ = json.NewDecoder(item.Body).Decode(&it)
		body["created"] = it
	}
	return res.StatusCode, body
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// startWorker runs an example worker until the test ends.
func startWorker(t *testing.T, name string, args ...string) *bytes.Buffer {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return &out
}

// TestExampleGoWorker: the Go worker serves the custom verb shout on the
// quick start: the action's result comes back to the REST client and the
// item is in the feed.
func TestExampleGoWorker(t *testing.T) {
	q := startQuickStart(t)
	bin := filepath.Join(t.TempDir(), "go-worker")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/go-worker").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	startWorker(t, bin, "-redis", "redis://"+q.RedisAddr)
	code, body := q.action("shout", "hello from go")
	created, _ := body["created"].(map[string]any)
	item, _ := created["item"].(map[string]any)
	if code != 201 || item["title"] != "HELLO FROM GO" || item["by"] != "rest:local" {
		t.Fatalf("shout: %d %v", code, body)
	}
}

// python finds a Python 3 that has redis-py, or says why there is none.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import redis").Run() == nil {
			return path
		}
	}
	msg := "no python3 with redis-py: install Debian's python3-redis (apt-get install -y --no-install-recommends python3-redis, or run make test as root)"
	if os.Getenv("CI") == "true" {
		// a failure only where Debian offers the package (scripts/test-deps.sh installs it)
		out, _ := exec.Command("apt-cache", "policy", "python3-redis").Output()
		if bytes.Contains(out, []byte("Candidate:")) && !bytes.Contains(out, []byte("Candidate: (none)")) {
			t.Fatal(msg)
		}
	}
	t.Skip(msg)
	return ""
}

// TestExamplePythonWorker: the Python worker (redis-py, feedbridge's Lua
// scripts) serves the custom verb reverse on the quick start; the bridge
// records its result for the job's submitter.
func TestExamplePythonWorker(t *testing.T) {
	py := python(t)
	q := startQuickStart(t)
	out := startWorker(t, py, "../examples/python-worker/worker.py", "--redis", "redis://"+q.RedisAddr)
	code, body := q.action("reverse", "hello from python")
	created, _ := body["created"].(map[string]any)
	item, _ := created["item"].(map[string]any)
	if code != 201 || item["title"] != "nohtyp morf olleh" {
		t.Fatalf("reverse: %d %v\nworker:\n%s", code, body, out.String())
	}
	// the job's status shows the worker's result to its submitter
	req, _ := http.NewRequest("GET", q.Base+"/v1/jobs/feedbridge.custom/"+body["job_id"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+quickStartToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"state":"finished"`) || !strings.Contains(string(b), `"code":201`) {
		t.Fatalf("job status: %d %s", res.StatusCode, b)
	}
}
