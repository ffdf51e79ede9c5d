package xmpp

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// fakeServer is the server side of XEP-0114, enough to test the component
// without Prosody: it accepts connections, checks the handshake, records
// every stanza the component sends and lets the test send stanzas.
type fakeServer struct {
	t      testing.TB
	ln     net.Listener
	domain string
	secret string
	conns  chan *fakeConn
	quit   chan struct{} // closed when the test ends
}

// fakeConn is one accepted component connection.
type fakeConn struct {
	c         net.Conn
	mu        sync.Mutex
	stanzas   chan *element
	closed    chan struct{}
	stalled   chan struct{} // closed: the server stops reading
	stallOnce sync.Once
}

// stall makes the server stop reading this connection (after the stanza
// it may be reading now), as a stalled server does: the component's
// writes fill the socket buffers, then block.
func (fc *fakeConn) stall() { fc.stallOnce.Do(func() { close(fc.stalled) }) }

func startFakeServer(t testing.TB, domain, secret string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, ln: ln, domain: domain, secret: secret, conns: make(chan *fakeConn, 16), quit: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { close(f.quit); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{c: c, stanzas: make(chan *element, 100000), closed: make(chan struct{}), stalled: make(chan struct{})}
			wg.Go(func() { f.serve(fc) })
		}
	})
	return f
}

// serve runs the handshake, then reads stanzas until the connection ends.
func (f *fakeServer) serve(fc *fakeConn) {
	defer close(fc.closed)
	defer fc.c.Close()
	d := xml.NewDecoder(fc.c)
	if _, err := nextStart(d); err != nil { // <stream:stream>
		return
	}
	id := "stream-id-1"
	fmt.Fprintf(fc.c, `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='%s' from='%s'>`, id, f.domain)
	start, err := nextStart(d)
	if err != nil {
		return
	}
	hs, err := readElement(d, start, limits{bytes: 1 << 10, depth: 2, elements: 2})
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(id + f.secret))
	if hs.text() != hex.EncodeToString(sum[:]) {
		fmt.Fprint(fc.c, `<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		return
	}
	fmt.Fprint(fc.c, `<handshake/>`)
	f.conns <- fc
	for {
		select {
		case <-fc.stalled:
			<-f.quit
			return
		default:
		}
		start, err := nextStart(d)
		if err != nil {
			return
		}
		e, err := readElement(d, start, limits{bytes: 64 << 20, depth: 100, elements: 1 << 20})
		if err != nil {
			return
		}
		fc.stanzas <- e
	}
}

func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s, nil
		}
	}
}

// accept waits for the component's next authenticated connection.
func (f *fakeServer) accept() *fakeConn {
	f.t.Helper()
	select {
	case fc := <-f.conns:
		return fc
	case <-time.After(10 * time.Second):
		f.t.Fatal("the component did not connect")
		return nil
	}
}

// send writes raw stanzas to the component.
func (fc *fakeConn) send(t testing.TB, raw string) {
	t.Helper()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if _, err := io.WriteString(fc.c, raw); err != nil {
		t.Fatal(err)
	}
}

// next returns the next stanza the component sent.
func (fc *fakeConn) next(t testing.TB) *element {
	t.Helper()
	select {
	case e := <-fc.stanzas:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no stanza from the component within 10s")
		return nil
	}
}

// ask sends an IQ and returns the component's answer (notifications
// arriving meanwhile are kept for nextMessage).
func (fc *fakeConn) ask(t testing.TB, raw string) *element {
	t.Helper()
	fc.send(t, raw)
	return fc.next(t)
}

// testEnv is a hub on miniredis with the component running against a
// fake server.
type testEnv struct {
	hub    *core.Hub
	store  *thoonk.Store
	mini   *miniredis.Miniredis
	server *fakeServer
	bridge *Bridge
	cancel context.CancelFunc
	done   chan error
}

// testConfig is a valid enabled config for domain, connecting to addr.
func testConfig(domain, addr string) Config {
	cfg := defaultConfig()
	cfg.Enabled, cfg.JID, cfg.Server, cfg.Secret = true, domain, addr, "s3cret"
	cfg.Wait = 0
	cfg.Reconnect = thoonk.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	return cfg
}

// newHub returns a hub on miniredis: the ACL lets every XMPP user read
// and publish, and the listener runs until the test ends.
func newHub(t testing.TB) (*core.Hub, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	return hubOn(t, m.Addr()), m
}

// hubOn is newHub on the Redis server at addr.
func hubOn(t testing.TB, addr string) *core.Hub {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 10000, MaxItemBytes: 8192}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(context.Background(), "feedbridge.actions", thoonk.TypeJob, nil); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := thoonk.NewListener(store, thoonk.ListenerOptions{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := l.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	acl := core.MustACL(core.ACLRule{Actors: []string{"xmpp:*"}, Feeds: []string{"*"}, Allow: []string{"read", "publish", "retract"}})
	return &core.Hub{
		Store: store, Events: l, ACL: acl, Log: log,
		Actions: core.NewActions(store, l, acl, core.ActionsOptions{Queue: "feedbridge.actions", MaxItemBytes: 1 << 20, ResultTTL: time.Hour}, nil),
	}
}

// offlineService returns a service without a connection (drain takes its
// notifications) on a new hub that holds the plain feed f.
func offlineService(t testing.TB) (*service, *core.Hub, *miniredis.Miniredis) {
	t.Helper()
	hub, m := newHub(t)
	s := newService(testConfig("pubsub.test", "127.0.0.1:1"), hub, newConns())
	must(t, hub.Store.Create(context.Background(), "f", thoonk.TypeFeed, nil))
	return s, hub, m
}

// startEnv runs the component with cfg (edited by the caller) against a
// fake server; it fails the test if Run leaks goroutines or errors.
func startEnv(t testing.TB, domain string, edit func(*Config)) (*testEnv, *fakeConn) {
	t.Helper()
	hub, m := newHub(t)
	return startEnvWith(t, hub, m, domain, edit)
}

// startEnvWith is startEnv on a given hub.
func startEnvWith(t testing.TB, hub *core.Hub, m *miniredis.Miniredis, domain string, edit func(*Config)) (*testEnv, *fakeConn) {
	t.Helper()
	srv := startFakeServer(t, domain, "s3cret")
	cfg := testConfig(domain, srv.ln.Addr().String())
	if edit != nil {
		edit(&cfg)
	}
	e := &testEnv{hub: hub, store: hub.Store, mini: m, server: srv, bridge: &Bridge{cfg: cfg}}
	e.start()
	t.Cleanup(e.stop)
	return e, srv.accept()
}

// start runs the bridge (again).
func (e *testEnv) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- e.bridge.Run(ctx, e.hub) }()
}

// stop stops the bridge as the runtime does (ctx ends) and waits for Run
// to return.
func (e *testEnv) stop() {
	e.cancel()
	if err := <-e.done; err != nil {
		panic(fmt.Sprintf("Run returned %v", err))
	}
	e.done <- nil // stop is idempotent
}

// restart stops the bridge and runs a new one (a new process, as far as
// the adapter knows: nothing but Redis is kept); it returns the new
// connection.
func (e *testEnv) restart() *fakeConn {
	e.stop()
	e.bridge = &Bridge{cfg: e.bridge.cfg}
	e.start()
	return e.server.accept()
}

// captureLog makes hub log into the returned buffer.
func captureLog(hub *core.Hub) *testenv.LogBuffer {
	var b testenv.LogBuffer
	hub.Log = slog.New(slog.NewTextHandler(&b, nil))
	return &b
}

// condition returns an IQ error's defined condition and pubsub condition.
func condition(iq *element) (string, string) {
	var cond, app string
	if e := iq.child(nsComponent, "error"); e != nil {
		for _, c := range e.children() {
			switch {
			case c.Name.Space == nsStanzas && c.Name.Local != "text":
				cond = c.Name.Local
			case c.Name.Space == nsPubsubError:
				app = c.Name.Local
			}
		}
	}
	return cond, app
}

// notifiedIDs returns the item ids of a pubsub notification.
func notifiedIDs(msg *element) []string {
	var ids []string
	if ev := msg.child(nsPubsubEvent, "event"); ev != nil {
		if items := ev.child(nsPubsubEvent, "items"); items != nil {
			for _, it := range items.children() {
				if it.Name.Local == "item" {
					id, _ := it.attr("id")
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

// quiet checks that the component sends nothing more for a while.
func (fc *fakeConn) quiet(t testing.TB) {
	t.Helper()
	select {
	case extra := <-fc.stanzas:
		raw, _ := extra.marshal()
		t.Fatalf("unexpected stanza: %s", raw)
	case <-time.After(100 * time.Millisecond):
	}
}

// match compares got with the expected tree: same names, attributes
// (namespace declarations aside; an expected value "*" matches any
// value), child elements in order (stanza error <text/> aside) and
// trimmed text.
func match(exp, got *element) error {
	if exp.Name != got.Name {
		return fmt.Errorf("element {%s}%s, want {%s}%s", got.Name.Space, got.Name.Local, exp.Name.Space, exp.Name.Local)
	}
	attrs := func(e *element) map[xml.Name]string {
		m := map[xml.Name]string{}
		for _, a := range e.Attr {
			if !isNSDecl(a) {
				m[a.Name] = a.Value
			}
		}
		return m
	}
	ea, ga := attrs(exp), attrs(got)
	for n, v := range ea {
		if gv, ok := ga[n]; !ok || (v != "*" && gv != v) {
			return fmt.Errorf("<%s> attribute %s=%q, want %q", exp.Name.Local, n.Local, gv, v)
		}
	}
	for n, v := range ga {
		if _, ok := ea[n]; !ok {
			return fmt.Errorf("<%s> has an unexpected attribute %s=%q", exp.Name.Local, n.Local, v)
		}
	}
	if et, gt := strings.TrimSpace(exp.text()), strings.TrimSpace(got.text()); et != gt {
		return fmt.Errorf("<%s> text %q, want %q", exp.Name.Local, gt, et)
	}
	kids := func(e *element) []*element {
		return slices.DeleteFunc(e.children(), func(c *element) bool { return c.Name == xml.Name{Space: nsStanzas, Local: "text"} })
	}
	ek, gk := kids(exp), kids(got)
	for i := range max(len(ek), len(gk)) {
		switch {
		case i >= len(gk):
			return fmt.Errorf("<%s> lacks a child <%s>", exp.Name.Local, ek[i].Name.Local)
		case i >= len(ek):
			return fmt.Errorf("<%s> has an unexpected child <%s>", exp.Name.Local, gk[i].Name.Local)
		}
		if err := match(ek[i], gk[i]); err != nil {
			return fmt.Errorf("%s > %w", exp.Name.Local, err)
		}
	}
	return nil
}

// parseFixture parses an XML fixture; a stanza without a namespace is
// put in the component namespace, as on the component stream.
func parseFixture(t testing.TB, data []byte) *element {
	t.Helper()
	wrapped := append(append([]byte("<stream xmlns='jabber:component:accept'>"), data...), "</stream>"...)
	root, err := parseXMLElement(wrapped, limits{bytes: 1 << 20, depth: 64, elements: 1 << 16})
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	kids := root.children()
	if len(kids) != 1 {
		t.Fatalf("fixture holds %d elements, want 1", len(kids))
	}
	return kids[0]
}

// tokensElement parses tokens built by the package back into a tree.
func tokensElement(t testing.TB, toks []xml.Token) *element {
	t.Helper()
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	for _, tok := range toks {
		if err := enc.EncodeToken(tok); err != nil {
			t.Fatalf("encode: %v", err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	e, err := parseXMLElement(b.Bytes(), limits{bytes: 1 << 20, depth: 64, elements: 1 << 16})
	if err != nil {
		t.Fatalf("the package wrote XML that does not parse: %v\n%s", err, b.Bytes())
	}
	if err := namespaceWellFormed(b.Bytes()); err != nil {
		t.Fatalf("the package wrote XML that an XMPP server refuses: %v\n%s", err, b.Bytes())
	}
	return e
}

// namespaceWellFormed checks what Go's decoder lets through but the
// namespace-aware parsers of XMPP servers (expat, in Prosody) refuse, so
// that the server would close the stream: an attribute given twice (by
// its prefixed or its expanded name), a reserved namespace bound to
// another prefix or as the default namespace, an undeclared prefix.
func namespaceWellFormed(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	scopes := []map[string]string{{"xml": nsXML}}
	lookup := func(prefix string) (string, bool) {
		for i := len(scopes) - 1; i >= 0; i-- {
			if uri, ok := scopes[i][prefix]; ok {
				return uri, true
			}
		}
		return "", false
	}
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			scope := map[string]string{}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					if a.Value == nsXML || a.Value == nsXMLNS {
						return fmt.Errorf("<%s> declares %s as its default namespace", t.Name.Local, a.Value)
					}
				case a.Name.Space == "xmlns":
					if a.Name.Local == "xmlns" || a.Value == "" || a.Value == nsXMLNS || (a.Value == nsXML) != (a.Name.Local == "xml") {
						return fmt.Errorf("<%s> binds prefix %s to %q", t.Name.Local, a.Name.Local, a.Value)
					}
					scope[a.Name.Local] = a.Value
				}
			}
			scopes = append(scopes, scope)
			if _, ok := lookup(t.Name.Space); t.Name.Space != "" && !ok {
				return fmt.Errorf("<%s:%s> has an undeclared prefix", t.Name.Space, t.Name.Local)
			}
			seen := map[xml.Name]bool{}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue
				}
				name := a.Name
				if name.Space != "" {
					uri, ok := lookup(name.Space)
					if !ok {
						return fmt.Errorf("attribute %s:%s has an undeclared prefix", a.Name.Space, a.Name.Local)
					}
					name.Space = uri
				}
				if seen[name] {
					return fmt.Errorf("<%s> has attribute %s twice", t.Name.Local, a.Name.Local)
				}
				seen[name] = true
			}
		case xml.EndElement:
			scopes = scopes[:len(scopes)-1]
		}
	}
}

// waitFor polls cond.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bodyElement parses a queued notification's encoded payload.
func bodyElement(t testing.TB, raw []byte) *element {
	t.Helper()
	e, err := parseXMLElement(raw, limits{bytes: 1 << 22, depth: 64, elements: 1 << 16})
	if err != nil {
		t.Fatalf("notification payload %s: %v", raw, err)
	}
	return e
}

// messageOf parses a queued notification's payload inside a message, as
// a subscriber receives it.
func messageOf(t testing.TB, raw []byte) *element {
	t.Helper()
	return bodyElement(t, append(append([]byte(`<message xmlns='jabber:component:accept'>`), raw...), `</message>`...))
}
