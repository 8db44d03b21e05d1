package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestFlagHelpRendersCleanly: no flag of any command shows a piece of its
// usage text where the help puts the value's type (pflag takes the first
// `quoted` words of a usage as the value's name: "--agent dev up").
func TestFlagHelpRendersCleanly(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.Contains(name, " ") || strings.Contains(f.Usage, "`") {
				t.Errorf("dev %s --%s: its help shows %q as the value's name (backquotes in its usage)", c.Name(), f.Name, name)
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRootCommand())
}

// TestUpComposeWaitFlags: compose's --wait-timeout is --timeout in seconds;
// both at once, or a negative one, is refused before anything is read.
func TestUpComposeWaitFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"up", "--wait-timeout", "5", "--timeout", "1m"}, "say the same thing"},
		{[]string{"up", "--wait-timeout", "-1"}, "want a number of seconds"},
	}
	for _, tt := range tests {
		root := NewRootCommand()
		root.SetArgs(tt.args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("dev %s: %v, want %q", strings.Join(tt.args, " "), err, tt.wantErr)
		}
	}
}
