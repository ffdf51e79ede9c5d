package core

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// A lease makes one process of a fleet the leader of a stateful
// connection (an XMPP component, an IRC network) or of work done once per
// fleet. It lives in Redis, the fleet's only coordinator:
//
//	feedbridge.lease:{H}        "TOKEN OWNER NAME", expiring after the TTL
//	feedbridge.lease.fence:{H}  the last token handed out (never expires)
//
// H is a hash of the lease's name, so both keys share a Cluster slot. A
// process acquires the lease when it is free, with a new fencing token (a
// number that only grows), renews it well inside its TTL, and releases it
// on a graceful stop, announcing that on the feedbridge.lease channel so
// that a standby takes over at once. Each holder counts its own lease as
// valid only until its last successful renewal plus the TTL, minus a
// margin: by its monotonic clock, a process paused past that (SIGSTOP, a
// long GC, a VM freeze) knows it lost the lease before any other process
// can have acquired it, and checks Valid before every write to the
// protocol server. Fencing tokens let state in Redis refuse writes of an
// earlier holder.

// LeaseChannel is the pubsub channel on which released leases are announced.
const LeaseChannel = "feedbridge.lease"

const (
	leasePrefix = "feedbridge.lease:"
	fencePrefix = "feedbridge.lease.fence:"
	// leaseMarginPart: a holder stops counting on its lease a sixth of
	// the TTL before the TTL ends, for the clocks of Redis and the holder
	// to differ.
	leaseMarginPart = 6
)

// acquire: KEYS lease, fence; ARGV owner, ttl ms, name.
// Replies {token, 1} when the caller holds the lease (acquired or already
// its own: renewed), else {token of the holder, remaining ms}.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local tok, owner = string.match(cur, '^(%d+) (%S+)')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(tok), 1}
  end
  return {tonumber(tok), -redis.call('PTTL', KEYS[1])}
end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tok .. ' ' .. ARGV[1] .. ' ' .. ARGV[3], 'PX', ARGV[2])
return {tok, 1}
`)

// renew: KEYS lease; ARGV token, owner, ttl ms. Replies 1 when renewed.
var renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local tok, owner = string.match(cur, '^(%d+) (%S+)')
if tok ~= ARGV[1] or owner ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// release: KEYS lease; ARGV token, owner, name. Replies 1 when released.
var releaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local tok, owner = string.match(cur, '^(%d+) (%S+)')
if tok ~= ARGV[1] or owner ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', '` + LeaseChannel + `', ARGV[3])
return 1
`)

// leaseKeys returns the lease and fence keys of a lease name.
func leaseKeys(name string) []string {
	h := sha1.Sum([]byte(name))
	tag := "{" + hex.EncodeToString(h[:8]) + "}"
	return []string{leasePrefix + tag, fencePrefix + tag}
}

// Lease is one process's hold on a named lease, valid until Lost closes.
type Lease struct {
	// Name is the lease's name ("xmpp:pubsub.example.org").
	Name string
	// Token is the fencing token of this hold: greater than every earlier
	// holder's.
	Token int64

	mu    sync.Mutex
	until time.Time // monotonic: valid before this
	lost  chan struct{}
	once  sync.Once
}

// Valid reports whether the lease still holds by this process's clock:
// check it right before every write a standby must not duplicate.
func (l *Lease) Valid() bool {
	if l == nil {
		return true // no lease: a process alone
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.until)
}

// Lost is closed once the lease no longer holds.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) extend(until time.Time) {
	l.mu.Lock()
	if until.After(l.until) {
		l.until = until
	}
	l.mu.Unlock()
}

func (l *Lease) lose() { l.once.Do(func() { close(l.lost) }) }

// Leader holds leases for this process.
type Leader struct {
	rdb   redis.UniversalClient
	owner string
	ttl   time.Duration

	mu sync.Mutex
	// wakes are poked when a lease is released somewhere (LeaseChannel).
	wakes []chan struct{}
	// held are the leases this process holds now.
	held map[string]*Lease
}

// Holds reports whether this process holds the named lease now (and it
// is valid).
func (ld *Leader) Holds(name string) bool {
	ld.mu.Lock()
	l := ld.held[name]
	ld.mu.Unlock()
	return l != nil && l.Valid()
}

// NewLeader returns a lease holder for the process owner (its instance
// id) with leases of the given TTL. The holder's name is the owner plus
// a random suffix of this process, so two processes given the same
// instance id never take each other's leases for their own.
func NewLeader(rdb redis.UniversalClient, owner string, ttl time.Duration) *Leader {
	return &Leader{rdb: rdb, owner: strings.ReplaceAll(owner, " ", "_") + "/" + thoonk.NewID()[:8], ttl: ttl}
}

// TTL returns the leases' time to live.
func (ld *Leader) TTL() time.Duration { return ld.ttl }

// Released tells waiting standbys that some lease was released (the
// runtime calls it for each message on LeaseChannel).
func (ld *Leader) Released() {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	for _, w := range ld.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (ld *Leader) waker() (chan struct{}, func()) {
	w := make(chan struct{}, 1)
	ld.mu.Lock()
	ld.wakes = append(ld.wakes, w)
	ld.mu.Unlock()
	return w, func() {
		ld.mu.Lock()
		defer ld.mu.Unlock()
		for i, x := range ld.wakes {
			if x == w {
				ld.wakes = append(ld.wakes[:i], ld.wakes[i+1:]...)
				return
			}
		}
	}
}

// TryAcquire takes the lease when it is free (or already this process's);
// it returns nil, with how long the current holder's lease still runs,
// when another process holds it.
func (ld *Leader) TryAcquire(ctx context.Context, name string) (*Lease, time.Duration, error) {
	sent := time.Now()
	vals, err := acquireScript.Run(ctx, ld.rdb, leaseKeys(name), ld.owner, ld.ttl.Milliseconds(), name).Int64Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("lease %s: %w", name, err)
	}
	if vals[1] != 1 {
		return nil, time.Duration(-vals[1]) * time.Millisecond, nil
	}
	l := &Lease{Name: name, Token: vals[0], lost: make(chan struct{})}
	l.extend(sent.Add(ld.ttl - ld.ttl/leaseMarginPart))
	return l, 0, nil
}

// renew extends a held lease; false when it is no longer this process's.
func (ld *Leader) renew(ctx context.Context, l *Lease) (bool, error) {
	sent := time.Now()
	n, err := renewScript.Run(ctx, ld.rdb, leaseKeys(l.Name)[:1], l.Token, ld.owner, ld.ttl.Milliseconds()).Int()
	if err != nil {
		return false, err
	}
	if n == 1 {
		l.extend(sent.Add(ld.ttl - ld.ttl/leaseMarginPart))
	}
	return n == 1, nil
}

// release gives a held lease up and announces it.
func (ld *Leader) release(ctx context.Context, l *Lease) error {
	return releaseScript.Run(ctx, ld.rdb, leaseKeys(l.Name)[:1], l.Token, ld.owner, l.Name).Err()
}

// ErrLeaseLost ends a leader's run when its lease no longer holds.
var ErrLeaseLost = errors.New("lease lost")

// Lead runs fn while this process holds the named lease, and waits as a
// standby while another process does, until ctx ends. standby and leader
// are called on each change of role. fn's context ends when the lease is
// lost (not renewed in time: fn must stop writing at once, see
// Lease.Valid) or ctx ends; the lease is then released, so that a standby
// takes over at once. When fn returns an error while the lease holds,
// Lead returns it (the lease is released first).
func (ld *Leader) Lead(ctx context.Context, name string, standby, leader func(), fn func(ctx context.Context, l *Lease) error) error {
	wake, unwake := ld.waker()
	defer unwake()
	wasStandby := false
	for ctx.Err() == nil {
		l, left, err := ld.TryAcquire(ctx, name)
		if err != nil || l == nil {
			if !wasStandby && err == nil {
				wasStandby = true
				standby()
			}
			// poll a few times per TTL, sooner when a lease is released
			d := min(ld.ttl/4, max(left, ld.ttl/10))
			d = d/2 + rand.N(d/2+1)
			select {
			case <-ctx.Done():
			case <-wake:
			case <-time.After(d):
			}
			continue
		}
		wasStandby = false
		leader()
		err = ld.hold(ctx, l, fn)
		if err != nil && !errors.Is(err, ErrLeaseLost) && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

// hold runs fn under a held lease, renewing it every third of the TTL.
func (ld *Leader) hold(ctx context.Context, l *Lease, fn func(ctx context.Context, l *Lease) error) error {
	ld.mu.Lock()
	if ld.held == nil {
		ld.held = map[string]*Lease{}
	}
	ld.held[l.Name] = l
	ld.mu.Unlock()
	defer func() {
		ld.mu.Lock()
		delete(ld.held, l.Name)
		ld.mu.Unlock()
	}()
	fctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer l.lose()
		t := time.NewTicker(ld.ttl / 3)
		defer t.Stop()
		for {
			l.mu.Lock()
			left := time.Until(l.until)
			l.mu.Unlock()
			// the lease is lost when its validity runs out before a renewal lands
			expire := time.NewTimer(max(left, 0))
			select {
			case <-fctx.Done():
				expire.Stop()
				return
			case <-expire.C:
				cancel(ErrLeaseLost)
				return
			case <-t.C:
				expire.Stop()
			}
			rctx, rcancel := context.WithTimeout(fctx, ld.ttl/3)
			ok, err := ld.renew(rctx, l)
			rcancel()
			if err == nil && !ok {
				cancel(ErrLeaseLost)
				return
			}
		}
	})
	err := fn(fctx, l)
	cancel(nil)
	wg.Wait()
	if l.Valid() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = ld.release(rctx, l)
		rcancel()
	}
	if errors.Is(context.Cause(fctx), ErrLeaseLost) {
		return ErrLeaseLost
	}
	return err
}

// LeaseName returns the name of a lease held per deployment of a thing:
// kind and the thing's parts, joined by ':' ("irc:irc.example.org:6697:feedbot").
func LeaseName(kind string, parts ...string) string {
	return kind + ":" + strings.Join(parts, ":")
}
