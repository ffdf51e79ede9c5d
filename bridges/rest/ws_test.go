package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// wsClient is a Go WebSocket client of /v1/ws.
type wsClient struct {
	e    *env
	conn *websocket.Conn
}

// dialWS opens /v1/ws; token "" sends none, query adds ?... to the URL.
func (e *env) dialWS(token, query string, hdr ...string) (*wsClient, *http.Response, error) {
	e.t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/ws" + query
	conn, res, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, res, err
	}
	e.t.Cleanup(func() { _ = conn.CloseNow() })
	return &wsClient{e: e, conn: conn}, res, nil
}

func (c *wsClient) send(m map[string]any) {
	c.e.t.Helper()
	b, _ := json.Marshal(m)
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.e.t.Fatal(err)
	}
}

// next reads the next message within 10 s, validated against the
// WSServerMessage schema of the OpenAPI document.
func (c *wsClient) next() WSServerMessage {
	c.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		c.e.t.Fatalf("read: %v", err)
	}
	if err := c.e.check.Schema("WSServerMessage", data); err != nil {
		c.e.t.Errorf("message %s: %v", data, err)
	}
	var m WSServerMessage
	if err := json.Unmarshal(data, &m); err != nil {
		c.e.t.Fatal(err)
	}
	return m
}

// want reads the next message and checks its type and (part of) its data.
func (c *wsClient) want(typ, contains string) WSServerMessage {
	c.e.t.Helper()
	m := c.next()
	raw, _ := json.Marshal(m)
	if m.Type != typ || !strings.Contains(string(raw), contains) {
		c.e.t.Fatalf("want %s message with %s, got %s", typ, contains, raw)
	}
	return m
}

// The WebSocket follows the SSE streams' event source: the same events
// with the same ids, the same replay after last_event_id (an SSE id
// resumes a subscription), the same resets.
func TestWebSocketEventsShareTheSSEIds(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	e.create("public:w", thoonk.TypeFeed, nil)
	f := e.store.Feed("public:w")
	_, sse := e.stream("/v1/feeds/public:w/events", "")
	e.next(sse)
	ws, _, err := e.dialWS("", "")
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]any{"type": "subscribe", "sub": "s1", "feed": "public:w"})
	hello := ws.want("subscribed", `"sub":"s1"`)
	if hello.ID == "" {
		t.Fatal("subscribed without a resume id")
	}
	_, _ = f.Publish(ctx, []byte(`{"n":1}`), "a")
	got := ws.want("event", `"event":"publish"`)
	viaSSE := e.wantEvent(sse, "publish", `"n":1`)
	if got.ID != viaSSE.ID || string(got.Data) != viaSSE.Data {
		t.Fatalf("WebSocket %s %s, SSE %s %s: not the same event", got.ID, got.Data, viaSSE.ID, viaSSE.Data)
	}
	_ = ws.conn.CloseNow()

	// missed while away, resumed with the SSE stream's id
	_ = f.Retract(ctx, "a")
	_, _ = f.Publish(ctx, []byte("two"), "b")
	ws, _, err = e.dialWS("", "")
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]any{"type": "subscribe", "sub": "again", "feed": "public:w", "last_event_id": viaSSE.ID})
	ws.want("subscribed", `"again"`)
	ws.want("event", `"event":"retract"`)
	ws.want("event", `"two"`)
	// an id this process never gave: a reset, whose id resumes exactly
	ws.send(map[string]any{"type": "subscribe", "sub": "bad", "feeds": []string{"public:*"}, "last_event_id": "0000-9"})
	ws.want("subscribed", `"bad"`)
	reset := ws.want("reset", `"history-unavailable"`)
	if _, ok := parsePoint(reset.ID, true); !ok {
		t.Fatalf("reset id %q is not a stream position", reset.ID)
	}
	ws.send(map[string]any{"type": "unsubscribe", "sub": "again"})
	ws.want("unsubscribed", `"again"`)
	_, _ = f.Publish(ctx, []byte("three"), "c")
	if m := ws.want("event", `"three"`); m.Sub != "bad" {
		t.Fatalf("event for %q after its unsubscribe", m.Sub)
	}
}

// Subscriptions obey the ACL as the SSE routes do, and a bad message gets
// an error without closing the socket.
func TestWebSocketSubscriptionsObeyTheACL(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	for _, f := range []string{"public:x", "secret:y"} {
		e.create(f, thoonk.TypeFeed, nil)
	}
	anon, _, err := e.dialWS("", "")
	if err != nil {
		t.Fatal(err)
	}
	// browsers cannot send headers on a WebSocket: ?access_token= works
	reader, _, err := e.dialWS("", "?access_token="+tokReader)
	if err != nil {
		t.Fatal(err)
	}
	anon.send(map[string]any{"type": "subscribe", "sub": "hidden", "feed": "secret:y"})
	anon.want("error", `"type":"/v1/problems/not-found"`)
	anon.send(map[string]any{"type": "subscribe", "sub": "all"})
	anon.want("subscribed", `"all"`)
	reader.send(map[string]any{"type": "subscribe", "sub": "all", "feeds": []string{"secret:*", "public:*"}})
	reader.want("subscribed", `"all"`)
	for _, f := range []string{"secret:y", "public:x"} {
		_, _ = e.store.Feed(f).Publish(ctx, []byte(f), "")
	}
	anon.want("event", `"feed":"public:x"`)
	reader.want("event", `"feed":"secret:y"`)
	reader.want("event", `"feed":"public:x"`)
	anon.send(map[string]any{"type": "subscribe", "sub": "all"})
	anon.want("error", `"/v1/problems/conflict"`)
	anon.send(map[string]any{"type": "dance"})
	anon.want("error", `"/v1/problems/bad-request"`)
	if err := anon.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","extra":1}`)); err != nil {
		t.Fatal(err)
	}
	anon.want("error", `"/v1/problems/bad-request"`)
	// a wrong token is refused at the upgrade, like any request
	if _, res, err := e.dialWS("wrong-token-0123456789", ""); err == nil || res == nil || res.StatusCode != 401 {
		t.Fatalf("wrong token: %v %v", res, err)
	}
	// a browser page of a foreign origin is refused (rest.cors is empty)
	if _, res, err := e.dialWS("", "", "Origin", "https://evil.example"); err == nil || res == nil || res.StatusCode != 403 {
		t.Fatalf("foreign origin: %v %v", res, err)
	}
	// a plain GET is told to upgrade, with a problem the document describes
	e.call("GET", "/v1/ws", "", "").wantProblem(t, 426, "upgrade-required")
}

// Actions on the socket are checked as REST's, stored before accepted,
// and their results come back on the same socket.
func TestWebSocketActionsAndResults(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:a", thoonk.TypeFeed, nil)
	e.create("routed", thoonk.TypeFeed, nil)
	admin, _, err := e.dialWS(tokAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	admin.send(map[string]any{"type": "action", "ref": "r1", "verb": "publish", "feed": "public:a", "item": map[string]any{"title": "hi"}})
	acc := admin.want("accepted", `"ref":"r1"`)
	if acc.Job == nil || acc.Job.State != thoonk.JobQueued || acc.Job.JobID == "" {
		t.Fatalf("accepted %+v", acc.Job)
	}
	res := admin.want("result", `"ref":"r1"`)
	if res.Job.Result == nil || res.Job.Result.Code != 201 || res.Job.JobID != acc.Job.JobID {
		t.Fatalf("result %+v", res.Job)
	}
	page := e.call("GET", "/v1/feeds/public:a/items", "", "")
	if !strings.Contains(string(page.body), `"title":"hi"`) {
		t.Fatalf("the item is not in the feed: %s", page.body)
	}
	// a custom verb nobody serves: accepted, then the wait runs out
	before := e.appJobs()
	admin.send(map[string]any{"type": "action", "ref": "r2", "verb": "stamp", "feed": "routed", "wait": 1})
	admin.want("accepted", `"r2"`)
	admin.want("timeout", `"state":"queued"`)
	if e.appJobs() != before+1 {
		t.Fatal("the custom verb's job is not stored")
	}
	// refused actions create no job and say why
	anon, _, err := e.dialWS("", "")
	if err != nil {
		t.Fatal(err)
	}
	jobs := e.jobCount()
	anon.send(map[string]any{"type": "action", "ref": "x", "verb": "publish", "feed": "public:a", "item": "nope"})
	anon.want("error", `"/v1/problems/forbidden"`)
	anon.send(map[string]any{"type": "action", "ref": "y", "verb": "publish", "feed": "secret:none", "item": "nope"})
	anon.want("error", `"/v1/problems/not-found"`)
	anon.send(map[string]any{"type": "action", "ref": "z", "verb": "edit", "feed": "public:a", "item": "x", "item_base64": "eA=="})
	anon.want("error", `"/v1/problems/bad-request"`)
	if e.jobCount() != jobs {
		t.Fatal("a refused action created a job")
	}
}

// The socket keeps the SSE rules: one stream slot each, the actor's rate
// limit per message.
func TestWebSocketLimits(t *testing.T) {
	e := newEnv(t, strings.Replace(strings.Replace(baseConfig, "events: {heartbeat: 1s}", "events: {heartbeat: 1s, max_streams: 1}", 1),
		"per_token: {rate: 0}", "per_token: {rate: 0.001, burst: 3}", 1))
	e.create("public:l", thoonk.TypeFeed, nil)
	ws, _, err := e.dialWS(tokReader, "") // takes 1 of the burst
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := e.dialWS("", ""); err == nil || res == nil || res.StatusCode != 503 {
		t.Fatalf("a second socket beyond max_streams: %v %v", res, err)
	}
	e.call("GET", "/v1/feeds/public:l/events", "", "").wantProblem(t, 503, "unavailable")
	ws.send(map[string]any{"type": "subscribe", "sub": "a", "feed": "public:l"})
	ws.want("subscribed", `"a"`)
	ws.send(map[string]any{"type": "subscribe", "sub": "b", "feed": "public:l"})
	ws.want("subscribed", `"b"`)
	ws.send(map[string]any{"type": "subscribe", "sub": "c", "feed": "public:l"})
	ws.want("error", `"/v1/problems/rate-limited"`)
	_ = ws.conn.Close(websocket.StatusNormalClosure, "")
	// the slot is given back once the socket ends
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := e.dialWS("", ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the closed socket's stream slot was never released")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = resttest.Body

// /v1/docs renders the served document (whose server is the bridge's
// public URL) from the binary alone: no script, no other origin.
func TestDocsPage(t *testing.T) {
	e := newEnv(t, baseConfig)
	doc := e.call("GET", "/v1/docs", "", "")
	doc.want(t, 200)
	page := string(doc.body)
	for _, want := range []string{
		`<h1>feedbridge REST API`, `id="op-websocket"`, `<code>/v1/ws</code>`, `id="schema-WSServerMessage"`,
		`"$ref": <a href="#schema-JobStatus">JobStatus</a>`, `<a href="/v1/openapi.json">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "http://") && !strings.Contains(page, "<code>http://") {
		t.Error("the page loads a script or another origin")
	}
	if !strings.Contains(doc.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("CSP %q", doc.Header.Get("Content-Security-Policy"))
	}
	served := servedSpec(openAPI, "https://feeds.example.org")
	var spec struct {
		Servers []struct{ URL string } `json:"servers"`
	}
	if err := json.Unmarshal(served, &spec); err != nil || len(spec.Servers) != 1 || spec.Servers[0].URL != "https://feeds.example.org" {
		t.Fatalf("servers of the served document: %+v %v", spec, err)
	}
}

// A shell's "Bearer $TOKEN" with TOKEN unset sends "Bearer" alone: the
// 401 says the token is empty, not that it is wrong.
func TestEmptyBearerTokenIsNamed(t *testing.T) {
	e := newEnv(t, baseConfig)
	r := e.do(e.req("POST", "/v1/feeds/public:x/items", "", "{}", "Authorization", "Bearer "))
	r.wantProblem(t, 401, "unauthorized")
	if !strings.Contains(string(r.body), "the bearer token is empty") {
		t.Fatalf("401 for an empty token: %s", r.body)
	}
	r = e.call("GET", "/v1/feeds", "not-a-token-0123456789", "")
	if r.StatusCode != 401 || strings.Contains(string(r.body), "empty") {
		t.Fatalf("a wrong token: %d %s", r.StatusCode, r.body)
	}
}
