package integration

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// The benchmarks compare feedbridge's component with Prosody's own
// mod_pubsub (a second component host of the same server), with the same
// subscribers on the same connections, in the same run:
//
//	go test -run '^$' -bench 'BenchmarkXMPP' -benchtime 3x ./integration/

const xmppNativeService = "native-pubsub.localhost"

// xmppBench is Redis, Prosody serving both pubsub services, the bridge,
// a publisher and n subscriber connections (resources of one account),
// each subscribed to the node of both services.
type xmppBench struct {
	store *thoonk.Store
	pub   *xmppClient

	mu       sync.Mutex
	got      map[string]int // "service item" -> receivers so far
	want     int
	complete map[string]chan struct{}
	arrived  map[string]time.Time // first arrival, for latency
}

// xmppTarget is one pubsub service under test. publish may run on any
// goroutine: it reports failures instead of failing the benchmark.
type xmppTarget struct {
	name, service string
	publish       func(id string) error
}

// startSideBySide starts Redis, a Prosody serving both feedbridge's
// component and its own mod_pubsub (nodes created by pub@localhost, an
// admin), and the bridge letting any XMPP user do what allow says; users
// are "pub" and sub (password "pw-" + name). It returns the Prosody and
// a store on the Redis.
func startSideBySide(tb testing.TB, sub, allow, extra string) (*testenv.Prosody, *thoonk.Store) {
	tb.Helper()
	comp := testenv.ProsodyComponent{Domain: xmppService, Secret: "component-secret"}
	r := testenv.StartRedis(tb)
	p := testenv.StartProsody(tb, testenv.ProsodyOptions{
		Components: []testenv.ProsodyComponent{comp}, PubsubHost: xmppNativeService,
		Users: map[string]string{"pub": "pw-pub", sub: "pw-" + sub},
		// mod_pubsub lets server admins create nodes
		ExtraGlobal: `admins = { "pub@localhost" }`,
	})
	httpAddr := testenv.FreeAddr(tb)
	bridge := testenv.StartBridge(tb, xmppBridgeConfig(r.URL, httpAddr, comp, p.ComponentAddr, `
  - actors: ["xmpp:*"]
    feeds: ["*"]
    allow: [`+allow+`]`, extra), httpAddr)
	xmppWaitUp(tb, bridge, "xmpp")
	return p, storeFor(tb, r.URL)
}

func startXMPPBench(b *testing.B, n int) (*xmppBench, []xmppTarget) {
	b.Helper()
	p, store := startSideBySide(b, "fan", "read, publish", `
  rate_limit: {per_second: 0, domain_per_second: 0}
  max_subscriptions_per_jid: 0 # the fan-out subscribes 1,000 resources of one account`)
	x := &xmppBench{store: store, got: map[string]int{}, want: n,
		complete: map[string]chan struct{}{}, arrived: map[string]time.Time{}}
	ctx := context.Background()
	if err := x.store.Create(ctx, "bench", thoonk.TypeFeed, nil); err != nil {
		b.Fatal(err)
	}
	x.pub = dialXMPP(b, p, "pub", "pw-pub", "pub", nil)
	x.pub.mustIQ("set", xmppNativeService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='bench'/></pubsub>`)

	for i := range n {
		fan := dialXMPP(b, p, "fan", "pw-fan", fmt.Sprintf("r%d", i), x.received)
		for _, svc := range []string{xmppService, xmppNativeService} {
			fan.mustIQ("set", svc, xmppSubscribeIQ("bench", fan.jid.String()))
		}
	}
	payload := `<json xmlns='urn:xmpp:json:0'>{"bench":true}</json>`
	return x, []xmppTarget{
		{name: "feedbridge", service: xmppService, publish: func(id string) error {
			_, err := x.store.Feed("bench").Publish(ctx, []byte(`{"bench":true}`), id)
			return err
		}},
		{name: "prosody-mod_pubsub", service: xmppNativeService, publish: func(id string) error {
			r, err := x.pub.tryIQ("set", xmppNativeService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='bench'>`+
				`<item id='`+id+`'>`+payload+`</item></publish></pubsub>`)
			if err == nil && r.Type != "result" {
				cond, app := r.condition()
				err = fmt.Errorf("publish %s: error %s/%s", id, cond, app)
			}
			return err
		}},
	}
}

// expect registers an item before it is published.
func (x *xmppBench) expect(service, id string) chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	ch := make(chan struct{})
	x.complete[service+" "+id] = ch
	return ch
}

// received counts a notification; the last expected receiver closes the
// item's channel.
func (x *xmppBench) received(raw []byte) {
	now := time.Now()
	var m struct {
		From string `xml:"from,attr"`
		IDs  []struct {
			ID string `xml:"id,attr"`
		} `xml:"http://jabber.org/protocol/pubsub#event event>items>item"`
	}
	if xml.Unmarshal(raw, &m) != nil || len(m.IDs) != 1 {
		return
	}
	key := m.From + " " + m.IDs[0].ID
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.arrived[key]; !ok {
		x.arrived[key] = now
	}
	x.got[key]++
	if ch := x.complete[key]; ch != nil && x.got[key] == x.want {
		close(ch)
		delete(x.complete, key)
	}
}

// wait waits, on the benchmark's goroutine, until every subscriber got
// the item of ch, or a publish reports an error on errs.
func (x *xmppBench) wait(b *testing.B, ch chan struct{}, errs <-chan error, what string) {
	select {
	case <-ch:
	case err := <-errs:
		b.Fatalf("%s: %v", what, err)
	case <-time.After(60 * time.Second):
		b.Fatalf("%s: not every subscriber received it within 60s", what)
	}
}

// BenchmarkXMPPLatency publishes 300 items at 100 items/s to a node with
// one subscriber and reports the latency from publish to notification.
func BenchmarkXMPPLatency(b *testing.B) {
	x, targets := startXMPPBench(b, 1)
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			var lat []time.Duration
			for range b.N {
				run := time.Now().UnixNano() // ids unique across calls of this function
				const items, rate = 300, 100
				sent := make([]time.Time, items)
				done := make([]chan struct{}, items)
				errs := make(chan error, items) // the publishes' failures, reported by this goroutine
				tick := time.NewTicker(time.Second / rate)
				for i := range items {
					<-tick.C
					id := fmt.Sprintf("lat-%d-%d", run, i)
					done[i] = x.expect(tg.service, id)
					sent[i] = time.Now()
					go func() {
						if err := tg.publish(id); err != nil {
							errs <- err
						}
					}()
				}
				tick.Stop()
				for i := range items {
					x.wait(b, done[i], errs, tg.name)
					x.mu.Lock()
					lat = append(lat, x.arrived[tg.service+" "+fmt.Sprintf("lat-%d-%d", run, i)].Sub(sent[i]))
					x.mu.Unlock()
				}
			}
			slices.Sort(lat)
			ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
			b.ReportMetric(ms(1), "max-ms")
		})
	}
}

// BenchmarkXMPPFanout1000 publishes one item to a node with 1,000
// subscribers (1,000 client connections) and measures the time until
// every subscriber has it: ns/op is the time to the last receiver.
func BenchmarkXMPPFanout1000(b *testing.B) {
	x, targets := startXMPPBench(b, 1000)
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				id := fmt.Sprintf("fan-%d-%d", i, time.Now().UnixNano())
				ch := x.expect(tg.service, id)
				start := time.Now()
				if err := tg.publish(id); err != nil {
					b.Fatal(err)
				}
				x.wait(b, ch, nil, tg.name)
				total += time.Since(start)
			}
			b.ReportMetric(float64(total)/float64(b.N)/float64(time.Millisecond), "ms-to-all")
		})
	}
}
