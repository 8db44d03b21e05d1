package proxy

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeKernel is a Kernel in memory: it holds one rule per service and
// takes applyTook to apply them; failing makes Apply fail (holding what it
// held).
type fakeKernel struct {
	applyTook time.Duration

	mu      sync.Mutex
	failing error
	rules   int
	applied int
}

var _ Kernel = (*fakeKernel)(nil)

func (k *fakeKernel) Apply(services []Service) error {
	time.Sleep(k.applyTook)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applied++
	if k.failing != nil {
		return k.failing
	}
	k.rules = len(services)
	return nil
}

func (k *fakeKernel) Rules() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rules
}

func (k *fakeKernel) FlushStale()     {}
func (k *fakeKernel) Check() error    { return nil }
func (k *fakeKernel) Teardown() error { return nil }

// fakeSource serves services and signals each change on changed.
type fakeSource struct {
	mu       sync.Mutex
	services []Service
	changed  chan struct{}
}

func (s *fakeSource) Services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.services)
}

func (s *fakeSource) Changed() <-chan struct{} { return s.changed }

func (s *fakeSource) set(services ...Service) {
	s.mu.Lock()
	s.services = services
	s.mu.Unlock()
	s.changed <- struct{}{}
}

// TestRunObserve: RunConfig.Observe is told of every Apply, with what the
// kernel holds after it, how long it took and its error.
func TestRunObserve(t *testing.T) {
	const took = 20 * time.Millisecond
	k := &fakeKernel{applyTook: took}
	src := &fakeSource{services: []Service{{Name: "p/web"}}, changed: make(chan struct{})}
	syncs := make(chan Sync, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, k, src, RunConfig{Resync: time.Hour, Observe: func(s Sync) { syncs <- s }, Log: slog.New(slog.DiscardHandler)})
	}()
	next := func() Sync {
		t.Helper()
		select {
		case s := <-syncs:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no Apply observed")
			return Sync{}
		}
	}
	if s := next(); s.Rules != 1 || s.Took < took || s.Err != nil {
		t.Errorf("first apply: %+v, want 1 rule, at least %v, no error", s, took)
	}
	src.set(Service{Name: "p/web"}, Service{Name: "p/db"}, Service{Name: "p/cache"})
	if s := next(); s.Rules != 3 || s.Took < took || s.Err != nil {
		t.Errorf("apply of 3 services: %+v, want 3 rules, at least %v, no error", s, took)
	}
	failed := errors.New("netlink says no")
	k.mu.Lock()
	k.failing = failed
	k.mu.Unlock()
	src.set()
	if s := next(); s.Rules != 3 || !errors.Is(s.Err, failed) {
		t.Errorf("failed apply: %+v, want the 3 rules held before and its error", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := len(syncs); n != 0 {
		t.Errorf("%d more applies observed than made", n)
	}
}

// TestRulesetSize: a plan counts its set and map elements and its chains.
func TestRulesetSize(t *testing.T) {
	tests := []struct {
		name     string
		services []Service
		want     int
	}{
		{name: "nothing", want: 0},
		{name: "vip without endpoints", services: []Service{{Name: "p/web", VIP: ptAddr("10.96.0.1")}}, want: 1},
		{
			// vip, 2 hairpin endpoints, the service-ip element, its chain
			name: "vip with endpoints",
			services: []Service{{Name: "p/web", VIP: ptAddr("10.96.0.1"),
				Endpoints: []Endpoint{ptEP("10.0.0.1", true), ptEP("10.0.0.2", false)}}},
			want: 5,
		},
		{
			// + the node-ports element and its chain
			name: "vip, endpoint and a published port",
			services: []Service{{Name: "p/web", VIP: ptAddr("10.96.0.1"),
				Endpoints: []Endpoint{ptEP("10.0.0.1", true)},
				Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := planRules(tt.services)
			if err != nil {
				t.Fatal(err)
			}
			if got := rs.size(); got != tt.want {
				t.Errorf("size = %d, want %d", got, tt.want)
			}
		})
	}
	if got := (*ruleset)(nil).size(); got != 0 {
		t.Errorf("size of no ruleset = %d, want 0", got)
	}
}
