package rest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// wantEvent reads the next frame and checks its type and (part of) its data.
func (e *env) wantEvent(rd *resttest.Reader, typ, data string) resttest.Event {
	e.t.Helper()
	ev := e.next(rd)
	if ev.Type != typ || !strings.Contains(ev.Data, data) {
		e.t.Fatalf("want %s event with %s, got %+v", typ, data, ev)
	}
	return ev
}

// skipTo reads events until one of type typ whose data contains data.
func (e *env) skipTo(rd *resttest.Reader, typ, data string) {
	e.t.Helper()
	for ev := e.next(rd); ev.Type != typ || !strings.Contains(ev.Data, data); ev = e.next(rd) {
		if ev.Type == "reset" && typ != "reset" {
			e.t.Fatalf("want %s event with %s, the stream reset: %+v", typ, data, ev)
		}
	}
}

func TestStreamAndResume(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	feed := "public:ünï/côdé"
	e.create(feed, thoonk.TypeFeed, nil)
	f := e.store.Feed(feed)
	path := "/v1/feeds/" + strings.ReplaceAll(url.PathEscape(feed), ":", "%3A") + "/events"
	res, rd := e.stream(path, "")
	if res.Header.Get("Content-Type") != "text/event-stream" || res.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("headers %v", res.Header)
	}
	hello := e.next(rd)
	if hello.ID == "" || hello.Type != "" {
		t.Fatalf("first frame should only set the id: %+v", hello)
	}
	if _, err := f.Publish(ctx, []byte(`{"n":1}`), "a"); err != nil {
		t.Fatal(err)
	}
	ev := e.wantEvent(rd, "publish", `"item":{"n":1}`)
	var data EventJSON
	_ = json.Unmarshal([]byte(ev.Data), &data)
	if data.Feed != feed || data.ID != "a" {
		t.Fatalf("event data %s", ev.Data)
	}
	// an injection attempt in the payload stays inside one data line
	if _, err := f.Publish(ctx, []byte("x\n\nevent: retract\ndata: {}\n\n"), "a"); err != nil {
		t.Fatal(err)
	}
	edit := e.wantEvent(rd, "edit", `"encoding":"text"`)
	res.Body.Close() // the client drops

	// missed while away: retract, a new item, an edit
	_ = f.Retract(ctx, "a")
	_, _ = f.Publish(ctx, []byte("two"), "b")
	_, _ = f.Publish(ctx, []byte("two, edited"), "b")
	_, rd = e.stream(path, "", "Last-Event-ID", edit.ID)
	e.wantEvent(rd, "retract", `"id":"a"`)
	e.wantEvent(rd, "publish", `"two"`)
	last := e.wantEvent(rd, "edit", `"two, edited"`)
	// live again after the replay
	_, _ = f.Publish(ctx, []byte("three"), "c")
	e.wantEvent(rd, "publish", `"three"`)
	// the query parameter works as the header does, for EventSource polyfills
	_, rd = e.stream(path+"?last_event_id="+last.ID, "")
	e.wantEvent(rd, "publish", `"three"`)
	// an id that is not from this feed's journal: reset, with the feed's
	// current revision as the id, from which the stream goes on exactly
	for _, id := range []string{"garbage", "0000-5", strings.Split(last.ID, "-")[0] + "9-0"} {
		_, rd = e.stream(path, "", "Last-Event-ID", id)
		r := e.wantEvent(rd, "reset", `"history-unavailable"`)
		if head, _ := e.store.Journal(feed).Last(ctx); r.ID != head {
			t.Fatalf("reset id %q, want the journal's last revision %q", r.ID, head)
		}
		if id == "garbage" {
			_, _ = f.Publish(ctx, []byte("four"), "d")
			e.wantEvent(rd, "publish", `"four"`)
		}
	}
	// delete reaches the stream
	_, rd = e.stream(path, "")
	e.next(rd)
	if err := e.store.Delete(ctx, feed); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(rd, "delete", `"feed":"public:ünï/côdé"`)
}

// TestStreamResets: a resume from before what the journal keeps resets
// the stream (too-far-behind); a lost Redis pubsub connection does not:
// the streams read what they missed from the journals.
func TestStreamResets(t *testing.T) {
	e := newEnv(t, strings.Replace(baseConfig, "events: {heartbeat: 1s}", "events: {heartbeat: 1s, replay_events: 4}", 1))
	ctx := context.Background()
	e.create("public:a", thoonk.TypeSorted, nil)
	e.create("public:b", thoonk.TypeFeed, nil)
	s := e.store.Sorted("public:a")
	_, rd := e.stream("/v1/events?feeds=public:a", "")
	e.next(rd)
	id, _ := s.Append(ctx, []byte("x"))
	// a sorted-feed insert is one change: a publish with its position
	first := e.wantEvent(rd, "publish", `"position":":end"`)
	if !strings.Contains(first.Data, `"id":"`+id+`"`) {
		t.Fatalf("insert event %+v", first)
	}
	// more changes than the journal keeps (max_events 1000): resuming from
	// the first is too far behind
	for range 1100 {
		_, _ = s.Append(ctx, []byte("y"))
	}
	_, r := e.stream("/v1/events?feeds=public:a", "", "Last-Event-ID", first.ID)
	e.wantEvent(r, "reset", `"too-far-behind"`)

	_, rd = e.stream("/v1/events?feeds=public:a", "")
	e.next(rd)
	// Redis pubsub reconnects: what was written meanwhile comes from the
	// journal, in order, with no reset
	_ = e.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
	_, _ = s.Append(ctx, []byte("during"))
	e.waitUp()
	_, _ = s.Append(ctx, []byte("after"))
	e.skipTo(rd, "publish", `"during"`)
	e.skipTo(rd, "publish", `"after"`)
}

func TestStreamFilters(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	for _, f := range []string{"public:x", "secret:y", "other"} {
		e.create(f, thoonk.TypeFeed, nil)
	}
	_, anon := e.stream("/v1/events", "")
	// EventSource cannot send headers: the token may come as ?access_token=
	_, reader := e.stream("/v1/events?feeds=secret:*&feeds=public:*&access_token="+tokReader, "")
	e.next(anon)
	e.next(reader)
	for _, f := range []string{"other", "secret:y", "public:x"} {
		_, _ = e.store.Feed(f).Publish(ctx, []byte(f), "")
	}
	// anonymous reads public:* only; the reader asked for two patterns
	e.wantEvent(anon, "publish", `"feed":"public:x"`)
	e.wantEvent(reader, "publish", `"feed":"secret:y"`)
	e.wantEvent(reader, "publish", `"feed":"public:x"`)
	e.call("GET", "/v1/events?feeds=[", tokReader, "").wantProblem(t, 400, "bad-request")
	e.call("GET", "/v1/feeds/secret:y/events", "", "").wantProblem(t, 404, "not-found")
}

func TestHeartbeatAndLimits(t *testing.T) {
	e := newEnv(t, strings.Replace(baseConfig, "events: {heartbeat: 1s}", "events: {heartbeat: 1s, max_streams: 1}", 1))
	e.create("public:h", thoonk.TypeFeed, nil)
	res, _ := e.stream("/v1/feeds/public:h/events", "")
	buf := make([]byte, 4096)
	got := ""
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got, ": heartbeat") && time.Now().Before(deadline) {
		n, err := res.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:n])
	}
	if !strings.Contains(got, ": heartbeat") {
		t.Fatalf("no heartbeat in %q", got)
	}
	r := e.call("GET", "/v1/feeds/public:h/events", "", "")
	r.wantProblem(t, 503, "unavailable")
	e.call("GET", "/v1/feeds/public:h/items?wait=1", "", "").wantProblem(t, 503, "unavailable")
}

func TestLongPoll(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	e.create("public:p", thoonk.TypeFeed, nil)
	f := e.store.Feed("public:p")
	base := "/v1/feeds/public:p/items"
	// nothing yet: 204 after the wait
	e.call("GET", base+"?wait=1", "", "").want(t, 204)
	// a waiting poll returns as soon as an item exists
	done := make(chan resp, 1)
	go func() { done <- e.call("GET", base+"?wait=20", "", "") }()
	time.Sleep(200 * time.Millisecond) // let the poll register (its result does not depend on it)
	_, _ = f.Publish(ctx, []byte("first"), "1")
	var r resp
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not return")
	}
	r.want(t, 200)
	next := linkNext(r.Header.Get("Link"))
	if !strings.Contains(next, "after=") {
		t.Fatalf("next %q", next)
	}
	// following the link: only what is newer
	time.Sleep(2 * time.Millisecond)
	_, _ = f.Publish(ctx, []byte("second"), "2")
	_, _ = f.Publish(ctx, []byte("third"), "3")
	r = e.call("GET", next, "", "")
	r.want(t, 200)
	var il ItemList
	_ = json.Unmarshal(r.body, &il)
	if len(il.Items) != 2 || il.Items[0].ID != "3" || il.Items[1].ID != "2" {
		t.Fatalf("newer items: %s", r.body)
	}
	e.call("GET", linkNext(r.Header.Get("Link")), "", "").want(t, 204)
	// after= without wait answers at once
	e.call("GET", base+"?after="+il.Items[0].Cursor, "", "").want(t, 204)
}

// TestShutdownEndsStreams: http.Server.Shutdown returns promptly with open
// streams and long polls, and Run returns when its context ends.
func TestShutdownEndsStreams(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:s", thoonk.TypeFeed, nil)
	e.create("public:empty", thoonk.TypeFeed, nil)
	mux := http.NewServeMux()
	mux.Handle("/v1/", e.bridge.engine)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, WriteTimeout: time.Second}
	srv.RegisterOnShutdown(e.cancel) // as the runtime does: adapters stop when Shutdown begins
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	res, err := http.Get(base + "/v1/feeds/public:s/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := resttest.NewReader(res.Body)
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	// the stream outlives the server's 1s WriteTimeout
	time.Sleep(1500 * time.Millisecond)
	_, _ = e.store.Feed("public:s").Publish(context.Background(), []byte("late"), "")
	if ev, err := rd.Next(); err != nil || ev.Type != "publish" {
		t.Fatalf("after the write timeout: %+v %v", ev, err)
	}
	poll := make(chan int, 1)
	go func() {
		r, err := http.Get(base + "/v1/feeds/public:empty/items?wait=30")
		if err == nil {
			r.Body.Close()
			poll <- r.StatusCode
		}
		close(poll)
	}()
	// an action waiting for a result that no worker will give (the "stamp"
	// queue has none): shutdown does not wait for it, the client gets 202
	e.create("routed", thoonk.TypeFeed, nil)
	acted := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/feeds/routed/actions/stamp", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+tokAdmin)
		req.Header.Set("Prefer", "wait=30")
		r, err := http.DefaultClient.Do(req)
		if err == nil {
			r.Body.Close()
			acted <- r
		}
		close(acted)
	}()
	// wait until the long poll holds a stream slot (the stream holds the
	// other) and the action's job is stored
	for deadline := time.Now().Add(10 * time.Second); len(e.bridge.streams) < 2 || e.appJobs() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the long poll or the action never started: %d slots, %d jobs", len(e.bridge.streams), e.appJobs())
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v after %v", err, time.Since(start))
	}
	if _, err := rd.Next(); err == nil {
		t.Fatal("stream still open after shutdown")
	}
	if code := <-poll; code != http.StatusNoContent {
		t.Fatalf("long poll at shutdown: %d", code)
	}
	if r := <-acted; r == nil || r.StatusCode != http.StatusAccepted || !strings.HasPrefix(r.Header.Get("Location"), "/v1/jobs/feedbridge.app/") {
		t.Fatalf("waiting action at shutdown: %+v", r)
	}
}

// TestAliveProbe: the heartbeat's probe notices a client that closed its
// end of a hijacked connection.
func TestAliveProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	s := &stream{conn: server}
	if !s.alive() {
		t.Fatal("an open connection probed as gone")
	}
	client.Close()
	for i := 0; s.alive(); i++ {
		if i == 500 {
			t.Fatal("a closed connection still probes as alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamHTTP2: where the connection cannot be hijacked (HTTP/2), the
// stream is served from its handler, with the same events and resume.
func TestStreamHTTP2(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:h2", thoonk.TypeFeed, nil)
	mux := http.NewServeMux()
	mux.Handle("/v1/", e.bridge.engine)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	open := func(last string) (*http.Response, *resttest.Reader) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/feeds/public:h2/events", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		if res.ProtoMajor != 2 || res.StatusCode != 200 {
			t.Fatalf("%s %d", res.Proto, res.StatusCode)
		}
		if err := e.check.Check(req, res.StatusCode, res.Header, nil); err != nil {
			t.Error(err)
		}
		return res, resttest.NewReader(res.Body)
	}
	res, rd := open("")
	hello := e.next(rd)
	_, _ = e.store.Feed("public:h2").Publish(context.Background(), []byte("one"), "1")
	e.wantEvent(rd, "publish", `"one"`)
	res.Body.Close()
	_, _ = e.store.Feed("public:h2").Publish(context.Background(), []byte("two"), "2")
	_, rd = open(hello.ID)
	e.wantEvent(rd, "publish", `"one"`)
	e.wantEvent(rd, "publish", `"two"`)
}

// TestRunEndsStreams: when Run's context ends, the streams it serves end
// and Run returns (the env's cleanup waits for it).
func TestRunEndsStreams(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:r", thoonk.TypeFeed, nil)
	var readers []*resttest.Reader
	for range 3 {
		_, rd := e.stream("/v1/feeds/public:r/events", "")
		e.next(rd)
		readers = append(readers, rd)
	}
	e.cancel()
	for _, rd := range readers {
		done := make(chan error, 1)
		go func() { _, err := rd.Next(); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a stream went on after Run ended")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a stream outlived Run")
		}
	}
}

// TestQuietFeedResumes: the events of other feeds pushing the ring past a
// stream's position reset neither the stream nor its resume: only the loss
// of an event the stream wants does.
func TestQuietFeedResumes(t *testing.T) {
	e := newEnv(t, strings.Replace(baseConfig, "events: {heartbeat: 1s}", "events: {heartbeat: 1s, replay_events: 4}", 1))
	ctx := context.Background()
	e.create("public:quiet", thoonk.TypeFeed, nil)
	e.create("public:busy", thoonk.TypeFeed, nil)
	noise := func() {
		t.Helper()
		want := e.bridge.ring.now().seq + 6
		for range 6 { // more than the ring keeps
			if _, err := e.store.Feed("public:busy").Publish(ctx, []byte("noise"), ""); err != nil {
				t.Fatal(err)
			}
		}
		for deadline := time.Now().Add(10 * time.Second); e.bridge.ring.now().seq < want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the events never reached the ring")
			}
		}
	}
	path := "/v1/feeds/public:quiet/events"
	res, rd := e.stream(path, "")
	e.next(rd)
	noise()
	if _, err := e.store.Feed("public:quiet").Publish(ctx, []byte("one"), "1"); err != nil {
		t.Fatal(err)
	}
	ev := e.wantEvent(rd, "publish", `"one"`) // no reset on the open stream
	res.Body.Close()
	noise()
	_, rd = e.stream(path, "", "Last-Event-ID", ev.ID)
	if _, err := e.store.Feed("public:quiet").Publish(ctx, []byte("two"), "2"); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(rd, "publish", `"two"`) // resumed exactly, no reset
}

// TestRingEvictionBound: the record of evicted events is bounded; beyond
// it, resume falls back to a reset, never to a gap.
func TestRingEvictionBound(t *testing.T) {
	r := newRing(2, 1<<20)
	start := r.now()
	for _, f := range []string{"a", "b", "c", "d", "e"} {
		r.add(entry{feed: f, data: []byte("x")})
	}
	only := func(feed string) func(string) bool { return func(f string) bool { return f == feed } }
	// kept: d, e; evicted: a, b, c (the record holds 2 feeds, so it was
	// emptied when c went)
	if _, _, lost := r.read(start, only("a"), 10); !lost {
		t.Error("a's evicted event was skipped silently")
	}
	if _, _, lost := r.read(start, only("zz"), 10); !lost {
		t.Error("a resume below the record's floor was not reset")
	}
	after := position{start.epoch, start.seq + 3} // the client saw a, b and c
	out, next, lost := r.read(after, only("e"), 10)
	if lost || len(out) != 1 || out[0].feed != "e" || next != r.now() {
		t.Errorf("read after c: %v %v %v", out, next, lost)
	}
}

// TestFeedEventsOfUnknownFeed: one feed's event stream answers a feed that
// does not exist with the same 404 as a hidden or unreadable feed, while
// the pattern route still follows feeds created later.
func TestFeedEventsOfUnknownFeed(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	e.create("secret:y", thoonk.TypeFeed, nil)
	var bodies []string
	for _, c := range []struct{ path, token string }{
		{"/v1/feeds/public:nope/events", ""}, {"/v1/feeds/nope/events", tokReader}, {"/v1/feeds/secret:y/events", ""},
		{"/v1/feeds/feedbridge.actions/events", tokAdmin}, {"/v1/feeds/public:nope", ""},
	} {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a stream would never end
		r := e.do(e.req("GET", c.path, c.token, "").WithContext(rctx))
		cancel()
		r.wantProblem(t, 404, "not-found")
		var p Problem
		_ = json.Unmarshal(r.body, &p)
		p.Instance = ""
		b, _ := json.Marshal(p)
		bodies = append(bodies, string(b))
		e.call("HEAD", c.path, c.token, "").want(t, 404)
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("404s differ: %s vs %s", b, bodies[0])
		}
	}
	_, rd := e.stream("/v1/events?feeds=public:later*", "")
	e.next(rd)
	e.create("public:later", thoonk.TypeFeed, nil)
	if _, err := e.store.Feed("public:later").Publish(ctx, []byte("first"), "1"); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(rd, "publish", `"feed":"public:later"`)
}
