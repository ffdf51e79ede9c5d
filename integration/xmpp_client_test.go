package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// xmppClient is a person's XMPP client: a mellium session of a test user
// on the test Prosody, available (so messages to the bare JID reach it),
// collecting every message it receives.
type xmppClient struct {
	t         testing.TB
	jid       jid.JID
	sess      *xmpp.Session
	msgs      chan []byte
	onMessage func([]byte)
	done      chan struct{}
}

// dialXMPP logs user in on Prosody's c2s port (SASL PLAIN, no TLS: the
// connection is loopback) with the given resource. Messages go to
// onMessage, or (nil) to the client's queue for next.
func dialXMPP(t testing.TB, p *testenv.Prosody, user, pass, resource string, onMessage func([]byte)) *xmppClient {
	t.Helper()
	// mellium clears the deadlines it derives from ctx in goroutines that
	// must not see ctx end early: ctx lives as long as the client.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	addr := jid.MustParse(user + "@" + p.Domain + "/" + resource)
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.C2SAddr)
	if err != nil {
		t.Fatalf("dial %s: %v", p.C2SAddr, err)
	}
	// The Secure bit lets SASL PLAIN run without TLS on loopback.
	sess, err := xmpp.NewSession(ctx, addr.Domain(), addr, conn, xmpp.Secure, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.SASL("", pass, sasl.Plain), xmpp.BindResource()}}
		}))
	if err != nil {
		conn.Close()
		t.Fatalf("log in as %s: %v", addr, err)
	}
	c := &xmppClient{t: t, jid: sess.LocalAddr(), sess: sess, msgs: make(chan []byte, 4096), onMessage: onMessage, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = sess.Serve(xmpp.HandlerFunc(c.handle))
	}()
	t.Cleanup(c.close)
	if err := sess.Send(context.Background(), stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatalf("%s: send presence: %v", addr, err)
	}
	return c
}

func (c *xmppClient) close() {
	_ = c.sess.Close()
	_ = c.sess.Conn().Close()
	<-c.done
}

// handle keeps each message stanza, serialized.
func (c *xmppClient) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil
	}
	raw, err := xmppSerialize(xmlstream.MultiReader(xmlstream.Token(*start), t))
	if err != nil {
		return err
	}
	if c.onMessage != nil {
		c.onMessage(raw)
		return nil
	}
	select {
	case c.msgs <- raw:
	default:
	}
	return nil
}

// xmppTokens replays tokens.
func xmppTokens(toks []xml.Token) xml.TokenReader {
	return xmlstream.ReaderFunc(func() (xml.Token, error) {
		if len(toks) == 0 {
			return nil, io.EOF
		}
		t := toks[0]
		toks = toks[1:]
		return t, nil
	})
}

// xmppSerialize writes tokens as XML; the decoder's namespace declarations
// are dropped (the encoder declares each element's namespace itself).
func xmppSerialize(r xml.TokenReader) ([]byte, error) {
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	for {
		tok, err := r.Token()
		if s, ok := tok.(xml.StartElement); ok {
			s = s.Copy()
			s.Attr = slices.DeleteFunc(s.Attr, func(a xml.Attr) bool {
				return a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns")
			})
			tok = s
		}
		if tok != nil {
			if err := e.EncodeToken(tok); err != nil {
				return nil, err
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if err := e.Flush(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// xmppAnswer is an IQ answer: its type, its payload and, for an error, the
// conditions.
type xmppAnswer struct {
	Type    string `xml:"type,attr"`
	Payload []byte `xml:",innerxml"`
	Error   *struct {
		Type  string `xml:"type,attr"`
		Inner []byte `xml:",innerxml"`
	} `xml:"error"`
}

// condition returns the error's defined condition and pubsub condition
// ("" when none), e.g. "item-not-found", "".
func (r xmppAnswer) condition() (string, string) {
	if r.Error == nil {
		return "", ""
	}
	var cond, app string
	d := xml.NewDecoder(bytes.NewReader(r.Error.Inner))
	for {
		tok, err := d.Token()
		if err != nil {
			return cond, app
		}
		if s, ok := tok.(xml.StartElement); ok {
			switch s.Name.Space {
			case "urn:ietf:params:xml:ns:xmpp-stanzas":
				if s.Name.Local != "text" {
					cond = s.Name.Local
				}
			case "http://jabber.org/protocol/pubsub#errors":
				app = s.Name.Local
			}
		}
	}
}

// iq sends an IQ of type typ to the service with the given payload (raw
// XML) and returns the answer; it fails the test (so it must be called from
// the test's goroutine) when no answer comes.
func (c *xmppClient) iq(typ, to, payload string) xmppAnswer {
	c.t.Helper()
	r, err := c.tryIQ(typ, to, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// tryIQ is iq returning what goes wrong instead of failing the test, for
// goroutines other than the test's.
func (c *xmppClient) tryIQ(typ, to, payload string) (xmppAnswer, error) {
	toks, err := xmlstream.ReadAll(xml.NewDecoder(strings.NewReader(payload)))
	if err != nil && !errors.Is(err, io.EOF) {
		return xmppAnswer{}, fmt.Errorf("bad test payload %q: %w", payload, err)
	}
	iq := stanza.IQ{Type: stanza.IQType(typ), To: jid.MustParse(to)}
	type answer struct {
		raw []byte
		err error
	}
	got := make(chan answer, 1)
	go func() {
		// no deadline context: mellium would end the write deadline it
		// derives from one in a goroutine that can hit a later write
		resp, err := c.sess.SendIQ(context.Background(), iq.Wrap(xmppTokens(toks)))
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Close()
		raw, err := xmppSerialize(resp)
		got <- answer{raw, err}
	}()
	var a answer
	select {
	case a = <-got:
	case <-time.After(30 * time.Second):
		return xmppAnswer{}, fmt.Errorf("%s: no answer to IQ %s %s within 30s", c.jid, typ, payload)
	}
	if a.err != nil {
		return xmppAnswer{}, fmt.Errorf("%s: IQ %s to %s: %w", c.jid, typ, to, a.err)
	}
	var r xmppAnswer
	if err := xml.Unmarshal(a.raw, &r); err != nil {
		return xmppAnswer{}, fmt.Errorf("%s: parse IQ answer %s: %w", c.jid, a.raw, err)
	}
	return r, nil
}

// mustIQ is iq that fails the test on an error answer.
func (c *xmppClient) mustIQ(typ, to, payload string) xmppAnswer {
	c.t.Helper()
	r := c.iq(typ, to, payload)
	if r.Type != "result" {
		cond, app := r.condition()
		c.t.Fatalf("%s: IQ %s %s: got error %s/%s: %s", c.jid, typ, payload, cond, app, r.Error.Inner)
	}
	return r
}

// xmppEvent is a pubsub notification as a client sees it.
type xmppEvent struct {
	From  string `xml:"from,attr"`
	To    string `xml:"to,attr"`
	Type  string `xml:"type,attr"`
	Event *struct {
		Items *struct {
			Node  string `xml:"node,attr"`
			Items []struct {
				ID   string `xml:"id,attr"`
				JSON *struct {
					Text string `xml:",chardata"`
				} `xml:"urn:xmpp:json:0 json"`
				Text *struct {
					Text string `xml:",chardata"`
				} `xml:"urn:feedbridge:payload:0 text"`
				Inner []byte `xml:",innerxml"`
			} `xml:"item"`
			Retracts []struct {
				ID string `xml:"id,attr"`
			} `xml:"retract"`
		} `xml:"items"`
		Delete *struct {
			Node string `xml:"node,attr"`
		} `xml:"delete"`
	} `xml:"http://jabber.org/protocol/pubsub#event event"`
	Delay *struct {
		Stamp string `xml:"stamp,attr"`
	} `xml:"urn:xmpp:delay delay"`
	Raw []byte `xml:"-"`
}

// next waits for the client's next pubsub notification.
func (c *xmppClient) next(timeout time.Duration) xmppEvent {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case raw := <-c.msgs:
			var ev xmppEvent
			if err := xml.Unmarshal(raw, &ev); err != nil {
				c.t.Fatalf("%s: parse message %s: %v", c.jid, raw, err)
			}
			if ev.Event == nil {
				continue
			}
			ev.Raw = raw
			return ev
		case <-deadline:
			c.t.Fatalf("%s: no notification within %v", c.jid, timeout)
			return xmppEvent{}
		}
	}
}

// none checks that no notification arrives for a while.
func (c *xmppClient) none(wait time.Duration) {
	c.t.Helper()
	select {
	case raw := <-c.msgs:
		c.t.Fatalf("%s: unexpected message %s", c.jid, raw)
	case <-time.After(wait):
	}
}

// xmppWaitUp polls /readyz until the named adapter reports up.
func xmppWaitUp(t testing.TB, b *testenv.Bridge, adapter string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rd struct {
			Adapters map[string]struct {
				State string `json:"state"`
			} `json:"adapters"`
		}
		resp, err := http.Get("http://" + b.HTTPAddr + "/readyz")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&rd)
			resp.Body.Close()
			if rd.Adapters[adapter].State == "up" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("adapter %s not up within 30s; bridge log:\n%s", adapter, b.LogTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// xmppWaitUntil polls cond until it holds.
func xmppWaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// xmppBridgeConfig is the bridge config of the XMPP tests: the given ACL
// and xmpp section extras, REST and Atom off.
func xmppBridgeConfig(redisURL, httpAddr string, comp testenv.ProsodyComponent, server, acl, extra string) string {
	return fmt.Sprintf(`
redis:
  url: %s
http:
  listen: %s
jobs:
  maintenance_interval: 1s
acl:
%s
xmpp:
  enabled: true
  jid: %s
  server: %s
  secret: %s
%s
`, redisURL, httpAddr, acl, comp.Domain, server, comp.Secret, extra)
}
