package core_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

type fakeAdapter struct {
	name     string
	startErr error
	runs     atomic.Int32
	run      func(ctx context.Context, n int32) error
	log      *[]string
	mu       *sync.Mutex
}

func (f *fakeAdapter) Name() string { return f.name }
func (f *fakeAdapter) Run(ctx context.Context, hub *core.Hub) error {
	return f.run(ctx, f.runs.Add(1))
}
func (f *fakeAdapter) Start(ctx context.Context, hub *core.Hub) error {
	f.record("start " + f.name)
	return f.startErr
}
func (f *fakeAdapter) Stop() { f.record("stop " + f.name) }
func (f *fakeAdapter) record(s string) {
	f.mu.Lock()
	*f.log = append(*f.log, s)
	f.mu.Unlock()
}

func TestStartAdaptersRollsBack(t *testing.T) {
	var log []string
	var mu sync.Mutex
	mk := func(name string, err error) *fakeAdapter {
		return &fakeAdapter{name: name, startErr: err, log: &log, mu: &mu}
	}
	hub := &core.Hub{}
	err := core.StartAdapters(context.Background(), hub, []core.Adapter{mk("a", nil), mk("b", nil), mk("c", errors.New("boom")), mk("d", nil)})
	if err == nil || err.Error() != "start c: boom" {
		t.Fatalf("err %v", err)
	}
	if want := []string{"start a", "start b", "start c", "stop b", "stop a"}; !slices.Equal(log, want) {
		t.Fatalf("order %v, want %v", log, want)
	}
	if st := hub.States()["c"]; st.State != core.StateStopped || st.LastError != "boom" {
		t.Fatalf("state of the failed adapter %+v", st)
	}
}

func TestRunAdaptersRestartsAFailingAdapter(t *testing.T) {
	var log []string
	var mu sync.Mutex
	steady := &fakeAdapter{name: "steady", log: &log, mu: &mu, run: func(ctx context.Context, n int32) error {
		<-ctx.Done()
		return nil
	}}
	flaky := &fakeAdapter{name: "flaky", log: &log, mu: &mu, run: func(ctx context.Context, n int32) error {
		switch n {
		case 1:
			return errors.New("connection refused")
		case 2:
			panic("bug")
		}
		<-ctx.Done()
		return nil
	}}
	hub := &core.Hub{Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		core.RunAdapters(ctx, hub, []core.Adapter{steady, flaky}, thoonk.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond})
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for flaky.runs.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("flaky ran %d times", flaky.runs.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if steady.runs.Load() != 1 {
		t.Fatalf("the steady adapter was disturbed: %d runs", steady.runs.Load())
	}
	if st := hub.States()["flaky"]; st.State != core.StateRestarting || st.LastError == "" {
		t.Fatalf("flaky state %+v", st)
	}
	cancel()
	<-done
	if st := hub.States()["flaky"]; st.State != core.StateStopped {
		t.Fatalf("after stop %+v", st)
	}
}
