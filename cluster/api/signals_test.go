package api

import "testing"

func TestNormalizeSignal(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "empty is compose's default", in: "", want: "SIGKILL"},
		{name: "full name", in: "SIGTERM", want: "SIGTERM"},
		{name: "short lower case", in: "hup", want: "SIGHUP"},
		{name: "number", in: "9", want: "SIGKILL"},
		{name: "alias", in: "SIGIOT", want: "SIGABRT"},
		{name: "real-time by number", in: "40", want: "40"}, // moby's ParseSignal knows no "SIG40"
		{name: "real-time number given as SIG<n>", in: "SIG40", wantErr: true},
		{name: "real-time by name", in: "SIGRTMIN+3", want: "SIGRTMIN+3"},
		{name: "unknown", in: "SIGNOPE", wantErr: true},
		{name: "out of range", in: "65", wantErr: true},
		{name: "zero", in: "0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeSignal(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("NormalizeSignal(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestStopsContainer(t *testing.T) {
	tests := []struct {
		name, signal, stopSignal string
		want                     bool
	}{
		{name: "SIGKILL always", signal: "SIGKILL", stopSignal: "SIGUSR1", want: true},
		{name: "SIGTERM without a stop signal", signal: "SIGTERM", want: true},
		{name: "the stop signal", signal: "SIGQUIT", stopSignal: "quit", want: true},
		{name: "SIGTERM with another stop signal", signal: "SIGTERM", stopSignal: "SIGQUIT", want: false},
		{name: "a reload", signal: "SIGHUP", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StopsContainer(tt.signal, tt.stopSignal); got != tt.want {
				t.Errorf("StopsContainer(%q, %q) = %v, want %v", tt.signal, tt.stopSignal, got, tt.want)
			}
		})
	}
}
