package thoonk_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// TestSchemaConformance checks, on a real redis-server, the exact keys, key
// types, stored values and pubsub payloads after each operation of each
// feed type: the promise that Thoonk's reference libraries and feedbridge
// read and write the same data. Times (scores) are checked to be the
// server's clock in milliseconds and then shown as T.
func TestSchemaConformance(t *testing.T) {
	b := thoonktest.Real(t)
	ctx, s := thoonktest.Ctx(t), b.Store
	ps := b.RDB.PSubscribe(ctx, "*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // psubscribe confirmation
		t.Fatal(err)
	}

	var checkKeys func(name string, wantKeys map[string]string, before, after int64)
	// step runs op, then compares the whole keyspace and the messages
	// published during op with the expectations.
	var step func(name string, op func() error, wantKeys map[string]string, wantMsgs ...string)
	step = func(name string, op func() error, wantKeys map[string]string, wantMsgs ...string) {
		t.Helper()
		before := time.Now().UnixMilli()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		after := time.Now().UnixMilli()
		thoonktest.Must(t, b.RDB.Publish(ctx, "conformance.sync", "x").Err())
		var msgs []string
		for {
			m, err := ps.ReceiveMessage(ctx)
			thoonktest.Must(t, err)
			if m.Channel == "conformance.sync" {
				break
			}
			msgs = append(msgs, m.Channel+" "+strings.ReplaceAll(m.Payload, "\x00", `\0`))
		}
		if !slices.Equal(msgs, wantMsgs) {
			t.Errorf("%s: messages\n got %q\nwant %q", name, msgs, wantMsgs)
		}
		if wantKeys != nil {
			checkKeys(name, wantKeys, before, after)
		}
	}
	checkKeys = func(name string, wantKeys map[string]string, before, after int64) {
		t.Helper()
		got := dumpKeyspace(t, ctx, b.RDB, after)
		for k, v := range wantKeys {
			if got[k] != v {
				t.Errorf("%s: key %s\n got %s\nwant %s", name, k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := wantKeys[k]; !ok {
				t.Errorf("%s: unexpected key %s = %s", name, k, v)
			}
		}
	}
	keys := map[string]string{}
	with := func(kv ...string) map[string]string {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(keys, kv[i])
			} else {
				keys[kv[i]] = kv[i+1]
			}
		}
		out := map[string]string{}
		for k, v := range keys {
			out[k] = v
		}
		return out
	}
	f, sf, q, j := s.Feed("f"), s.Sorted("s"), s.Queue("q"), s.Jobs("j")

	// registry and plain feed
	step("create feed", func() error { return s.Create(ctx, "f", thoonk.TypeFeed, map[string]string{"max_length": "2"}) },
		with("feeds", "set{f}", "feed.config:f", "hash{max_length=2 type=feed}"),
		`newfeed f\0test-instance`, `conffeed f\0test-instance`)
	step("publish", func() error { _, err := f.Publish(ctx, []byte("A"), "a"); return err },
		with("feed.ids:f", "zset[a@T]", "feed.items:f", "hash{a=A}", "feed.publishes:f", "string 1"),
		`feed.publish:f a\0A`)
	step("publish existing id = edit", func() error { _, err := f.Publish(ctx, []byte("A2"), "a"); return err },
		with("feed.items:f", "hash{a=A2}", "feed.publishes:f", "string 2"),
		`feed.edit:f a\0A2`)
	step("publish second", func() error { _, err := f.Publish(ctx, []byte("B"), "b"); return err },
		with("feed.ids:f", "zset[a@T b@T]", "feed.items:f", "hash{a=A2 b=B}", "feed.publishes:f", "string 3"),
		`feed.publish:f b\0B`)
	time.Sleep(2 * time.Millisecond)
	step("publish over max_length trims the oldest", func() error { _, err := f.Publish(ctx, []byte("C"), "c"); return err },
		with("feed.ids:f", "zset[b@T c@T]", "feed.items:f", "hash{b=B c=C}", "feed.publishes:f", "string 4"),
		`feed.retract:f a`, `feed.publish:f c\0C`)
	step("retract", func() error { return f.Retract(ctx, "b") },
		with("feed.ids:f", "zset[c@T]", "feed.items:f", "hash{c=C}"),
		`feed.retract:f b`)
	step("set config", func() error { return s.SetConfig(ctx, "f", map[string]string{"title": "F"}) },
		with("feed.config:f", "hash{max_length=2 title=F type=feed}"),
		`conffeed f\0test-instance`)
	step("delete feed", func() error { return s.Delete(ctx, "f") },
		with("feeds", "", "feed.config:f", "", "feed.ids:f", "", "feed.items:f", "", "feed.publishes:f", ""),
		`delfeed f\0test-instance`)

	// sorted feed
	step("create sorted", func() error { return s.Create(ctx, "s", thoonk.TypeSorted, nil) },
		with("feeds", "set{s}", "feed.config:s", "hash{type=sorted_feed}"),
		`newfeed s\0test-instance`, `conffeed s\0test-instance`)
	step("append", func() error { _, err := sf.Append(ctx, []byte("x")); return err },
		with("feed.ids:s", "list[1]", "feed.items:s", "hash{1=x}", "feed.idincr:s", "string 1", "feed.publishes:s", "string 1"),
		`feed.publish:s 1\0x`, `feed.position:s 1\0:end`)
	step("prepend", func() error { _, err := sf.Prepend(ctx, []byte("y")); return err },
		with("feed.ids:s", "list[2 1]", "feed.items:s", "hash{1=x 2=y}", "feed.idincr:s", "string 2", "feed.publishes:s", "string 2"),
		`feed.publish:s 2\0y`, `feed.position:s 2\0begin:`)
	step("publish before", func() error { _, err := sf.PublishBefore(ctx, "1", []byte("z")); return err },
		with("feed.ids:s", "list[2 3 1]", "feed.items:s", "hash{1=x 2=y 3=z}", "feed.idincr:s", "string 3", "feed.publishes:s", "string 3"),
		`feed.publish:s 3\0z`, `feed.position:s 3\0:1`)
	step("publish after", func() error { _, err := sf.PublishAfter(ctx, "1", []byte("w")); return err },
		with("feed.ids:s", "list[2 3 1 4]", "feed.items:s", "hash{1=x 2=y 3=z 4=w}", "feed.idincr:s", "string 4", "feed.publishes:s", "string 4"),
		`feed.publish:s 4\0w`, `feed.position:s 4\01:`)
	step("edit", func() error { return sf.Edit(ctx, "1", []byte("X")) },
		with("feed.items:s", "hash{1=X 2=y 3=z 4=w}", "feed.publishes:s", "string 5"),
		`feed.publish:s 1\0X`)
	step("move to end", func() error { return sf.Move(ctx, "2", thoonk.Position{Kind: thoonk.PosEnd}) },
		with("feed.ids:s", "list[3 1 4 2]"), `feed.position:s 2\0:end`)
	step("move to begin", func() error { return sf.Move(ctx, "4", thoonk.Position{Kind: thoonk.PosBegin}) },
		with("feed.ids:s", "list[4 3 1 2]"), `feed.position:s 4\0begin:`)
	step("move before", func() error { return sf.Move(ctx, "2", thoonk.Position{Kind: thoonk.PosBefore, Rel: "3"}) },
		with("feed.ids:s", "list[4 2 3 1]"), `feed.position:s 2\0:3`)
	step("move after", func() error { return sf.Move(ctx, "4", thoonk.Position{Kind: thoonk.PosAfter, Rel: "1"}) },
		with("feed.ids:s", "list[2 3 1 4]"), `feed.position:s 4\01:`)
	step("retract sorted", func() error { return sf.Retract(ctx, "3") },
		with("feed.ids:s", "list[2 1 4]", "feed.items:s", "hash{1=X 2=y 4=w}"), `feed.retract:s 3`)

	// queue: no pubsub traffic
	var qid1 string
	step("create queue", func() error { return s.Create(ctx, "q", thoonk.TypeQueue, nil) },
		with("feeds", "set{q s}", "feed.config:q", "hash{type=queue}"),
		`newfeed q\0test-instance`, `conffeed q\0test-instance`)
	step("queue put", func() error { var err error; qid1, err = q.Put(ctx, []byte("m1"), false); return err },
		nil) // checked below: the id is random
	checkKeys("queue put", with("feed.ids:q", "list["+qid1+"]", "feed.items:q", "hash{"+qid1+"=m1}", "feed.publishes:q", "string 1"),
		time.Now().UnixMilli(), time.Now().UnixMilli())
	step("queue get", func() error { _, _, err := q.Get(ctx, time.Second); return err },
		with("feed.ids:q", "", "feed.items:q", ""))

	// job feed
	step("create job feed", func() error { return s.Create(ctx, "j", thoonk.TypeJob, nil) },
		with("feeds", "set{j q s}", "feed.config:j", "hash{type=job}"),
		`newfeed j\0test-instance`, `conffeed j\0test-instance`)
	step("job put", func() error { _, err := j.Put(ctx, []byte("P1"), thoonk.PutOptions{ID: "j1"}); return err },
		with("feed.ids:j", "list[j1]", "feed.items:j", "hash{j1=P1}", "feed.published:j", "zset[j1@T]", "feed.publishes:j", "string 1"))
	step("job put high priority", func() error { _, err := j.Put(ctx, []byte("P2"), thoonk.PutOptions{ID: "j2", High: true}); return err },
		with("feed.ids:j", "list[j1 j2]", "feed.items:j", "hash{j1=P1 j2=P2}", "feed.published:j", "zset[j1@T j2@T]", "feed.publishes:j", "string 2"))
	step("job get claims from the right", func() error {
		jb, err := j.Get(ctx, time.Second)
		expect(t, jb.ID == "j2", "got %s", jb.ID)
		return err
	},
		with("feed.ids:j", "list[j1]", "feed.claimed:j", "zset[j2@T]"))
	step("job finish with result", func() error { return j.FinishWithResult(ctx, "j2", []byte("R")) },
		with("feed.claimed:j", "", "feed.items:j", "hash{j1=P1}", "feed.published:j", "zset[j1@T]", "feed.finishes:j", "string 1"),
		`job.finish:j j2\0R`)
	step("job get", func() error { _, err := j.Get(ctx, time.Second); return err },
		with("feed.ids:j", "", "feed.claimed:j", "zset[j1@T]"))
	step("job cancel", func() error { _, err := j.Cancel(ctx, "j1"); return err },
		with("feed.ids:j", "list[j1]", "feed.claimed:j", "", "feed.cancelled:j", "hash{j1=1}"))
	step("job get again", func() error { _, err := j.Get(ctx, time.Second); return err },
		with("feed.ids:j", "", "feed.claimed:j", "zset[j1@T]"))
	step("job stall", func() error { return j.Stall(ctx, "j1", "") },
		with("feed.claimed:j", "", "feed.cancelled:j", "", "feed.stalled:j", "set{j1}", "feed.published:j", ""))
	step("job retry", func() error { return j.Retry(ctx, "j1") },
		with("feed.stalled:j", "", "feed.ids:j", "list[j1]", "feed.published:j", "zset[j1@T]"))
	step("job finish without result", func() error {
		if _, err := j.Get(ctx, time.Second); err != nil {
			return err
		}
		return j.Finish(ctx, "j1")
	}, with("feed.ids:j", "", "feed.items:j", "", "feed.published:j", "", "feed.finishes:j", "string 2"))
	step("job retract", func() error {
		if _, err := j.Put(ctx, []byte("P3"), thoonk.PutOptions{ID: "j3"}); err != nil {
			return err
		}
		return j.Retract(ctx, "j3")
	}, with("feed.publishes:j", "string 3"))
}

func expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

// dumpKeyspace renders every key as "type value"; zset scores that are
// millisecond times of the last minute up to hi show as T, any other score
// is shown as is.
func dumpKeyspace(t *testing.T, ctx context.Context, rdb *redis.Client, hi int64) map[string]string {
	t.Helper()
	keys, err := rdb.Keys(ctx, "*").Result()
	thoonktest.Must(t, err)
	out := map[string]string{}
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		thoonktest.Must(t, err)
		var v string
		switch typ {
		case "string":
			v = "string " + rdb.Get(ctx, k).Val()
		case "hash":
			h := rdb.HGetAll(ctx, k).Val()
			var parts []string
			for f, x := range h {
				parts = append(parts, f+"="+x)
			}
			slices.Sort(parts)
			v = "hash{" + strings.Join(parts, " ") + "}"
		case "list":
			v = "list[" + strings.Join(rdb.LRange(ctx, k, 0, -1).Val(), " ") + "]"
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			v = "set{" + strings.Join(m, " ") + "}"
		case "zset":
			var parts []string
			for _, z := range rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				sc := strconv.FormatFloat(z.Score, 'f', -1, 64)
				// the history of a zset spans earlier steps: any score from
				// this test's run and in milliseconds is a publish time
				if int64(z.Score) <= hi && int64(z.Score) > hi-60_000 {
					sc = "T"
				}
				parts = append(parts, fmt.Sprint(z.Member)+"@"+sc)
			}
			v = "zset[" + strings.Join(parts, " ") + "]"
		default:
			v = typ
		}
		out[k] = v
	}

	return out
}
