package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// chromiumReadyTimeout bounds Chromium's start.
const chromiumReadyTimeout = 60 * time.Second

// Chromium is a headless Chromium (Debian's chromium) driven through its
// DevTools protocol on a loopback port. Pages with open streams
// (EventSource, WebSocket) never let --dump-dom --virtual-time-budget
// finish, since virtual time waits for pending network activity; the
// DevTools protocol reads the live DOM whenever asked instead.
type Chromium struct {
	// Base is the DevTools HTTP endpoint, http://127.0.0.1:PORT.
	Base string

	tb   testing.TB
	proc *process
}

var devtoolsRE = regexp.MustCompile(`DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)`)

// StartChromium starts a headless Chromium with a fresh profile in a temp
// dir; it is stopped when the test ends, and its log tail printed if the
// test failed. It skips the test (fails it when CI=true) if chromium is
// not installed.
func StartChromium(tb testing.TB) *Chromium {
	tb.Helper()
	bin := requireBinary(tb, "chromium", "chromium")
	dir := tb.TempDir()
	c := &Chromium{tb: tb, proc: &process{name: "chromium", bin: bin, dir: dir, logPath: filepath.Join(dir, "chromium.log")}}
	c.proc.registerCleanup(tb)
	// as root Chromium needs --no-sandbox; the rest keeps it quiet and
	// off the network (no updates, no sync, no QUIC probes)
	if err := c.proc.start("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--window-size=1200,900", "about:blank"); err != nil {
		tb.Fatal(err)
	}
	err := c.proc.waitReady(chromiumReadyTimeout, func() error {
		log, _ := os.ReadFile(c.proc.logPath)
		m := devtoolsRE.FindSubmatch(log)
		if m == nil {
			return fmt.Errorf("no DevTools endpoint yet")
		}
		c.Base = "http://127.0.0.1:" + string(m[2])
		return nil
	})
	if err != nil {
		tb.Fatalf("chromium: %v\n%s", err, c.proc.logTail(defaultLogTailLines))
	}
	return c
}

// Page is one browser tab.
type Page struct {
	tb   testing.TB
	conn *websocket.Conn

	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpReply
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Open opens a tab on url and waits until its document has loaded
// (scripts run; open streams may go on).
func (c *Chromium) Open(url string) *Page {
	c.tb.Helper()
	req, _ := http.NewRequest(http.MethodPut, c.Base+"/json/new?about:blank", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer res.Body.Close()
	var target struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(res.Body).Decode(&target); err != nil || target.WebSocketDebuggerURL == "" {
		c.tb.Fatalf("chromium: new tab: %v %s", err, res.Status)
	}
	conn, _, err := websocket.Dial(context.Background(), target.WebSocketDebuggerURL, nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	conn.SetReadLimit(64 << 20) // screenshots
	p := &Page{tb: c.tb, conn: conn, waiting: map[int]chan cdpReply{}}
	c.tb.Cleanup(func() { _ = conn.CloseNow() })
	go p.read()
	p.Navigate(url)
	return p
}

// Navigate loads url in the tab and waits until its document has loaded.
func (p *Page) Navigate(url string) {
	p.tb.Helper()
	p.Call("Page.navigate", map[string]any{"url": url})
	p.WaitFor(`location.href === `+Quote(url)+` && document.readyState === "complete"`, 30*time.Second)
}

// read dispatches replies to their callers; events are not used.
func (p *Page) read() {
	for {
		_, data, err := p.conn.Read(context.Background())
		if err != nil {
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(data, &m) != nil || m.ID == 0 {
			continue
		}
		p.mu.Lock()
		ch := p.waiting[m.ID]
		delete(p.waiting, m.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// Call sends a DevTools command and returns its result.
func (p *Page) Call(method string, params any) json.RawMessage {
	p.tb.Helper()
	p.mu.Lock()
	p.next++
	id := p.next
	ch := make(chan cdpReply, 1)
	p.waiting[id] = ch
	p.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		p.tb.Fatalf("chromium %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			p.tb.Fatalf("chromium %s: %s", method, r.Error.Message)
		}
		return r.Result
	case <-ctx.Done():
		p.tb.Fatalf("chromium %s: no answer within 30s", method)
	}
	return nil
}

// Eval evaluates a JavaScript expression in the page (promises awaited)
// and returns its value as JSON.
func (p *Page) Eval(expr string) json.RawMessage {
	p.tb.Helper()
	v, err := p.eval(expr)
	if err != nil {
		p.tb.Fatal(err)
	}
	return v
}

func (p *Page) eval(expr string) (json.RawMessage, error) {
	raw := p.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if r.Exception != nil {
		return nil, fmt.Errorf("chromium: %s: %s", expr, r.Exception.Text)
	}
	return r.Result.Value, nil
}

// String evaluates an expression whose value is a string.
func (p *Page) String(expr string) string {
	p.tb.Helper()
	var s string
	_ = json.Unmarshal(p.Eval(expr), &s)
	return s
}

// WaitFor waits until a JavaScript expression is true.
func (p *Page) WaitFor(expr string, timeout time.Duration) {
	p.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// an exception (the page is between documents, an element not
		// there yet) counts as false
		if v, err := p.eval("!!(" + expr + ")"); err == nil && string(v) == "true" {
			return
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("chromium: %s still false after %v; the page:\n%s", expr, timeout, p.DOM())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DOM returns the page's document as it is now, after its scripts ran.
func (p *Page) DOM() string {
	p.tb.Helper()
	return p.String("document.documentElement.outerHTML")
}

// Key presses and releases a key (for example "Tab", "Enter") in the page.
func (p *Page) Key(key string) {
	p.tb.Helper()
	codes := map[string]int{"Tab": 9, "Enter": 13, " ": 32}
	for _, typ := range []string{"keyDown", "keyUp"} {
		ev := map[string]any{"type": typ, "key": key, "code": key, "windowsVirtualKeyCode": codes[key]}
		if key == "Enter" && typ == "keyDown" {
			ev["text"] = "\r"
		}
		p.Call("Input.dispatchKeyEvent", ev)
	}
}

// Type types text into the focused element.
func (p *Page) Type(text string) {
	p.tb.Helper()
	p.Call("Input.insertText", map[string]any{"text": text})
}

// Screenshot saves the page as a PNG.
func (p *Page) Screenshot(path string) {
	p.tb.Helper()
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(p.Call("Page.captureScreenshot", map[string]any{"format": "png"}), &r); err != nil {
		p.tb.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.tb.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.tb.Fatal(err)
	}
}

// Quote renders s as a JavaScript string literal.
func Quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
