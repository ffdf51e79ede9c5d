package thoonk_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// confSide is one of the two Redis servers TestJournalConformance runs
// the same operations on: one store journals, the other does not.
type confSide struct {
	b  *thoonktest.Backend
	s  *thoonk.Store
	ps *redis.PubSub
}

// confResult is what one operation did on one side: its error, the
// schema's messages, how many journal announcements it made, and the
// keyspace without feedbridge's own keys (ours: how many of those).
type confResult struct {
	err     string
	msgs    []string
	journal int
	keys    map[string]string
	ours    int
}

// secondsScore matches a zset score that is a time in seconds (thoonk.py
// scores plain-feed items with time.time()).
var secondsScore = regexp.MustCompile(`@1\d{9}(\.\d+)?\b`)

// do runs op on the side, then collects everything it published (up to
// a sync message) and dumps the keyspace.
func (c *confSide) do(t *testing.T, ctx context.Context, op func(s *thoonk.Store, rdb *redis.Client) error) confResult {
	t.Helper()
	var r confResult
	if err := op(c.s, c.b.RDB); err != nil {
		r.err = err.Error()
	}
	thoonktest.Must(t, c.b.RDB.Publish(ctx, "conformance.sync", "x").Err())
	for {
		m, err := c.ps.ReceiveMessage(ctx)
		thoonktest.Must(t, err)
		if m.Channel == "conformance.sync" {
			break
		}
		if strings.HasPrefix(m.Channel, "feedbridge.journal:") {
			r.journal++
			continue
		}
		r.msgs = append(r.msgs, m.Channel+" "+strings.ReplaceAll(m.Payload, "\x00", `\0`))
	}
	r.keys = map[string]string{}
	for k, v := range dumpKeyspace(t, ctx, c.b.RDB, time.Now().UnixMilli()) {
		if strings.HasPrefix(k, "feedbridge.") {
			r.ours++
			continue
		}
		r.keys[k] = secondsScore.ReplaceAllString(v, "@T")
	}
	return r
}

// TestJournalConformance: with the journal on, every schema key and every
// schema message a change produces is byte for byte what it is with the
// journal off; only feedbridge's own keys and its feedbridge.journal:*
// announcements come in addition. The same operations run on two
// redis-servers, one store journaling and one not, and each step's
// messages and whole keyspace are compared (times of the same step shown
// as T). Each step also says how many journal entries it announces, so a
// journal that silently stopped would fail here too. Covered: plain-feed
// publish, edit, create-only publish, trim by max_length, retract; sorted
// inserts, edit, the four moves, retract; the worker's apply script with
// and without a job; config; delete; and the journaler's own steps
// (Observe, Reconcile) after a thoonk.py-style writer's changes, which
// must touch no schema key and publish nothing of the schema's.
func TestJournalConformance(t *testing.T) {
	ctx := thoonktest.Ctx(t)
	offB, onB := thoonktest.Real(t), thoonktest.Real(t)
	sides := [2]*confSide{{b: offB, s: offB.Store}, {b: onB}}
	sides[1].s = onB.StoreWith(t, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 1000, MaxItemBytes: 16, MaxAge: time.Hour}})
	for _, c := range sides {
		c.ps = c.b.RDB.PSubscribe(ctx, "*")
		defer c.ps.Close()
		_, err := c.ps.Receive(ctx)
		thoonktest.Must(t, err)
	}
	large := []byte("an item of more than sixteen bytes: journaled by its sum")
	rev := regexp.MustCompile(`,"rev":"\d+-\d+"`)

	// step runs op on both sides and compares; entries is how many
	// journal entries it announces with the journal on.
	step := func(name string, entries int, op func(s *thoonk.Store, rdb *redis.Client) error) {
		t.Helper()
		off, on := sides[0].do(t, ctx, op), sides[1].do(t, ctx, op)
		if strings.HasPrefix(name, "apply job") {
			// the worker's job result names the change's revision when
			// there is one: the job's result, not the schema, differs
			for i, m := range on.msgs {
				if strings.HasPrefix(m, "job.finish:") {
					if !rev.MatchString(m) {
						t.Errorf("%s: the job result %q does not carry the change's revision", name, m)
					}
					on.msgs[i] = rev.ReplaceAllString(m, "")
				}
			}
		}
		if off.err != on.err {
			t.Errorf("%s: error %q with the journal off, %q with it on", name, off.err, on.err)
		}
		if !slices.Equal(off.msgs, on.msgs) {
			t.Errorf("%s: schema messages differ\n off %q\n  on %q", name, off.msgs, on.msgs)
		}
		for k, v := range off.keys {
			if on.keys[k] != v {
				t.Errorf("%s: key %s\n off %s\n  on %s", name, k, v, on.keys[k])
			}
		}
		for k, v := range on.keys {
			if _, ok := off.keys[k]; !ok {
				t.Errorf("%s: key %s only with the journal on: %s", name, k, v)
			}
		}
		if off.journal != 0 || on.journal != entries {
			t.Errorf("%s: %d journal announcements with the journal off, %d with it on; want 0 and %d", name, off.journal, on.journal, entries)
		}
		if entries > 0 && on.ours == 0 {
			t.Errorf("%s: the journaling store wrote no feedbridge.* key", name)
		}
	}
	feed := func(s *thoonk.Store) *thoonk.Feed { return s.Feed("f") }
	sorted := func(s *thoonk.Store) *thoonk.SortedFeed { return s.Sorted("s") }
	publish := func(item, id string) func(*thoonk.Store, *redis.Client) error {
		return func(s *thoonk.Store, _ *redis.Client) error {
			_, err := feed(s).Publish(ctx, []byte(item), id)
			return err
		}
	}
	apply := func(name string, ch thoonk.Change) func(*thoonk.Store, *redis.Client) error {
		return func(s *thoonk.Store, _ *redis.Client) error { _, err := s.ApplyChange(ctx, name, ch); return err }
	}
	pos := func(kind thoonk.PositionKind, rel string) *thoonk.Position {
		return &thoonk.Position{Kind: kind, Rel: rel}
	}

	// plain feed
	step("create feed", 0, func(s *thoonk.Store, _ *redis.Client) error {
		return s.Create(ctx, "f", thoonk.TypeFeed, map[string]string{"max_length": "3"})
	})
	step("publish", 1, publish("A", "a"))
	step("publish an existing id: edit", 1, publish("A2", "a"))
	step("publish a large item", 1, publish(string(large), "b"))
	step("edit a large item", 1, publish(string(large)+"!", "b"))
	step("publish", 1, publish("C", "c"))
	step("publish over max_length trims the oldest", 2, publish("D", "d"))
	step("create-only publish of a new id", 2, func(s *thoonk.Store, _ *redis.Client) error {
		_, err := feed(s).Create(ctx, []byte("E"), "e")
		return err
	})
	step("create-only publish of an existing id is refused", 0, func(s *thoonk.Store, _ *redis.Client) error {
		_, err := feed(s).Create(ctx, []byte("E2"), "e")
		return err
	})
	step("edit", 1, func(s *thoonk.Store, _ *redis.Client) error { return feed(s).Edit(ctx, "d", []byte("D2")) })
	step("edit a missing item is refused", 0, func(s *thoonk.Store, _ *redis.Client) error { return feed(s).Edit(ctx, "zz", []byte("Z")) })
	step("retract", 1, func(s *thoonk.Store, _ *redis.Client) error { return feed(s).Retract(ctx, "c") })
	step("retract a missing item", 0, func(s *thoonk.Store, _ *redis.Client) error { return feed(s).Retract(ctx, "zz") })
	step("apply publish", 1, apply("f", thoonk.Change{Verb: thoonk.ChangePublish, ID: "g", Item: []byte("G")}))
	step("apply edit", 1, apply("f", thoonk.Change{Verb: thoonk.ChangeEdit, ID: "g", Item: []byte("G2")}))
	step("apply create-only publish over max_length", 2, apply("f", thoonk.Change{Verb: thoonk.ChangePublish, ID: "h", Item: []byte("H"), Create: true}))
	step("apply retract", 1, apply("f", thoonk.Change{Verb: thoonk.ChangeRetract, ID: "g"}))
	step("set config", 0, func(s *thoonk.Store, _ *redis.Client) error {
		return s.SetConfig(ctx, "f", map[string]string{"title": "F"})
	})

	// another Thoonk writer's changes, and the journaler's steps after
	// them: Observe and Reconcile write nothing of the schema
	step("thoonk.py publish, observed", 1, func(s *thoonk.Store, rdb *redis.Client) error {
		if _, err := thoonktest.PyPublish(ctx, rdb, "f", "p", []byte("py")); err != nil {
			return err
		}
		_, err := s.Observe(ctx, thoonk.Event{Type: thoonk.EventPublish, Feed: "f", ID: "p", Item: []byte("py")})
		return err
	})
	step("thoonk.py edit and publish, reconciled", 2, func(s *thoonk.Store, rdb *redis.Client) error {
		if _, err := thoonktest.PyPublish(ctx, rdb, "f", "p", []byte("py, edited")); err != nil {
			return err
		}
		if _, err := thoonktest.PyPublish(ctx, rdb, "f", "q", []byte("py 2")); err != nil {
			return err
		}
		_, err := s.Reconcile(ctx, "f")
		return err
	})
	step("thoonk.py retract, observed", 1, func(s *thoonk.Store, rdb *redis.Client) error {
		if err := thoonktest.PyRetract(ctx, rdb, "f", "q"); err != nil {
			return err
		}
		_, err := s.Observe(ctx, thoonk.Event{Type: thoonk.EventRetract, Feed: "f", ID: "q"})
		return err
	})
	step("delete feed", 1, func(s *thoonk.Store, _ *redis.Client) error { return s.Delete(ctx, "f") })

	// sorted feed
	step("create sorted", 0, func(s *thoonk.Store, _ *redis.Client) error { return s.Create(ctx, "s", thoonk.TypeSorted, nil) })
	step("append", 1, func(s *thoonk.Store, _ *redis.Client) error { _, err := sorted(s).Append(ctx, []byte("x")); return err })
	step("prepend", 1, func(s *thoonk.Store, _ *redis.Client) error {
		_, err := sorted(s).Prepend(ctx, []byte("y"))
		return err
	})
	step("publish before", 1, func(s *thoonk.Store, _ *redis.Client) error {
		_, err := sorted(s).PublishBefore(ctx, "1", []byte("z"))
		return err
	})
	step("publish after, large", 1, func(s *thoonk.Store, _ *redis.Client) error {
		_, err := sorted(s).PublishAfter(ctx, "1", large)
		return err
	})
	step("edit sorted", 1, func(s *thoonk.Store, _ *redis.Client) error { return sorted(s).Edit(ctx, "1", []byte("X")) })
	for _, mv := range []struct {
		id string
		p  thoonk.Position
	}{{"2", thoonk.Position{Kind: thoonk.PosEnd}}, {"4", thoonk.Position{Kind: thoonk.PosBegin}},
		{"2", thoonk.Position{Kind: thoonk.PosBefore, Rel: "3"}}, {"4", thoonk.Position{Kind: thoonk.PosAfter, Rel: "1"}}} {
		step("move "+mv.id+" to "+mv.p.String(), 1, func(s *thoonk.Store, _ *redis.Client) error { return sorted(s).Move(ctx, mv.id, mv.p) })
	}
	step("move relative to a missing item is refused", 0, func(s *thoonk.Store, _ *redis.Client) error {
		return sorted(s).Move(ctx, "2", thoonk.Position{Kind: thoonk.PosAfter, Rel: "99"})
	})
	step("retract sorted", 1, func(s *thoonk.Store, _ *redis.Client) error { return sorted(s).Retract(ctx, "3") })
	step("apply sorted insert", 1, apply("s", thoonk.Change{Verb: thoonk.ChangePublish, Item: []byte("w"), Position: pos(thoonk.PosBefore, "1")}))
	step("apply sorted move", 1, apply("s", thoonk.Change{Verb: thoonk.ChangeMove, ID: "5", Position: pos(thoonk.PosEnd, "")}))
	step("apply sorted edit", 1, apply("s", thoonk.Change{Verb: thoonk.ChangeEdit, ID: "5", Item: []byte("W")}))
	step("apply sorted retract", 1, apply("s", thoonk.Change{Verb: thoonk.ChangeRetract, ID: "2"}))

	// the worker's path: a change applied for a claimed job, finished in
	// the same script
	step("create job feed and plain feed", 0, func(s *thoonk.Store, _ *redis.Client) error {
		if err := s.Create(ctx, "j", thoonk.TypeJob, nil); err != nil {
			return err
		}
		return s.Create(ctx, "g", thoonk.TypeFeed, nil)
	})
	step("job put and claim", 0, func(s *thoonk.Store, _ *redis.Client) error {
		if _, err := s.Jobs("j").Put(ctx, []byte("P"), thoonk.PutOptions{ID: "j1"}); err != nil {
			return err
		}
		_, err := s.Jobs("j").Get(ctx, time.Second)
		return err
	})
	step("apply job: publish and finish", 1, func(s *thoonk.Store, _ *redis.Client) error {
		_, err := s.ApplyJob(ctx, "g", thoonk.Change{Verb: thoonk.ChangePublish, ID: "k", Item: []byte("K")}, s.Jobs("j"), "j1", false)
		return err
	})
	step("delete sorted", 1, func(s *thoonk.Store, _ *redis.Client) error { return s.Delete(ctx, "s") })

	// the journal of the journaling side holds what the steps announced
	es, _, err := sides[1].s.Journal("g").Read(ctx, thoonk.RevStart, 10)
	thoonktest.Must(t, err)
	if len(es) != 1 || es[0].Type != thoonk.EventPublish || es[0].ID != "k" || string(es[0].Item) != "K" {
		t.Errorf("journal of g: %+v", es)
	}
}
