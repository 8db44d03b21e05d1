package cli

import (
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func TestPublishedAddr(t *testing.T) {
	web := api.ServiceInfo{Name: "web", Published: []api.PortSpec{
		{Target: 80, Published: 8080, Protocol: "tcp"},
		{Target: 53, Published: 5353, Protocol: "udp"},
		{Target: 9090, Published: 19090, HostIP: "127.0.0.1"},
		{Target: 443, Published: 8443, HostIP: "::1"},
	}}
	tests := []struct {
		name    string
		svc     api.ServiceInfo
		target  uint16
		proto   string
		want    string
		wantErr string
	}{
		{name: "every address", svc: web, target: 80, proto: "tcp", want: "0.0.0.0:8080"},
		{name: "udp", svc: web, target: 53, proto: "udp", want: "0.0.0.0:5353"},
		{name: "protocol unset is tcp; a host IP", svc: web, target: 9090, proto: "tcp", want: "127.0.0.1:19090"},
		{name: "IPv6 host IP", svc: web, target: 443, proto: "tcp", want: "[::1]:8443"},
		{name: "the other protocol", svc: web, target: 53, proto: "tcp", wantErr: "does not publish 53/tcp (it publishes 8080->80/tcp, 5353->53/udp"},
		{name: "not published", svc: web, target: 81, proto: "tcp", wantErr: "does not publish 81/tcp"},
		{name: "nothing published", svc: api.ServiceInfo{Name: "db"}, target: 5432, proto: "tcp", wantErr: "service db publishes no port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := publishedAddr(tt.svc, tt.target, tt.proto)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
