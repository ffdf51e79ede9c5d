package core_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// One process holds a lease at a time; a standby gets it, with a greater
// fencing token, once it is released.
func TestLeaseOneHolderAtATime(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		a := core.NewLeader(b.RDB, "a", time.Second)
		bb := core.NewLeader(b.RDB, "b", time.Second)
		la, _, err := a.TryAcquire(ctx, "xmpp:pubsub.localhost")
		thoonktest.Must(t, err)
		if la == nil || !la.Valid() {
			t.Fatal("a free lease was not acquired")
		}
		lb, left, err := bb.TryAcquire(ctx, "xmpp:pubsub.localhost")
		thoonktest.Must(t, err)
		if lb != nil || left <= 0 || left > time.Second {
			t.Fatalf("a held lease was acquired again: %v, %v left", lb, left)
		}
		again, _, _ := a.TryAcquire(ctx, "xmpp:pubsub.localhost") // the holder renews
		if again == nil || again.Token != la.Token {
			t.Fatalf("the holder's own acquire: %+v", again)
		}
		thoonktest.Must(t, b.RDB.Del(ctx, core.LeaseKeys("xmpp:pubsub.localhost")[0]).Err())
		lb, _, _ = bb.TryAcquire(ctx, "xmpp:pubsub.localhost")
		if lb == nil || lb.Token <= la.Token {
			t.Fatalf("the next holder's token %+v, the first's %d", lb, la.Token)
		}
	})
}

// Lead: the standby takes over at once when the leader stops gracefully,
// and the leader's run ends when its lease is taken from it.
func TestLeadHandsOver(t *testing.T) {
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	a := core.NewLeader(b.RDB, "a", 2*time.Second)
	bb := core.NewLeader(b.RDB, "b", 2*time.Second)
	var leader atomic.Value
	run := func(ld *core.Leader, name string, ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() {
			done <- ld.Lead(ctx, "housekeeping", func() {}, func() {}, func(ctx context.Context, l *core.Lease) error {
				leader.Store(name)
				<-ctx.Done()
				if l.Valid() && ctx.Err() != nil && name == "a" && leader.Load() != name {
					t.Error("a ran on while b led")
				}
				return nil
			})
		}()
		return done
	}
	actx, stopA := context.WithCancel(ctx)
	aDone := run(a, "a", actx)
	waitFor(t, func() bool { return leader.Load() == "a" })
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	bDone := run(bb, "b", bctx)
	time.Sleep(300 * time.Millisecond)
	if leader.Load() != "a" {
		t.Fatal("the standby took a held lease")
	}
	stopped := time.Now()
	stopA() // graceful: a releases and announces; here b polls
	<-aDone
	bb.Released()
	waitFor(t, func() bool { return leader.Load() == "b" })
	if d := time.Since(stopped); d > time.Second {
		t.Errorf("graceful hand-over took %v", d)
	}
	stopB()
	<-bDone
}

// A holder whose renewals stop reaching Redis knows its lease is gone
// before its TTL ends, by its own clock: when another process could take
// the lease in Redis, this one already counts it invalid.
func TestLeaseExpiresByTheHoldersClock(t *testing.T) {
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	const ttl = 600 * time.Millisecond
	ld := core.NewLeader(b.RDB, "a", ttl)
	lost := make(chan struct{})
	go func() {
		_ = ld.Lead(ctx, "irc:net", func() {}, func() {}, func(fctx context.Context, l *core.Lease) error {
			b.Real.Stop() // renewals fail from now on
			gone := time.Now()
			time.Sleep(time.Until(gone.Add(ttl)))
			if l.Valid() {
				t.Error("the lease still counts as valid a TTL after the last renewal could have landed")
			}
			<-fctx.Done() // the run is told
			close(lost)
			<-ctx.Done()
			return nil
		})
	}()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's run never learned its lease was gone")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two processes configured with the same instance id are still two
// holders: one holds the lease, the other waits.
func TestLeaseSameInstanceTwoProcesses(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		one := core.NewLeader(b.RDB, "same", time.Second)
		two := core.NewLeader(b.RDB, "same", time.Second)
		l1, _, err := one.TryAcquire(ctx, "irc:net:bot")
		thoonktest.Must(t, err)
		l2, _, err := two.TryAcquire(ctx, "irc:net:bot")
		thoonktest.Must(t, err)
		if l1 == nil || l2 != nil {
			t.Fatalf("first %v, second %v: want one holder", l1, l2)
		}
	})
}
