// Command peers compares dev with its peers on this machine's Docker Engine:
// docker-compose 1.29, swarm (docker stack deploy) and "raw" (the same
// containers created and started with parallel Engine API calls, the
// limit) and "raw-pod" (the same, with each replica an infra container and
// the app container joining it: the Engine's work for a dev pod). Each does the same work from the same local image: bring N
// services up, scale one service, re-deploy a file with one service changed.
// Every figure is appended as a results.Record to <results.Dir()>/peers.jsonl
// and a summary table (median, spread, ratios to raw and raw-pod) is printed at the end.
//
// Usage (root; a Docker Engine; bin/dev built with `make build`):
//
//	go run ./bench/peers [-runs 5] [-quick] [-dev bin/dev] [-tools dev,docker-compose,raw,raw-pod,swarm]
//	                     [-measures up,scale,reup] [-healthcheck] [-op-timeout 3m] [-timeout 25m] [-out FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/client"

	"github.com/devhq/dev/bench/results"
	"github.com/devhq/dev/test/testimage"
)

type config struct {
	devBin    string
	runs      int
	quick     bool
	out       string
	tools     []string
	measures  []string
	image     string
	health    bool
	opTimeout time.Duration
	timeout   time.Duration
}

var allTools = []string{"dev", "docker-compose", "raw", "raw-pod", "swarm"}

type bench struct {
	cfg         config
	dc          *client.Client
	work        string
	publishPort int
	imageID     string

	lastDown time.Duration // of the last teardown, for the log

	recs      []results.Record
	failures  []string
	notes     []string // shown under the summary
	caseOrder []string
}

func main() { os.Exit(run()) }

func run() int {
	log.SetFlags(log.Ltime)
	log.SetPrefix("peers: ")
	var cfg config
	var tools, measures string
	flag.StringVar(&cfg.devBin, "dev", "bin/dev", "dev binary (relative paths from the repository root)")
	flag.IntVar(&cfg.runs, "runs", 5, "runs of each case per tool")
	flag.BoolVar(&cfg.quick, "quick", false, "1 run and small sizes (up: 1, 3 services; scale: 1->3), about a minute, for CI")
	flag.StringVar(&cfg.out, "out", "", "results file (default <results.Dir()>/peers.jsonl)")
	flag.StringVar(&tools, "tools", strings.Join(allTools, ","), "tools to compare")
	flag.StringVar(&measures, "measures", "up,scale,reup", "measures to take")
	flag.StringVar(&cfg.image, "image", "devpeers-testapp:bench", "tag of the test image to build and run")
	flag.BoolVar(&cfg.health, "healthcheck", false, "give every service a healthcheck (every 1 s) and wait until healthy")
	flag.DurationVar(&cfg.opTimeout, "op-timeout", 3*time.Minute, "limit of each operation (an up, a scale, a down)")
	flag.DurationVar(&cfg.timeout, "timeout", 25*time.Minute, "limit of the whole run (cleanup comes after it)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "peers: no arguments expected; see -h")
		return 2
	}
	if cfg.quick {
		cfg.runs = 1
		if cfg.timeout > 5*time.Minute {
			cfg.timeout = 5 * time.Minute
		}
	}
	if cfg.runs < 1 {
		fmt.Fprintln(os.Stderr, "peers: -runs must be at least 1")
		return 2
	}
	cfg.tools = splitList(tools)
	cfg.measures = splitList(measures)
	for _, t := range cfg.tools {
		if !slices.Contains(allTools, t) {
			fmt.Fprintf(os.Stderr, "peers: unknown tool %q (want some of %s)\n", t, strings.Join(allTools, ","))
			return 2
		}
	}
	for _, m := range cfg.measures {
		if !slices.Contains([]string{"up", "scale", "reup"}, m) {
			fmt.Fprintf(os.Stderr, "peers: unknown measure %q (want some of up,scale,reup)\n", m)
			return 2
		}
	}
	root := repoRoot()
	if !filepath.IsAbs(cfg.devBin) {
		cfg.devBin = filepath.Join(root, cfg.devBin)
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(results.Dir(), "peers.jsonl")
	}

	// The first SIGINT/SIGTERM cancels the run, whose cleanups then still
	// run; a second one kills the program.
	sigCtx, cancelSig := context.WithCancelCause(context.Background())
	defer cancelSig(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Printf("%v: stopping and cleaning up (a second signal kills without cleaning up)", s)
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancelSig(fmt.Errorf("%v", s))
	}()
	ctx, cancel := context.WithTimeoutCause(sigCtx, cfg.timeout, fmt.Errorf("the whole run took longer than -timeout %s", cfg.timeout))
	defer cancel()

	b := &bench{cfg: cfg}
	err := b.run(ctx)
	if err != nil {
		b.fail(err.Error())
	}
	b.summary(os.Stdout)
	if len(b.failures) > 0 {
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// repoRoot is the nearest directory above the working directory with a go.mod.
func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return wd
		}
	}
}

func (b *bench) fail(msg string) {
	log.Printf("FAILED: %s", msg)
	b.failures = append(b.failures, msg)
}

func (b *bench) write(recs []results.Record) {
	if len(recs) == 0 {
		return
	}
	if err := results.Append(b.cfg.out, recs...); err != nil {
		b.fail(err.Error())
	}
	b.recs = append(b.recs, recs...)
}

func (b *bench) wants(tool string) bool { return slices.Contains(b.cfg.tools, tool) }
func (b *bench) measures(m string) bool { return slices.Contains(b.cfg.measures, m) }
func cleanupCtx() (context.Context, func()) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

// cases returns the cases to run, in order, for tools that can do them.
func (b *bench) cases(swarmPhase bool) []benchCase {
	ups, scales := []int{1, 10, 30}, []int{1, 20, 50}
	if b.cfg.quick {
		ups, scales = []int{1, 3}, []int{1, 3}
	}
	var cs []benchCase
	if b.measures("up") {
		for _, n := range ups {
			cs = append(cs, b.upCase(n))
		}
	}
	if b.measures("scale") {
		cs = append(cs, b.scaleCase(scales...))
	}
	if b.measures("reup") && !swarmPhase {
		cs = append(cs, b.reupCase())
	}
	return cs
}

func (b *bench) run(ctx context.Context) error {
	start := time.Now()
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer dc.Close()
	b.dc = dc
	if _, err := dc.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine: %w (is dockerd running?)", err)
	}
	b.work, err = os.MkdirTemp("", "devpeers-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(b.work)

	log.Printf("building test image %s", b.cfg.image)
	bctx, bcancel := context.WithTimeout(ctx, 3*time.Minute)
	err = testimage.Build(bctx, dc, b.cfg.image)
	bcancel()
	if err != nil {
		return fmt.Errorf("build test image: %w", err)
	}
	img, err := dc.ImageInspect(ctx, b.cfg.image)
	if err != nil {
		return fmt.Errorf("inspect test image: %w", err)
	}
	b.imageID = img.ID
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	b.publishPort = ports[0]
	for _, c := range b.cases(false) {
		b.caseOrder = append(b.caseOrder, c.names...)
	}

	// Phase 1: dev, docker-compose and raw, interleaved run by run.
	var tools []tool
	if b.wants("dev") {
		t, err := newDevTool(ctx, b.cfg.devBin, b.work, b.cfg.image, dc, b.cfg.opTimeout)
		if err != nil {
			return err
		}
		defer func() { c, cancel := cleanupCtx(); defer cancel(); t.Cleanup(c) }()
		tools = append(tools, t)
	}
	if b.wants("docker-compose") {
		t, err := newComposeTool(b.work, b.cfg.image, dc)
		if err != nil {
			return err
		}
		defer func() { c, cancel := cleanupCtx(); defer cancel(); t.Cleanup(c) }()
		tools = append(tools, t)
	}
	if b.wants("raw") || b.wants("raw-pod") {
		// One network for both; raw-pod is raw making pods.
		t, err := newRawTool(ctx, dc, b.cfg.image)
		if err != nil {
			return err
		}
		defer func() { c, cancel := cleanupCtx(); defer cancel(); t.Cleanup(c) }()
		if b.wants("raw") {
			tools = append(tools, t)
		}
		if b.wants("raw-pod") {
			tools = append(tools, &rawTool{dc: dc, image: b.cfg.image, pods: true})
		}
	}
	if len(tools) > 0 {
		b.warmUp(ctx, tools)
		var reup []tool
		for _, t := range tools {
			if !strings.HasPrefix(t.Name(), "raw") {
				reup = append(reup, t)
			}
		}
		for _, c := range b.cases(false) {
			ts := tools
			if c.measure == "reup" {
				ts = reup
			}
			b.runCases(ctx, []benchCase{c}, ts)
		}
		if b.measures("reup") && b.wants("raw") {
			b.notes = append(b.notes, "reup: not measured for raw (it has no notion of a changed file) nor swarm")
		}
	}
	// The dev agent stops before swarm starts, so that it idles in no one's measurement.
	for _, t := range tools {
		if d, ok := t.(*devTool); ok {
			c, cancel := cleanupCtx()
			d.Cleanup(c)
			cancel()
		}
	}

	// Phase 2: swarm, on a swarm that exists only for these measurements.
	if b.wants("swarm") && ctx.Err() == nil {
		if err := b.swarmPhase(ctx); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stopped: %w", context.Cause(ctx))
	}
	log.Printf("done in %s; results appended to %s", time.Since(start).Round(time.Second), b.cfg.out)
	return nil
}

func (b *bench) swarmPhase(ctx context.Context) error {
	t := newSwarmTool(b.work, b.imageID, b.dc)
	defer func() { c, cancel := cleanupCtx(); defer cancel(); t.Cleanup(c) }()
	if err := t.Init(ctx); err != nil {
		note := "skipped: " + firstLine(err.Error())
		log.Printf("swarm %s", note)
		b.notes = append(b.notes, "swarm "+note)
		var recs []results.Record
		for _, c := range b.cases(true) {
			for _, name := range c.names {
				recs = append(recs, results.Record{Measure: c.measure, Case: name, Tool: "swarm", Unit: "s", Note: note})
			}
		}
		b.write(recs)
		return nil
	}
	log.Printf("swarm: initialised on 127.0.0.1")
	b.warmUp(ctx, []tool{t})
	b.runCases(ctx, b.cases(true), []tool{t})
	return nil
}

// warmUp brings one service up and down with each tool, not recorded, so
// that no first run pays for cold caches.
func (b *bench) warmUp(ctx context.Context, tools []tool) {
	c := b.upCase(1)
	for _, t := range tools {
		if _, err := c.run(ctx, t); err != nil {
			b.fail(fmt.Sprintf("warm-up of %s: %v", t.Name(), err))
		}
	}
}

// summary prints the table: median, spread and ratio to raw of every record.
func (b *bench) summary(w *os.File) {
	recs := slices.Clone(b.recs)
	sortRecords(recs, b.caseOrder)
	base := map[string]float64{} // tool, measure and case -> median
	for _, r := range recs {
		if len(r.Runs) > 0 {
			base[r.Tool+"\x00"+r.Measure+"\x00"+r.Case] = r.Median()
		}
	}
	ratio := func(tool string, r results.Record) string {
		if v, ok := base[tool+"\x00"+r.Measure+"\x00"+r.Case]; ok && v > 0 {
			return fmt.Sprintf("%.2f", r.Median()/v)
		}
		return "-"
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tCASE\tTOOL\tRUNS\tMEDIAN\tSPREAD\tx RAW\tx RAW-POD\tEXTRA")
	for _, r := range recs {
		if len(r.Runs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t0\t-\t-\t-\t-\t%s\n", r.Measure, r.Case, r.Tool, firstLine(r.Note))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f s\t%.2f s\t%s\t%s\t%s\n", r.Measure, r.Case, r.Tool, len(r.Runs), r.Median(), r.Spread(), ratio("raw", r), ratio("raw-pod", r), strings.TrimPrefix(extraText(r.Extra), " "))
	}
	tw.Flush()
	for _, n := range b.notes {
		fmt.Fprintln(w, "note:", n)
	}
	warnMu.Lock()
	for _, n := range warnings {
		fmt.Fprintln(w, "warning:", firstLine(n))
	}
	warnMu.Unlock()
	if len(b.failures) > 0 {
		fmt.Fprintf(w, "\n%d failure(s):\n", len(b.failures))
		for _, f := range b.failures {
			fmt.Fprintln(w, " -", firstLine(f))
		}
	}
}
