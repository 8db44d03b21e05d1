// Command record appends one results.Record to a .jsonl file, for the
// shell benchmark scripts:
//
//	record -o bench/out/datapath.jsonl -measure datapath -case "service VIP" -tool dev -unit req/s -higher 11731 12004 ...
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/devhq/dev/bench/results"
)

func main() {
	var r results.Record
	out := flag.String("o", "", "results file (default <results dir>/<measure>.jsonl)")
	flag.StringVar(&r.Measure, "measure", "", "measure")
	flag.StringVar(&r.Case, "case", "", "case")
	flag.StringVar(&r.Tool, "tool", "dev", "tool")
	flag.StringVar(&r.Unit, "unit", "s", "unit")
	flag.StringVar(&r.Note, "note", "", "note")
	flag.BoolVar(&r.HigherIsBetter, "higher", false, "higher values are better")
	flag.Parse()
	if r.Measure == "" || r.Case == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "record: -measure, -case and at least one value are required")
		os.Exit(2)
	}
	for _, a := range flag.Args() {
		v, err := strconv.ParseFloat(a, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "record: value %q: %v\n", a, err)
			os.Exit(2)
		}
		r.Runs = append(r.Runs, v)
	}
	path := *out
	if path == "" {
		path = results.Dir() + "/" + results.Slug(r.Measure) + ".jsonl"
	}
	if err := results.Append(path, r); err != nil {
		fmt.Fprintln(os.Stderr, "record:", err)
		os.Exit(1)
	}
}
