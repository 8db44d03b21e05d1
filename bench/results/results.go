// Package results is the record every benchmark of bench/ writes, and the
// reader the report generator uses: one JSON object per line in
// bench/out/*.jsonl.
package results

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// Record is one measurement: the same work done Runs times by one tool.
type Record struct {
	// Measure groups comparable records: "up", "scale", "reup", "failover",
	// "datapath", "dns", "controlplane", "memory".
	Measure string `json:"measure"`
	// Case is the variant within the measure, e.g. "10 services".
	Case string `json:"case"`
	// Tool is who did the work: "dev", "docker-compose", "raw", "swarm".
	Tool string `json:"tool"`
	// Unit of Runs: "s", "req/s", "MB", "pods/s"...
	Unit string    `json:"unit"`
	Runs []float64 `json:"runs"`
	// HigherIsBetter is set for throughputs (req/s, pods/s).
	HigherIsBetter bool `json:"higher_is_better,omitempty"`
	// Note says anything a reader must know about how the figure was taken.
	Note string `json:"note,omitempty"`
	// Extra holds secondary figures, e.g. {"recreated": 1}.
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Median of the runs (0 when there are none).
func (r Record) Median() float64 {
	if len(r.Runs) == 0 {
		return 0
	}
	s := slices.Clone(r.Runs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Spread is max - min of the runs.
func (r Record) Spread() float64 {
	if len(r.Runs) == 0 {
		return 0
	}
	return slices.Max(r.Runs) - slices.Min(r.Runs)
}

// Append adds records to a .jsonl file, creating its directory.
func Append(path string, recs ...Record) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create results dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open results %s: %w", path, err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write results %s: %w", path, err)
		}
	}
	return nil
}

// Load reads every *.jsonl file of dir.
func Load(dir string) ([]Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Record
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open results %s: %w", p, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				f.Close()
				return nil, fmt.Errorf("parse results %s: %w", p, err)
			}
			out = append(out, r)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Dir is where benchmarks write by default: $DEV_BENCH_OUT or bench/out
// below the repository root (found from the working directory).
func Dir() string {
	if d := os.Getenv("DEV_BENCH_OUT"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "bench", "out")
		}
		if filepath.Dir(d) == d {
			return filepath.Join(wd, "bench", "out")
		}
	}
}

// Slug turns a measure name into a file name: "datapath req/s" ->
// "datapath-req-s".
func Slug(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '-'
		}
	}
	return string(b)
}
