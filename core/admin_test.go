package core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// An operator sees a stalled job with its failures and last error, and
// only an actor granted admin may retry or drop it.
func TestAdminStalledJobs(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "q", thoonk.TypeJob, map[string]string{thoonk.ConfigJobRetries: "0"})
		jobs := b.Store.Jobs("q")
		stall := func(item string) string {
			id, err := jobs.Put(ctx, []byte(item), thoonk.PutOptions{RecordTTL: time.Minute, Submitter: "rest:alice"})
			thoonktest.Must(t, err)
			j, err := jobs.Get(ctx, time.Second)
			thoonktest.Must(t, err)
			if cr, err := jobs.Cancel(ctx, j.ID); err != nil || !cr.Stalled {
				t.Fatalf("cancel over the limit: %+v %v", cr, err)
			}
			return id
		}
		first, second := stall("one"), stall("two")
		// a worker recorded why it failed (the exactly-once worker's field)
		thoonktest.Must(t, b.Store.Client().HSet(ctx, "feedbridge.job:q:"+first, "last_error", "boom").Err())
		acl := core.MustACL(
			core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}},
			core.ACLRule{Actors: []string{"console:ops"}, Feeds: []string{"q"}, Allow: []string{"admin"}},
		)
		a := core.NewAdmin(b.Store, acl, nil)
		ops, reader := core.Actor{Protocol: "console", ID: "ops"}, core.Actor{Protocol: "console", ID: core.Anonymous}
		list, total, err := a.Stalled(ctx, reader, "q", 10)
		thoonktest.Must(t, err)
		if total != 2 || len(list) != 2 {
			t.Fatalf("stalled %d %+v", total, list)
		}
		for _, j := range list {
			if j.ID == first && (j.LastError != "boom" || string(j.Item) != "one" || j.Submitter != "rest:alice") {
				t.Fatalf("first stalled job %+v", j)
			}
		}
		if err := a.Retry(ctx, reader, "q", first); !errors.Is(err, core.ErrDenied) {
			t.Fatalf("retry without admin: %v", err)
		}
		if err := a.Drop(ctx, reader, "q", first); !errors.Is(err, core.ErrDenied) {
			t.Fatalf("drop without admin: %v", err)
		}
		thoonktest.Must(t, a.Retry(ctx, ops, "q", first))
		if st, _ := jobs.State(ctx, first); st.State != thoonk.JobQueued {
			t.Fatalf("retried job is %s", st.State)
		}
		if err := a.Drop(ctx, ops, "q", first); !errors.Is(err, thoonk.ErrNotStalled) {
			t.Fatalf("dropping a job that is not stalled: %v", err)
		}
		thoonktest.Must(t, a.Drop(ctx, ops, "q", second))
		if _, err := jobs.Item(ctx, second); !errors.Is(err, thoonk.ErrNotFound) {
			t.Fatalf("dropped job still there: %v", err)
		}
		if _, total, _ := a.Stalled(ctx, reader, "q", 10); total != 0 {
			t.Fatalf("%d stalled after retry and drop", total)
		}
	})
}

// An ACL operation that is none of the known ones is a typo: the config
// names it, with the nearest known operation; declared verbs pass.
func TestACLRejectsUnknownOperations(t *testing.T) {
	_, err := load(t, "acl:\n  - actors: [\"*\"]\n    feeds: [\"*\"]\n    allow: [raed, ship, admin]\n")
	if err == nil {
		t.Fatal("allow: [raed] accepted")
	}
	for _, want := range []string{
		`bridge.yaml:4: acl[0].allow[0]: "raed" is not an operation (did you mean "read"?)`,
		`bridge.yaml:4: acl[0].allow[1]: "ship" is not an operation: use read, admin, publish, edit, retract, move, *, or declare the custom verb in actions.verbs`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = load(t, "actions:\n  verbs: [ship]\n  routes: [{verbs: [stamp], queue: app}]\nacl:\n  - actors: [\"*\"]\n    feeds: [\"*\"]\n    allow: [read, ship, stamp, admin]\n")
	thoonktest.Must(t, err)
	_, err = load(t, "actions:\n  verbs: [publish]\n")
	if err == nil || !strings.Contains(err.Error(), `actions.verbs[0]: "publish" is a built-in operation`) {
		t.Fatalf("a built-in verb declared as custom: %v", err)
	}
}
