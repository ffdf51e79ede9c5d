package core

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRateLimiterAllow(t *testing.T) {
	l := NewRateLimiter(10)
	slow := Rate{Rate: 0.5, Burst: 2} // one request every 2s after the burst
	for i := range 2 {
		if ok, _ := l.Allow("ip:a", slow); !ok {
			t.Fatalf("request %d of a burst of 2 refused", i+1)
		}
	}
	ok, wait := l.Allow("ip:a", slow)
	if ok || wait <= 0 || wait > 2*time.Second {
		t.Fatalf("third request: allowed %v, retry after %v; want refused with at most 2s", ok, wait)
	}
	if ok, _ := l.Allow("ip:b", slow); !ok {
		t.Fatal("another key shares the first key's bucket")
	}
	for range 100 {
		if ok, _ := l.Allow("ip:a", Rate{}); !ok {
			t.Fatal("a zero rate refused a request")
		}
	}
}

func TestRateLimiterBound(t *testing.T) {
	l := NewRateLimiter(3)
	exhausted := Rate{Rate: 0.001, Burst: 1}
	if ok, _ := l.Allow("busy", exhausted); !ok {
		t.Fatal("first request refused")
	}
	for i := range 1000 {
		// buckets that refill at once are full again by the next call:
		// they are the first to go
		l.Allow(fmt.Sprint("idle-", i), Rate{Rate: 1e9, Burst: 1})
		if n := len(l.m); n > 3 {
			t.Fatalf("after %d keys the limiter keeps %d buckets, bound 3", i+2, n)
		}
	}
	if ok, _ := l.Allow("busy", exhausted); ok {
		t.Fatal("an exhausted bucket was dropped while refilled ones could go: its client got a fresh burst")
	}
	for i := range 10 { // all exhausted: arbitrary ones go, the bound holds
		l.Allow(fmt.Sprint("busy-", i), exhausted)
		l.Allow(fmt.Sprint("busy-", i), exhausted)
		if n := len(l.m); n > 3 {
			t.Fatalf("the limiter keeps %d buckets, bound 3", n)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Nanosecond: "1", time.Second: "1", 1200 * time.Millisecond: "2", 59 * time.Second: "59"} {
		if got := RetryAfter(d); got != want {
			t.Errorf("RetryAfter(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRateAndProxyValidation(t *testing.T) {
	sec := &Section{File: "bridge.yaml", Path: "atom"}
	if err := (Rate{Rate: 0}).Validate(sec, "rate_limit.per_ip"); err != nil {
		t.Fatalf("rate 0 (off) refused: %v", err)
	}
	err := (Rate{Rate: -1, Burst: 0}).Validate(sec, "rate_limit.per_ip")
	if err == nil || !strings.Contains(err.Error(), "atom.rate_limit.per_ip.rate") {
		t.Fatalf("negative rate: %v", err)
	}
	if err := (Rate{Rate: 5}).Validate(sec, "rate_limit.per_ip"); err == nil || !strings.Contains(err.Error(), "atom.rate_limit.per_ip.burst") {
		t.Fatalf("rate without burst: %v", err)
	}
	if err := ValidateTrustedProxies([]string{"10.0.0.0/8", "::1", "192.0.2.7"}, sec, "trusted_proxies"); err != nil {
		t.Fatalf("valid proxies refused: %v", err)
	}
	err = ValidateTrustedProxies([]string{"10.0.0.1", "proxy.example", "10.0.0.0/33"}, sec, "trusted_proxies")
	if err == nil || !strings.Contains(err.Error(), "atom.trusted_proxies[1]") || !strings.Contains(err.Error(), "atom.trusted_proxies[2]") ||
		strings.Contains(err.Error(), "trusted_proxies[0]") {
		t.Fatalf("bad proxies: %v", err)
	}
}
