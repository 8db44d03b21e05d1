package api

import (
	"fmt"
	"strconv"
	"strings"
)

// signalNumbers are the Linux signals by name (without SIG), as the Engine
// accepts them in `docker kill -s`.
var signalNumbers = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
	"FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
	"TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
	"TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
	"IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

// signalMax is the highest signal number Linux has (SIGRTMAX).
const signalMax = 64

// NormalizeSignal is a signal as `dev kill -s` and the compose file's
// stop_signal take it ("SIGKILL", "kill", "9", "SIGRTMIN+3") in one form:
// "SIGKILL", or the plain number for one without a name (real-time
// signals: "40"), the forms the Engine's signal parsing (moby's
// ParseSignal) accepts, which knows no "SIG40"; empty is SIGKILL (`docker
// compose kill`'s default).
func NormalizeSignal(s string) (string, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "" {
		return "SIGKILL", nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > signalMax {
			return "", fmt.Errorf("signal %s: want a number from 1 to %d or a name (SIGKILL, HUP...)", s, signalMax)
		}
		for name, num := range signalNumbers {
			if num == n && name != "IOT" && name != "POLL" {
				return "SIG" + name, nil
			}
		}
		return strconv.Itoa(n), nil
	}
	name := strings.TrimPrefix(s, "SIG")
	if _, ok := signalNumbers[name]; ok {
		switch name { // aliases
		case "IOT":
			name = "ABRT"
		case "POLL":
			name = "IO"
		}
		return "SIG" + name, nil
	}
	if strings.HasPrefix(name, "RTMIN") || strings.HasPrefix(name, "RTMAX") {
		return "SIG" + name, nil // the Engine checks the offset
	}
	return "", fmt.Errorf("unknown signal %q: want a name (SIGKILL, SIGTERM, HUP...) or a number", s)
}

// StopsContainer reports whether `dev kill` with signal (normalized) is a
// stop the restart policy must not undo, as the Engine decides for `docker
// kill`: SIGKILL, or the container's stop signal (stopSignal: the
// service's stop_signal, SIGTERM when it has none). Any other signal is
// for the process to handle (reload, dump); should it exit from it, its
// restart policy applies.
func StopsContainer(signal, stopSignal string) bool {
	if signal == "SIGKILL" {
		return true
	}
	stop, err := NormalizeSignal(stopSignal)
	if err != nil || strings.TrimSpace(stopSignal) == "" {
		stop = "SIGTERM"
	}
	return signal == stop
}
