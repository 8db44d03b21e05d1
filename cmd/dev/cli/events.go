package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// eventsClient is what `dev events` needs of the API.
type eventsClient interface {
	Events(ctx context.Context, index uint64, wait time.Duration) (api.EventList, error)
}

var _ eventsClient = (*api.HTTPClient)(nil)

// eventsWait is how long one blocking query of `dev events -f` waits.
const eventsWait = 30 * time.Second

type eventsOptions struct {
	follow bool
	output string
}

// NewEventsCommand is `dev events`.
func NewEventsCommand(g *globals) *cobra.Command {
	var o eventsOptions
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show recent cluster events: pods placed, started, failed or rescheduled, nodes down, services scaled",
		Long: "Show the events the agent has seen since it started, oldest first: pods scheduled, started,\n" +
			"restarted, failed, unhealthy, rescheduled after losing their node, removed; services created,\n" +
			"scaled and removed; nodes joining, going down, coming back and leaving. Warnings are the\n" +
			"events to look at. With -f, keep printing new events until Ctrl-C.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			return runEvents(ctx, c, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing new events until Ctrl-C")
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json (one object per line)")
	return cmd
}

// runEvents prints the events the agent has and, with follow, the new ones
// as they come, until ctx ends.
func runEvents(ctx context.Context, c eventsClient, o eventsOptions, stdout, stderr io.Writer) error {
	l, err := c.Events(ctx, 0, 0)
	if err != nil {
		return fmt.Errorf("list events: %w", err)
	}
	p := &eventPrinter{w: stdout, json: o.output == "json", now: time.Now}
	if len(l.Events) == 0 && !o.follow && !p.json {
		fmt.Fprintln(stderr, "No events yet.")
		return nil
	}
	if err := p.print(l.Events, o.follow); err != nil {
		return err
	}
	index := nextIndex(l)
	for o.follow {
		l, err := c.Events(ctx, index, eventsWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			return fmt.Errorf("follow events: %w", err)
		}
		if err := p.print(l.Events, true); err != nil {
			return err
		}
		index = max(index, nextIndex(l))
	}
	return nil
}

// nextIndex is the ?index= that asks for the events after l.
func nextIndex(l api.EventList) uint64 {
	idx := l.Index
	if n := len(l.Events); n > 0 {
		idx = max(idx, l.Events[n-1].Index)
	}
	return idx
}

// eventPrinter prints events as a table whose columns only ever widen (so
// that rows printed later while following stay aligned), or as JSON
// objects, one per line.
type eventPrinter struct {
	w      io.Writer
	json   bool
	now    func() time.Time
	header bool
	widths [5]int // TIME, TYPE, REASON, OBJECT, NODE; MESSAGE is last
}

var eventColumns = [6]string{"TIME", "TYPE", "REASON", "OBJECT", "NODE", "MESSAGE"}

// eventMinWidths fit a time of day, "Warning", "Rescheduled", a typical
// pod and a node name, so that followed rows rarely outgrow the header.
var eventMinWidths = [5]int{8, 7, 11, 24, 8}

// print writes evs; with header, the table header is written even when
// there are no events (so that a follower sees the columns at once).
func (p *eventPrinter) print(evs []api.Event, header bool) error {
	if p.json {
		enc := json.NewEncoder(p.w)
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("print event: %w", err)
			}
		}
		return nil
	}
	rows := make([][6]string, 0, len(evs))
	for _, e := range evs {
		rows = append(rows, p.row(e))
	}
	var b strings.Builder
	if !p.header {
		if len(rows) == 0 && !header {
			return nil
		}
		// Size the columns on the first rows, then print the header once.
		p.widths = eventMinWidths
		p.widen(eventColumns)
		for _, r := range rows {
			p.widen(r)
		}
		p.header = true
		p.line(&b, eventColumns)
	}
	for _, r := range rows {
		p.widen(r)
		p.line(&b, r)
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

func (p *eventPrinter) row(e api.Event) [6]string {
	typ := "Normal"
	if e.Warning {
		typ = "Warning"
	}
	node := e.Node
	if node == "" {
		node = "-"
	}
	return [6]string{p.when(e.Time), typ, e.Reason, e.Kind + "/" + e.Name, node, e.Message}
}

// when is the local time of day, with the date when it is not today.
func (p *eventPrinter) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t = t.Local()
	ny, nm, nd := p.now().Local().Date()
	if y, m, d := t.Date(); y == ny && m == nm && d == nd {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

func (p *eventPrinter) widen(r [6]string) {
	for i := range p.widths {
		p.widths[i] = max(p.widths[i], len(r[i]))
	}
}

func (p *eventPrinter) line(b *strings.Builder, r [6]string) {
	for i, w := range p.widths {
		fmt.Fprintf(b, "%-*s  ", w, r[i])
	}
	b.WriteString(r[5])
	b.WriteByte('\n')
}
