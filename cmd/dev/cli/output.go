package cli

import (
	"encoding/json"
	"fmt"
	"io"
)

// checkOutput validates an -o flag.
func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("-o %q: want table or json", o)
	}
	return nil
}

// printJSON writes v as indented JSON, for -o json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
