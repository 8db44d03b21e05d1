package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress shows one line per item (pod or service) with its current status
// and the time since the item appeared: live lines on a terminal, plain lines
// on each change otherwise.
type progress interface {
	// Set updates an item's status; done marks it finished.
	Set(id, status string, done bool)
	// Close finishes the display.
	Close()
}

func newProgress(w io.Writer) progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newLiveProgress(w)
	}
	return &plainProgress{w: w, last: map[string]string{}, start: map[string]time.Time{}}
}

// discardProgress shows nothing (a verb that prints its own lines).
type discardProgress struct{}

func (discardProgress) Set(string, string, bool) {}
func (discardProgress) Close()                   {}

// plainProgress prints "id  status (1.2s)" whenever an item's status changes.
type plainProgress struct {
	mu    sync.Mutex
	w     io.Writer
	last  map[string]string
	start map[string]time.Time
}

func (p *plainProgress) Set(id, status string, _ bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.start[id]; !ok {
		p.start[id] = time.Now()
	}
	if p.last[id] == status {
		return
	}
	p.last[id] = status
	fmt.Fprintf(p.w, "%-24s %s (%.1fs)\n", id, status, time.Since(p.start[id]).Seconds())
}

func (p *plainProgress) Close() {}

// liveProgress renders one mpb line per item.
type liveProgress struct {
	mu     sync.Mutex
	p      *mpb.Progress
	bars   map[string]*mpb.Bar
	status map[string]*atomic.Pointer[string] // read by mpb's render goroutine
}

func newLiveProgress(w io.Writer) *liveProgress {
	return &liveProgress{
		p:      mpb.New(mpb.WithOutput(w), mpb.WithWidth(1), mpb.WithRefreshRate(120*time.Millisecond)),
		bars:   map[string]*mpb.Bar{},
		status: map[string]*atomic.Pointer[string]{},
	}
}

func (l *liveProgress) Set(id, status string, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.status[id]
	if !ok {
		st = new(atomic.Pointer[string])
		st.Store(&status)
		l.status[id] = st
		l.bars[id] = l.p.New(1, mpb.NopStyle(),
			mpb.PrependDecorators(
				decor.Name(id, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { return *st.Load() }, decor.WCSyncSpaceR),
				decor.Elapsed(decor.ET_STYLE_GO),
			),
		)
	}
	st.Store(&status)
	if done {
		l.bars[id].SetCurrent(1)
	}
}

func (l *liveProgress) Close() {
	l.mu.Lock()
	ids := make([]string, 0, len(l.bars))
	for id := range l.bars {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if b := l.bars[id]; !b.Completed() {
			b.Abort(false)
		}
	}
	l.mu.Unlock()
	l.p.Wait()
}
