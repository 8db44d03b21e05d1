package api

import "testing"

func TestCheckReplicas(t *testing.T) {
	tests := []struct {
		name     string
		replicas int
		cname    string
		wantErr  string
	}{
		{name: "zero", replicas: 0},
		{name: "many", replicas: 5},
		{name: "negative", replicas: -1, wantErr: `service "web": replicas must be >= 0, got -1`},
		{name: "fixed name, one", replicas: 1, cname: "web-x"},
		{name: "fixed name, none", replicas: 0, cname: "web-x"},
		{name: "fixed name, two", replicas: 2, cname: "web-x",
			wantErr: `service "web": container_name "web-x" cannot be used with replicas 2; remove container_name or set replicas to 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckReplicas("web", tt.replicas, tt.cname)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("CheckReplicas = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
