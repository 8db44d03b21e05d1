package gossip

import (
	"context"
	"log/slog"
	"strings"
)

// logWriter receives the lines serf and memberlist print with the standard
// library logger ("[WARN] memberlist: message") and forwards them to slog:
// warnings and errors at warn level, everything else (they are chatty) at
// debug level, with the library in the "lib" attribute.
type logWriter struct {
	log *slog.Logger
}

func (w *logWriter) Write(p []byte) (int, error) {
	level, lib, msg := parseLogLine(string(p))
	ctx := context.Background()
	if !w.log.Enabled(ctx, level) {
		return len(p), nil
	}
	if lib != "" {
		w.log.Log(ctx, level, msg, "lib", lib)
	} else {
		w.log.Log(ctx, level, msg)
	}
	return len(p), nil
}

// parseLogLine splits one serf or memberlist log line into its slog level,
// the library that printed it and the message.
func parseLogLine(line string) (slog.Level, string, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelDebug
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "] "); ok && !strings.ContainsAny(tag, " ]") {
			switch tag {
			case "ERR", "ERROR", "WARN", "WARNING":
				level = slog.LevelWarn
			}
			line = msg
		}
	}
	var lib string
	for _, l := range []string{"memberlist", "serf"} {
		if msg, ok := strings.CutPrefix(line, l+": "); ok {
			lib, line = l, msg
			break
		}
	}
	// Run stops serf without leaving on purpose (a crash-like stop; Leave
	// is explicit), so serf's complaint about it is expected.
	if lib == "serf" && line == "Shutdown without a Leave" {
		level = slog.LevelDebug
	}
	return level, lib, line
}
