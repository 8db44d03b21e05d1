package proxy

import (
	"sync"
)

// Fake is a Kernel that keeps the planned rules in memory, for tests of the
// code that feeds the data path.
type Fake struct {
	mu       sync.Mutex
	services []Service
	rules    *ruleset
	applies  int
	torn     bool
}

var _ Kernel = (*Fake)(nil)

// Apply implements Kernel: it plans the rules as the real one does.
func (f *Fake) Apply(services []Service) error {
	rs, err := planRules(services)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services, f.rules, f.torn = services, rs, false
	f.applies++
	return err
}

// FlushStale implements Kernel.
func (f *Fake) FlushStale() {}

// Check implements Kernel.
func (f *Fake) Check() error { return nil }

// Teardown implements Kernel.
func (f *Fake) Teardown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services, f.rules, f.torn = nil, nil, true
	return nil
}

// Services returns what the last Apply was given.
func (f *Fake) Services() []Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.services
}

// TornDown reports whether Teardown ran after the last Apply.
func (f *Fake) TornDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.torn
}
