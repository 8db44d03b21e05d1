package compose

import (
	"reflect"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func TestIngress(t *testing.T) {
	l, err := loadYAML(t, `name: shop
services:
  web:
    image: web
    x-ingress:
      - Shop.Example.com:8000
      - {host: shop.example.com, path: /api/, port: "9000", tls: "off"}
      - {host: web.shop.localhost, port: 8000}
      - {host: raw.example.com, port: 80, tls: off}
      - {host: grpc.example.com, port: 50051, protocol: grpc}
      - {host: h2.example.com, port: 8080, protocol: h2c, tls: "off"}
  db:
    image: db
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.IngressRoute{
		{Host: "shop.example.com", Path: "/", Port: 8000, TLS: api.IngressTLSAuto, Protocol: api.IngressProtoHTTP},
		{Host: "shop.example.com", Path: "/api", Port: 9000, TLS: api.IngressTLSOff, Protocol: api.IngressProtoHTTP},
		{Host: "web.shop.localhost", Path: "/", Port: 8000, TLS: api.IngressTLSLocal, Protocol: api.IngressProtoHTTP},
		{Host: "raw.example.com", Path: "/", Port: 80, TLS: api.IngressTLSOff, Protocol: api.IngressProtoHTTP},
		{Host: "grpc.example.com", Path: "/", Port: 50051, TLS: api.IngressTLSAuto, Protocol: api.IngressProtoGRPC},
		{Host: "h2.example.com", Path: "/", Port: 8080, TLS: api.IngressTLSOff, Protocol: api.IngressProtoH2C},
	}
	var got []api.IngressRoute
	for _, s := range l.Project.Services {
		if s.Name == "web" {
			got = s.Ingress
		} else if s.Ingress != nil {
			t.Errorf("service %s has routes %v", s.Name, s.Ingress)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("routes\n got %+v\nwant %+v", got, want)
	}
	// dev config shows them normalized.
	b, err := l.ConfigYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"host: shop.example.com", "path: /api", "port: 9000", "tls: \"off\"", "tls: local", "tls: auto", "protocol: grpc", "protocol: h2c", "protocol: http"} {
		if !strings.Contains(string(b), s) {
			t.Errorf("dev config does not show %q:\n%s", s, b)
		}
	}
	if strings.Contains(string(b), "Shop.Example.com") {
		t.Errorf("dev config shows the route as written, not normalized:\n%s", b)
	}
	// A route changes no pod: it is not in the template's hash.
	var web api.ServiceSpec
	for _, s := range l.Project.Services {
		if s.Name == "web" {
			web = s
		}
	}
	bare := web
	bare.Ingress = nil
	if web.Hash() != bare.Hash() {
		t.Error("the routes change the pod template's hash")
	}
}

func TestIngressErrors(t *testing.T) {
	svc := func(routes string) string {
		return "services:\n  web:\n    image: web\n    x-ingress:\n" + routes
	}
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"not a list", "services:\n  web:\n    image: web\n    x-ingress: a.example.com:80\n", "want a list of routes"},
		{"short form without port", svc("      - a.example.com\n"), "want HOST:PORT"},
		{"short form port not a number", svc("      - a.example.com:http\n"), `port "http" is not a number`},
		{"unknown key", svc("      - {host: a.example.com, port: 80, tsl: off}\n"), `unknown key "tsl"`},
		{"no port", svc("      - {host: a.example.com}\n"), "no port"},
		{"port out of range", svc("      - {host: a.example.com, port: 70000}\n"), "port 70000"},
		{"port zero", svc("      - a.example.com:0\n"), "port 0"},
		{"no host", svc("      - {port: 80}\n"), "a route needs a host"},
		{"malformed host", svc("      - {host: a_b.example.com, port: 80}\n"), `host "a_b.example.com"`},
		{"host with a scheme", svc("      - {host: \"https://a.example.com\", port: 80}\n"), `host "https://a.example.com": want a DNS name`},
		{"relative path", svc("      - {host: a.example.com, path: api, port: 80}\n"), `path "api": want an absolute path prefix`},
		{"path with a query", svc("      - {host: a.example.com, path: /api?x=1, port: 80}\n"), "want a plain path prefix"},
		{"path with ..", svc("      - {host: a.example.com, path: /a/../b, port: 80}\n"), "want a plain path prefix"},
		{"bad tls", svc("      - {host: a.example.com, port: 80, tls: maybe}\n"), `tls "maybe": want auto, local or off`},
		{"bad protocol", svc("      - {host: a.example.com, port: 80, protocol: http2}\n"), `protocol "http2": want http (HTTP/1.1 to the pods), h2c (HTTP/2 without TLS) or grpc`},
		{"protocol not a string", svc("      - {host: a.example.com, port: 80, protocol: [grpc]}\n"), `protocol [grpc]: want a string`},
		{"tls local outside .localhost", svc("      - {host: github.com, port: 80, tls: local}\n"), "tls: local is for hosts under .localhost"},
		{"path with %", svc("      - {host: a.example.com, path: /a%2Fb, port: 80}\n"), "want a plain path prefix"},
		{"path with a . segment", svc("      - {host: a.example.com, path: /a/./b, port: 80}\n"), "want a plain path prefix"},
		{"two services, one host and path", `services:
  web:
    image: web
    x-ingress: [a.example.com:80]
  api:
    image: api
    x-ingress: [{host: a.example.com, path: /, port: 81}]
`, "both route a.example.com/"},
		{"a sidecar's route", `services:
  web:
    image: web
  proxy:
    image: proxy
    network_mode: service:web
    x-ingress: [a.example.com:80]
`, "declare it on service web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestLocalhostRoutes: the project's switch gives each service that serves
// a TCP port a route <service>.<project>.localhost (tls: local) to its
// first one, beside the routes it declares; services without a port get
// none.
func TestLocalhostRoutes(t *testing.T) {
	l, err := loadYAML(t, `name: my_shop
x-ingress:
  localhost: true
services:
  web:
    image: web
    ports: ["8080:80"]
    x-ingress: [shop.example.com:80]
  api:
    image: api
    expose: ["9000", "53/udp"]
  worker:
    image: worker
`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]api.IngressRoute{}
	for _, s := range l.Project.Services {
		got[s.Name] = s.Ingress
	}
	want := map[string][]api.IngressRoute{
		"web":    {{Host: "shop.example.com", Path: "/", Port: 80, TLS: api.IngressTLSAuto, Protocol: api.IngressProtoHTTP}, {Host: "web.my-shop.localhost", Path: "/", Port: 80, TLS: api.IngressTLSLocal, Protocol: api.IngressProtoHTTP}},
		"api":    {{Host: "api.my-shop.localhost", Path: "/", Port: 9000, TLS: api.IngressTLSLocal, Protocol: api.IngressProtoHTTP}},
		"worker": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("routes\n got %+v\nwant %+v", got, want)
	}
	if _, err := loadYAML(t, "x-ingress: {localhost: yes please}\nservices:\n  web:\n    image: web\n"); err == nil || !strings.Contains(err.Error(), "want true or false") {
		t.Errorf("a malformed switch: %v", err)
	}
}
