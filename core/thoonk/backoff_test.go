package thoonk_test

import (
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

func TestBackoff(t *testing.T) {
	b := thoonk.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for attempt, hi := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		hi *= time.Millisecond
		for range 50 {
			d := b.Delay(attempt)
			if d < hi/2 || d > hi {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, hi/2, hi)
			}
		}
	}
}
