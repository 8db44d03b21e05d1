package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/devhq/dev/bench/results"
)

// step is one timed figure of a run.
type step struct {
	sec   float64
	extra map[string]float64
}

// benchCase is one or more Cases of a Measure that one run measures in a
// row (a scale chain 1->20->50 measures "1->20" then "20->50").
type benchCase struct {
	measure string
	names   []string
	// run does one run with one tool: setup and teardown untimed; it
	// returns the steps it completed, also when it fails.
	run func(ctx context.Context, t tool) ([]step, error)
	// note is the Record's Note for names[i].
	note func(t tool, i int) string
}

// op runs f with the per-operation timeout.
func (b *bench) op(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout)
	defer cancel()
	return f(ctx)
}

// teardown takes w down (not timed) and reports a failure as the run's
// error when the run itself succeeded.
func (b *bench) teardown(ctx context.Context, t tool, w *workload, err *error) {
	start := time.Now()
	derr := b.op(ctx, func(ctx context.Context) error { return t.Down(ctx, w) })
	b.lastDown = time.Since(start)
	if derr != nil && *err == nil {
		*err = fmt.Errorf("down (not timed): %w", derr)
	}
}

func services(n int, prefix string) []service {
	s := make([]service, n)
	for i := range s {
		s[i] = service{Name: fmt.Sprintf("%s%d", prefix, i+1), Replicas: 1}
	}
	return s
}

// upCase: n services of one replica each, from nothing to all running.
func (b *bench) upCase(n int) benchCase {
	return benchCase{
		measure: "up",
		names:   []string{fmt.Sprintf("%d services", n)},
		run: func(ctx context.Context, t tool) (_ []step, err error) {
			w := &workload{Project: t.Prefix() + "up", Services: services(n, "s"), Health: b.cfg.health}
			defer b.teardown(ctx, t, w, &err)
			start := time.Now()
			err = b.op(ctx, func(ctx context.Context) error {
				if err := t.Up(ctx, w); err != nil {
					return err
				}
				return t.Wait(ctx, w)
			})
			if err != nil {
				return nil, err
			}
			return []step{{sec: time.Since(start).Seconds()}}, nil
		},
		note: func(t tool, _ int) string {
			what := fmt.Sprintf("%d services of 1 replica each from the local test image, %s", n, b.healthText())
			switch t.Name() {
			case "dev":
				return "time from exec of `dev up -d -p P -f FILE` (" + what + ") until it returned and the Engine listed every container running" + b.readyText() +
					"; the private dev agent was already running (started once per benchmark run, not timed) and its pod network existed"
			case "docker-compose":
				return "time from exec of `docker-compose -p P -f FILE up -d` (" + what + ") until the Engine listed every container running" + b.readyText() +
					" (1.29 has no --wait; polled every 50 ms); includes creating the project network"
			case "raw":
				return "time from the first of the parallel ContainerCreate+ContainerStart Engine API calls (" + what + "; in-process, no CLI start-up) until every container ran" + b.readyText() +
					"; its bridge network created beforehand, not timed"
			case "raw-pod":
				return "time from the first of the parallel Engine API calls, per replica an infra container (dev's pause image) created, then started while the app container joining its network and IPC namespaces is created, then the app started (" + what + "; in-process, no CLI start-up) until every app container ran" + b.readyText() +
					"; its bridge network created beforehand, not timed"
			case "swarm":
				return "time from exec of `docker stack deploy --resolve-image never -c FILE P` (" + what + ") until TaskList showed every task Running; " + swarmNote +
					"; includes creating the stack's overlay network"
			}
			return ""
		},
	}
}

// swarmNote says how swarm was set up, in every swarm record.
const swarmNote = "single-node swarm (`docker swarm init --advertise-addr 127.0.0.1` on the root engine, not timed); " +
	"deploy.endpoint_mode: dnsrr and no published ports, because swarm's VIPs and routing mesh need IPVS, which this kernel lacks " +
	"(a published port would need mode: host, one replica per port); the image referenced by ID so the engine does not try a registry pull for each task"

func (b *bench) healthText() string {
	if b.cfg.health {
		return "healthcheck [\"CMD\",\"/app\",\"health\"] every 1 s"
	}
	return "no healthcheck"
}

func (b *bench) readyText() string {
	if b.cfg.health {
		return " and healthy"
	}
	return ""
}

// scaleCase: one service deployed at sizes[0] replicas, then scaled to
// each following size in turn, each scale timed as its own Case.
func (b *bench) scaleCase(sizes ...int) benchCase {
	var names []string
	for i := 1; i < len(sizes); i++ {
		names = append(names, fmt.Sprintf("%d->%d", sizes[i-1], sizes[i]))
	}
	return benchCase{
		measure: "scale",
		names:   names,
		run: func(ctx context.Context, t tool) (steps []step, err error) {
			w := &workload{Project: t.Prefix() + "scale", Services: []service{{Name: "app", Replicas: sizes[0]}}, Health: b.cfg.health}
			url := ""
			if t.Name() == "dev" {
				w.Publish = b.publishPort
				url = fmt.Sprintf("http://127.0.0.1:%d/", w.Publish)
			}
			defer b.teardown(ctx, t, w, &err)
			err = b.op(ctx, func(ctx context.Context) error {
				if err := t.Up(ctx, w); err != nil {
					return err
				}
				if err := t.Wait(ctx, w); err != nil {
					return err
				}
				if url != "" {
					return waitHTTP(ctx, url)
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("set up %d replicas (not timed): %w", sizes[0], err)
			}
			for _, to := range sizes[1:] {
				w.Services[0].Replicas = to
				start := time.Now()
				err = b.op(ctx, func(ctx context.Context) error {
					if err := t.Scale(ctx, w, "app"); err != nil {
						return err
					}
					if err := t.Wait(ctx, w); err != nil {
						return err
					}
					if url != "" {
						return waitHTTP(ctx, url)
					}
					return nil
				})
				sec := time.Since(start).Seconds()
				if err != nil {
					return steps, fmt.Errorf("scale to %d: %w", to, err)
				}
				if url == "" {
					steps = append(steps, step{sec: sec})
					continue
				}
				err = b.op(ctx, func(ctx context.Context) error { return waitReplicasAnswer(ctx, url, to) })
				if err != nil {
					return steps, fmt.Errorf("all %d replicas answering through the published port: %w", to, err)
				}
				steps = append(steps, step{sec: sec, extra: map[string]float64{"all_answered_s": time.Since(start).Seconds()}})
			}
			return steps, nil
		},
		note: func(t tool, i int) string {
			from, to := sizes[i], sizes[i+1]
			pre := fmt.Sprintf("one service of the local test image (%s) deployed at %d replicas (not timed); ", b.healthText(), sizes[0])
			if i > 0 {
				pre += fmt.Sprintf("scaled to %d in the previous case of the same run; ", from)
			}
			switch t.Name() {
			case "dev":
				return pre + fmt.Sprintf("published port %d:8080 (dev's node proxy); time from exec of `dev scale -p P app=%d` until it returned, the Engine listed %d containers running%s and a GET on 127.0.0.1:%d answered 200. "+
					"Extra all_answered_s: median time from the same start until all %d replicas had answered GETs (a new connection each) through the published port",
					b.publishPort, to, to, b.readyText(), b.publishPort, to)
			case "docker-compose":
				return pre + fmt.Sprintf("no published port (one fixed host port cannot be published by many replicas on one host); time from exec of `docker-compose -p P -f FILE up -d --scale app=%d` until the Engine listed %d containers running%s", to, to, b.readyText())
			case "raw":
				return pre + fmt.Sprintf("no published port; time from %d parallel ContainerCreate+ContainerStart Engine API calls (in-process) until all %d containers ran%s", to-from, to, b.readyText())
			case "raw-pod":
				return pre + fmt.Sprintf("no published port; time from %d parallel pod starts (infra container, then the app container joining it; Engine API, in-process) until all %d app containers ran%s", to-from, to, b.readyText())
			case "swarm":
				return pre + fmt.Sprintf("no published port; time from exec of `docker service scale -d P_app=%d` until TaskList showed %d tasks Running; ", to, to) + swarmNote
			}
			return ""
		},
	}
}

// reupCase: 5 services up, then one service's environment changed and the
// file deployed again.
func (b *bench) reupCase() benchCase {
	const changed = "s3"
	return benchCase{
		measure: "reup",
		names:   []string{"5 services, 1 changed"},
		run: func(ctx context.Context, t tool) (_ []step, err error) {
			w := &workload{Project: t.Prefix() + "reup", Services: services(5, "s"), Health: b.cfg.health}
			for i := range w.Services {
				w.Services[i].Env = map[string]string{"VERSION": "1"}
			}
			defer b.teardown(ctx, t, w, &err)
			err = b.op(ctx, func(ctx context.Context) error {
				if err := t.Up(ctx, w); err != nil {
					return err
				}
				return t.Wait(ctx, w)
			})
			if err != nil {
				return nil, fmt.Errorf("first up (not timed): %w", err)
			}
			before, err := listContainers(ctx, b.dc, t.Labels(), w.Project, false)
			if err != nil {
				return nil, err
			}
			old := map[string]bool{}
			for _, c := range before {
				old[c.ID] = true
			}
			for i := range w.Services {
				if w.Services[i].Name == changed {
					w.Services[i].Env = map[string]string{"VERSION": "2"}
				}
			}
			start := time.Now()
			// scan lists the containers and counts, for the changed service,
			// old containers still running and new ones running with VERSION=2.
			scan := func(ctx context.Context, checked map[string]bool) (cs []ctr, oldLeft bool, fresh int, err error) {
				cs, err = listContainers(ctx, b.dc, t.Labels(), w.Project, false)
				if err != nil {
					return nil, false, 0, err
				}
				for _, c := range cs {
					if c.Service != changed || !c.ready(w.Health) {
						continue
					}
					if old[c.ID] {
						oldLeft = true
						continue
					}
					if !checked[c.ID] {
						ok, err := hasEnv(ctx, b.dc, c.ID, "VERSION=2")
						if err != nil || !ok {
							return cs, oldLeft, fresh, err
						}
						checked[c.ID] = true
					}
					fresh++
				}
				return cs, oldLeft, fresh, nil
			}
			// A watcher notes when the new container first runs, also while
			// the tool's command still runs (dev's waits for the update).
			var newRunning time.Duration
			wctx, stopWatch := context.WithCancel(ctx)
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				checked := map[string]bool{}
				for wctx.Err() == nil {
					if _, _, fresh, err := scan(wctx, checked); err == nil && fresh > 0 {
						newRunning = time.Since(start)
						return
					}
					select {
					case <-wctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			var after []ctr
			err = b.op(ctx, func(ctx context.Context) error {
				if err := t.Up(ctx, w); err != nil {
					return err
				}
				checked := map[string]bool{}
				return waitUntil(ctx, "wait for "+w.Project+" to converge", func(ctx context.Context) (bool, string, error) {
					cs, oldLeft, fresh, err := scan(ctx, checked)
					if err != nil {
						return false, "", err
					}
					if ok, status := converged(cs, w); !ok {
						return false, status, nil
					}
					if oldLeft || fresh == 0 {
						return false, changed + " does not run its new container alone yet", nil
					}
					after = cs
					return true, "", nil
				})
			})
			elapsed := time.Since(start)
			stopWatch()
			<-watched
			if newRunning == 0 || newRunning > elapsed {
				newRunning = elapsed // the watcher polls less often than the wait
			}
			if err != nil {
				return nil, err
			}
			sec := elapsed.Seconds()
			recreated := 0
			still := map[string]bool{}
			for _, c := range after {
				still[c.ID] = true
			}
			for id := range old {
				if !still[id] {
					recreated++
				}
			}
			return []step{{sec: sec, extra: map[string]float64{"recreated": float64(recreated), "new_running_s": newRunning.Seconds()}}}, nil
		},
		note: func(t tool, _ int) string {
			what := fmt.Sprintf("5 services of 1 replica each (%s), deployed (not timed); then service %s's environment changed in the same file (VERSION=1 -> 2)", b.healthText(), changed)
			cmd := "`dev up -d -p P -f FILE` (dev replaces a changed pod by a rolling update: by default start-first, the old pod retired once the new one has run for update_config's monitor, 5 s, and `dev up` returns after that)"
			if t.Name() == "docker-compose" {
				cmd = "`docker-compose -p P -f FILE up -d` (it recreates the changed service's container stop-first)"
			}
			return what + "; time from exec of " + cmd + " until the Engine listed 5 containers running" + b.readyText() +
				", none of them " + changed + "'s old one, and " + changed + "'s new one carrying VERSION=2 (inspected). Extra recreated: containers whose ID changed (median of runs); new_running_s: median time until " + changed + "'s new container ran with VERSION=2, its old one possibly still running (start-first)"
		},
	}
}

// runCases runs each case runs times per tool, the tools interleaved run by
// run, appends a Record per tool and Case to the results file, and returns
// them. A tool that fails a run is dropped from the rest of that case.
func (b *bench) runCases(ctx context.Context, cases []benchCase, tools []tool) []results.Record {
	var out []results.Record
	for _, c := range cases {
		if ctx.Err() != nil {
			break
		}
		type key struct{ name, tool string }
		runs := map[key][]float64{}
		extras := map[key]map[string][]float64{}
		failed := map[string]string{}
		for i := 1; i <= b.cfg.runs && ctx.Err() == nil; i++ {
			for _, t := range tools {
				if _, bad := failed[t.Name()]; bad || ctx.Err() != nil {
					continue
				}
				steps, err := c.run(ctx, t)
				for j, st := range steps {
					k := key{c.names[j], t.Name()}
					runs[k] = append(runs[k], round(st.sec))
					if extras[k] == nil {
						extras[k] = map[string][]float64{}
					}
					for name, v := range st.extra {
						extras[k][name] = append(extras[k][name], v)
					}
					log.Printf("%-5s %-22s %-14s run %d/%d: %6.2f s%s", c.measure, c.names[j], t.Name(), i, b.cfg.runs, st.sec, extraText(st.extra))
				}
				if err != nil {
					failed[t.Name()] = fmt.Sprintf("run %d failed: %v", i, err)
					b.fail(fmt.Sprintf("%s %s %s run %d: %v", c.measure, strings.Join(c.names, ","), t.Name(), i, err))
					continue
				}
				log.Printf("      (down, not timed: %.1f s)", b.lastDown.Seconds())
			}
		}
		var recs []results.Record
		for j, name := range c.names {
			for _, t := range tools {
				k := key{name, t.Name()}
				rs := runs[k]
				if len(rs) == 0 {
					continue // the failure is in b.failures and the summary
				}
				note := c.note(t, j)
				if f, bad := failed[t.Name()]; bad && len(rs) < b.cfg.runs {
					note += fmt.Sprintf(" [only %d of %d runs: %s]", len(rs), b.cfg.runs, firstLine(f))
				}
				rec := results.Record{Measure: c.measure, Case: name, Tool: t.Name(), Unit: "s", Runs: rs, Note: note}
				for x, vs := range extras[k] {
					if rec.Extra == nil {
						rec.Extra = map[string]float64{}
					}
					m := results.Record{Runs: vs}
					rec.Extra[x] = round(m.Median())
					if x == "recreated" && m.Spread() != 0 {
						rec.Extra["recreated_max"] = slices.Max(vs)
					}
				}
				recs = append(recs, rec)
			}
		}
		b.write(recs)
		out = append(out, recs...)
	}
	return out
}

func extraText(extra map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		parts = append(parts, fmt.Sprintf("%s=%.2f", k, extra[k]))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func round(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}

// sortRecords orders records by measure, case (as run) and tool.
func sortRecords(recs []results.Record, caseOrder []string) {
	measureRank := map[string]int{"up": 0, "scale": 1, "reup": 2}
	toolRank := map[string]int{"dev": 0, "docker-compose": 1, "raw": 2, "raw-pod": 3, "swarm": 4}
	caseRank := map[string]int{}
	for i, c := range caseOrder {
		caseRank[c] = i
	}
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := recs[i], recs[j]
		if a.Measure != b.Measure {
			return measureRank[a.Measure] < measureRank[b.Measure]
		}
		if a.Case != b.Case {
			return caseRank[a.Case] < caseRank[b.Case]
		}
		return toolRank[a.Tool] < toolRank[b.Tool]
	})
}
