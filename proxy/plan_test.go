package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Helpers of this file are prefixed with "pt" so that they never collide
// with those of kernel_linux_test.go (same package, Linux only).

func ptAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func ptEP(ip string, local bool) Endpoint { return Endpoint{Addr: ptAddr(ip), Local: local} }

func ptProto(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto%d", p)
}

// ptRender describes a ruleset as sorted lines, following every map element
// to the rule of the chain it points at ("KIND: dnat to ..."), so that a test
// states what the kernel would do without spelling out chain names. Chains
// nothing points at, and elements pointing at missing chains, show up too.
func ptRender(rs *ruleset) []string {
	var out []string
	used := map[string]bool{}
	to := func(name string) string {
		used[name] = true
		targets, ok := rs.chains[name]
		if !ok {
			return "MISSING CHAIN " + name
		}
		kind, _, _ := strings.Cut(name, "-")
		return kind + ": " + dnatRule(targets)
	}
	for a, in := range rs.vips {
		if in {
			out = append(out, "vip "+a.String())
		}
	}
	for a, in := range rs.endpoints {
		if in {
			out = append(out, "hairpin "+a.String())
		}
	}
	for a, c := range rs.serviceIPs {
		out = append(out, "service-ip "+a.String()+" -> "+to(c))
	}
	for k, c := range rs.nodePorts {
		out = append(out, fmt.Sprintf("node-port %s/%d -> %s", ptProto(k.proto), k.port, to(c)))
	}
	for k, c := range rs.hostPorts {
		out = append(out, fmt.Sprintf("host-port %s %s/%d -> %s", k.addr, ptProto(k.proto), k.port, to(c)))
	}
	for name := range rs.chains {
		if !used[name] {
			out = append(out, "ORPHAN CHAIN "+name)
		}
	}
	slices.Sort(out)
	return out
}

func ptCheckErr(t *testing.T, err error, wantErr []string) {
	t.Helper()
	if len(wantErr) == 0 {
		if err != nil {
			t.Errorf("err = %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Errorf("err = nil, want one containing %q", wantErr)
		return
	}
	for _, s := range wantErr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("err = %q, want it to contain %q", err, s)
		}
	}
}

func ptCheckLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:\n\t%s\nwant:\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

const (
	ptDNAT1  = "dnat to numgen random mod 1 map { 0 : 10.0.0.1 }"
	ptDNAT12 = "dnat to numgen random mod 2 map { 0 : 10.0.0.1, 1 : 10.0.0.2 }"
)

func TestPlanRules(t *testing.T) {
	vip := ptAddr("10.96.0.1")
	tests := []struct {
		name     string
		services []Service
		want     []string // ptRender of the plan
		wantErr  []string // substrings of the error; none: no error
	}{
		{name: "nothing", services: nil, want: nil},
		{
			name: "vip with endpoints: sorted, deduplicated, port kept",
			services: []Service{{Name: "p/web", VIP: vip, Endpoints: []Endpoint{
				ptEP("10.0.0.2", false), ptEP("10.0.0.1", true), ptEP("10.0.0.2", false),
				ptEP("::ffff:10.0.0.1", false), // the same address, IPv4-mapped
			}}},
			want: []string{
				"vip 10.96.0.1",
				"hairpin 10.0.0.1",
				"hairpin 10.0.0.2",
				"service-ip 10.96.0.1 -> svc: " + ptDNAT12,
			},
		},
		{
			name: "ipv4-mapped vip is unmapped",
			services: []Service{{Name: "p/web", VIP: ptAddr("::ffff:10.96.0.1"),
				Endpoints: []Endpoint{ptEP("10.0.0.1", false)}}},
			want: []string{"vip 10.96.0.1", "hairpin 10.0.0.1", "service-ip 10.96.0.1 -> svc: " + ptDNAT1},
		},
		{
			name:     "vip without endpoints is kept, to be rejected",
			services: []Service{{Name: "p/web", VIP: vip}},
			want:     []string{"vip 10.96.0.1"},
		},
		{
			name: "non-IPv4 endpoints are skipped",
			services: []Service{
				{Name: "p/web", VIP: vip, Endpoints: []Endpoint{ptEP("2001:db8::1", true), ptEP("10.0.0.1", false), {}}},
				{Name: "p/v6", VIP: ptAddr("10.96.0.2"), Endpoints: []Endpoint{ptEP("2001:db8::2", true), {}}},
			},
			want: []string{
				"vip 10.96.0.1", "vip 10.96.0.2",
				"hairpin 10.0.0.1",
				"service-ip 10.96.0.1 -> svc: " + ptDNAT1,
			},
		},
		{
			name: "no vip: only published ports",
			services: []Service{{Name: "p/web", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want: []string{"hairpin 10.0.0.1", "node-port tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }"},
		},
		{
			name: "unspecified host_ip publishes a node port",
			services: []Service{{Name: "p/web", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.2", false), ptEP("10.0.0.1", false)},
				Published: []Published{{HostIP: ptAddr("0.0.0.0"), Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want: []string{
				"vip 10.96.0.1", "hairpin 10.0.0.1", "hairpin 10.0.0.2",
				"service-ip 10.96.0.1 -> svc: " + ptDNAT12,
				"node-port tcp/8080 -> pub: dnat to numgen random mod 2 map { 0 : 10.0.0.1 . 80, 1 : 10.0.0.2 . 80 }",
			},
		},
		{
			name: "specific host_ip publishes a host port",
			services: []Service{{Name: "p/web", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{
					{HostIP: ptAddr("127.0.0.1"), Port: 8080, Target: 80, Protocol: "tcp"},
					{HostIP: ptAddr("::ffff:192.168.1.5"), Port: 8443, Target: 443, Protocol: "tcp"},
				}}},
			want: []string{
				"hairpin 10.0.0.1",
				"host-port 127.0.0.1 tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }",
				"host-port 192.168.1.5 tcp/8443 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 443 }",
			},
		},
		{
			name: "tcp and udp are different keys; empty protocol is tcp; case-insensitive",
			services: []Service{{Name: "p/dns", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{
					{Port: 53, Target: 5353, Protocol: "tcp"},
					{Port: 53, Target: 5354, Protocol: "udp"},
					{Port: 54, Target: 5355, Protocol: ""},
					{Port: 55, Target: 5356, Protocol: "UDP"},
					{HostIP: ptAddr("127.0.0.1"), Port: 53, Target: 5357, Protocol: "udp"},
				}}},
			want: []string{
				"hairpin 10.0.0.1",
				"node-port tcp/53 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 5353 }",
				"node-port udp/53 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 5354 }",
				"node-port tcp/54 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 5355 }",
				"node-port udp/55 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 5356 }",
				"host-port 127.0.0.1 udp/53 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 5357 }",
			},
		},
		{
			name: "host mode uses only local endpoints; ingress mode all; the vip all",
			services: []Service{{Name: "p/web", VIP: vip,
				Endpoints: []Endpoint{ptEP("10.0.0.3", true), ptEP("10.0.0.2", false), ptEP("10.0.0.1", true)},
				Published: []Published{
					{Port: 8080, Target: 80, Protocol: "tcp", HostMode: true},
					{Port: 9090, Target: 90, Protocol: "tcp"},
				}}},
			want: []string{
				"vip 10.96.0.1", "hairpin 10.0.0.1", "hairpin 10.0.0.2", "hairpin 10.0.0.3",
				"service-ip 10.96.0.1 -> svc: dnat to numgen random mod 3 map { 0 : 10.0.0.1, 1 : 10.0.0.2, 2 : 10.0.0.3 }",
				"node-port tcp/8080 -> pub: dnat to numgen random mod 2 map { 0 : 10.0.0.1 . 80, 1 : 10.0.0.3 . 80 }",
				"node-port tcp/9090 -> pub: dnat to numgen random mod 3 map { 0 : 10.0.0.1 . 90, 1 : 10.0.0.2 . 90, 2 : 10.0.0.3 . 90 }",
			},
		},
		{
			name: "host mode without local endpoints publishes nothing",
			services: []Service{{Name: "p/web", VIP: vip,
				Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{
					{Port: 8080, Target: 80, Protocol: "tcp", HostMode: true},
					{HostIP: ptAddr("127.0.0.1"), Port: 8081, Target: 80, Protocol: "tcp", HostMode: true},
				}}},
			want: []string{"vip 10.96.0.1", "hairpin 10.0.0.1", "service-ip 10.96.0.1 -> svc: " + ptDNAT1},
		},
		{
			name: "published port without endpoints is not published",
			services: []Service{{Name: "p/web",
				Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want: nil,
		},
		{
			name: "duplicate node port: error, the first one wins, the rest is planned",
			services: []Service{
				{Name: "p/a", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
					Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}},
				{Name: "p/b", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
					Published: []Published{
						{HostIP: ptAddr("0.0.0.0"), Port: 8080, Target: 81, Protocol: "tcp"},
						{Port: 8080, Target: 82, Protocol: "udp"}, // another protocol: no conflict
						{Port: 8081, Target: 83, Protocol: "tcp"},
					}},
			},
			want: []string{
				"vip 10.96.0.1", "hairpin 10.0.0.1", "hairpin 10.0.0.2",
				"service-ip 10.96.0.1 -> svc: dnat to numgen random mod 1 map { 0 : 10.0.0.2 }",
				"node-port tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }",
				"node-port udp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.2 . 82 }",
				"node-port tcp/8081 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.2 . 83 }",
			},
			wantErr: []string{"service p/b: ", "published port 8080/tcp is already published"},
		},
		{
			name: "duplicate host port is an error; another host ip is not",
			services: []Service{
				{Name: "p/a", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
					Published: []Published{{HostIP: ptAddr("127.0.0.1"), Port: 8080, Target: 80, Protocol: "tcp"}}},
				{Name: "p/b", Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
					Published: []Published{
						{HostIP: ptAddr("127.0.0.1"), Port: 8080, Target: 81, Protocol: "tcp"},
						{HostIP: ptAddr("127.0.0.2"), Port: 8080, Target: 82, Protocol: "tcp"},
					}},
			},
			want: []string{
				"hairpin 10.0.0.1", "hairpin 10.0.0.2",
				"host-port 127.0.0.1 tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }",
				"host-port 127.0.0.2 tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.2 . 82 }",
			},
			wantErr: []string{"service p/b: ", "published port 127.0.0.1:8080/tcp is already published"},
		},
		{
			name: "duplicate vip: error naming both, the first one wins, the rest is planned",
			services: []Service{
				{Name: "p/a", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.1", false)}},
				{Name: "p/b", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
					Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}},
			},
			want: []string{
				"vip 10.96.0.1", "hairpin 10.0.0.1", "hairpin 10.0.0.2",
				"service-ip 10.96.0.1 -> svc: " + ptDNAT1,
				"node-port tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.2 . 80 }",
			},
			wantErr: []string{"service p/b: virtual ip 10.96.0.1 is already used by p/a"},
		},
		{
			name: "IPv6 vip is an error; its published ports are still planned",
			services: []Service{{Name: "p/a", VIP: ptAddr("fd00::1"), Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want: []string{
				"hairpin 10.0.0.1",
				"node-port tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }",
			},
			wantErr: []string{"service p/a: virtual ip fd00::1 is not IPv4"},
		},
		{
			name: "sctp is an error; the rest is planned",
			services: []Service{{Name: "p/a", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{
					{Port: 8080, Target: 80, Protocol: "sctp"},
					{Port: 8081, Target: 81, Protocol: "tcp"},
				}}},
			want: []string{
				"vip 10.96.0.1", "hairpin 10.0.0.1",
				"service-ip 10.96.0.1 -> svc: " + ptDNAT1,
				"node-port tcp/8081 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 81 }",
			},
			wantErr: []string{`service p/a: protocol "sctp" is not supported`},
		},
		{
			name: "port 0 and target 0 are errors",
			services: []Service{
				{Name: "p/a", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
					Published: []Published{{Port: 0, Target: 80, Protocol: "tcp"}}},
				{Name: "p/b", Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
					Published: []Published{{Port: 8080, Target: 0, Protocol: "tcp"}}},
			},
			want:    []string{"hairpin 10.0.0.1", "hairpin 10.0.0.2"},
			wantErr: []string{"service p/a: published port 0 -> 80: ports must be 1-65535", "service p/b: published port 8080 -> 0"},
		},
		{
			name: "IPv6 host_ip is an error",
			services: []Service{{Name: "p/a", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{{HostIP: ptAddr("2001:db8::1"), Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want:    []string{"hairpin 10.0.0.1"},
			wantErr: []string{"service p/a: published port [2001:db8::1]:8080: host_ip is not IPv4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := planRules(tt.services)
			ptCheckErr(t, err, tt.wantErr)
			if rs == nil {
				t.Fatal("planRules returned a nil ruleset")
			}
			ptCheckLines(t, "plan", ptRender(rs), tt.want)
		})
	}
}

// TestPlanRulesChainNames checks that every service and published port has a
// chain of its own, named after the service.
func TestPlanRulesChainNames(t *testing.T) {
	eps := []Endpoint{ptEP("10.0.0.1", false)}
	rs, err := planRules([]Service{
		{Name: "p/a", VIP: ptAddr("10.96.0.1"), Endpoints: eps, Published: []Published{
			{Port: 80, Target: 80, Protocol: "tcp"}, {Port: 80, Target: 80, Protocol: "udp"},
			{HostIP: ptAddr("127.0.0.1"), Port: 80, Target: 80, Protocol: "tcp"},
		}},
		{Name: "p/b", VIP: ptAddr("10.96.0.2"), Endpoints: eps, Published: []Published{{Port: 81, Target: 80, Protocol: "tcp"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rs.chains), 6; got != want {
		t.Errorf("%d chains, want %d: %v", got, want, rs.chains)
	}
	if got, want := rs.serviceIPs[ptAddr("10.96.0.1")], chainName("svc", "p/a"); got != want {
		t.Errorf("service-ips[10.96.0.1] = %q, want %q", got, want)
	}
	if got, want := rs.serviceIPs[ptAddr("10.96.0.2")], chainName("svc", "p/b"); got != want {
		t.Errorf("service-ips[10.96.0.2] = %q, want %q", got, want)
	}
	for k, name := range rs.nodePorts {
		wantPrefix := "pub-p-a-"
		if k.port == 81 {
			wantPrefix = "pub-p-b-"
		}
		if !strings.HasPrefix(name, wantPrefix) {
			t.Errorf("node-ports[%v] = %q, want prefix %q", k, name, wantPrefix)
		}
	}
	for k, name := range rs.hostPorts {
		if !strings.HasPrefix(name, "pub-p-a-") {
			t.Errorf("host-ports[%v] = %q, want prefix pub-p-a-", k, name)
		}
	}
}

func TestChainName(t *testing.T) {
	long := strings.Repeat("a-very-long-project/", 20)
	tests := []struct {
		name     string
		a, b     []string // kind, svc, parts...
		wantSame bool
	}{
		{name: "stable", a: []string{"svc", "p/web"}, b: []string{"svc", "p/web"}, wantSame: true},
		{name: "stable with parts", a: []string{"pub", "p/web", "8080/tcp"}, b: []string{"pub", "p/web", "8080/tcp"}, wantSame: true},
		{name: "other service", a: []string{"svc", "p/web"}, b: []string{"svc", "p/api"}},
		{name: "same readable part", a: []string{"svc", "p/web"}, b: []string{"svc", "p-web"}},
		{name: "other kind", a: []string{"svc", "p/web"}, b: []string{"pub", "p/web"}},
		{name: "other part", a: []string{"pub", "p/web", "8080/tcp"}, b: []string{"pub", "p/web", "8080/udp"}},
		{name: "part or none", a: []string{"pub", "p/web"}, b: []string{"pub", "p/web", ""}},
		{name: "part boundary", a: []string{"pub", "p/web", "ab"}, b: []string{"pub", "p/webab"}},
		{name: "long names sharing a prefix", a: []string{"svc", long + "x"}, b: []string{"svc", long + "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := chainName(tt.a[0], tt.a[1], tt.a[2:]...)
			b := chainName(tt.b[0], tt.b[1], tt.b[2:]...)
			if (a == b) != tt.wantSame {
				t.Errorf("chainName(%q) = %q, chainName(%q) = %q; same = %v, want %v", tt.a, a, tt.b, b, a == b, tt.wantSame)
			}
			for _, n := range []string{a, b} {
				if len(n) >= 64 {
					t.Errorf("chain name %q is %d long, want < 64", n, len(n))
				}
			}
		})
	}
}

func TestChainNameFormat(t *testing.T) {
	tests := []struct {
		name       string
		kind, svc  string
		wantPrefix string
	}{
		{name: "plain", kind: "svc", svc: "p/web", wantPrefix: "svc-p-web-"},
		{name: "odd characters", kind: "pub", svc: "My_Proj/wéb.1", wantPrefix: "pub-My_Proj-w-b-1-"},
		{name: "long name is cut", kind: "svc", svc: strings.Repeat("x", 300), wantPrefix: "svc-" + strings.Repeat("x", 32) + "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chainName(tt.kind, tt.svc)
			hash, ok := strings.CutPrefix(got, tt.wantPrefix)
			if !ok {
				t.Fatalf("chainName(%q, %q) = %q, want prefix %q", tt.kind, tt.svc, got, tt.wantPrefix)
			}
			if len(hash) != 8 || strings.Trim(hash, "0123456789abcdef") != "" {
				t.Errorf("chainName(%q, %q) = %q, want 8 hex digits after the prefix", tt.kind, tt.svc, got)
			}
			if len(got) >= 64 {
				t.Errorf("chainName(%q, %q) is %d long, want < 64", tt.kind, tt.svc, len(got))
			}
		})
	}
}

func TestDNATRule(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		targets []netip.AddrPort
		want    string
	}{
		{name: "one, port kept", targets: []netip.AddrPort{ap("10.0.0.1:0")}, want: "dnat to numgen random mod 1 map { 0 : 10.0.0.1 }"},
		{name: "two, port kept", targets: []netip.AddrPort{ap("10.0.0.1:0"), ap("10.0.0.2:0")},
			want: "dnat to numgen random mod 2 map { 0 : 10.0.0.1, 1 : 10.0.0.2 }"},
		{name: "with ports", targets: []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.2:8080"), ap("10.0.0.3:65535")},
			want: "dnat to numgen random mod 3 map { 0 : 10.0.0.1 . 80, 1 : 10.0.0.2 . 8080, 2 : 10.0.0.3 . 65535 }"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dnatRule(tt.targets); got != tt.want {
				t.Errorf("dnatRule = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

// ptChainLabels names the chains that the given services can have, for
// readable diffs: "svc NAME" and "pub NAME PROTO/PORT". The published
// chains' names are found by planning each published port alone, so that
// the test does not depend on how their names are derived.
func ptChainLabels(lists ...[]Service) map[string]string {
	labels := map[string]string{}
	for _, list := range lists {
		for _, s := range list {
			labels[chainName("svc", s.Name)] = "svc " + s.Name
			for _, p := range s.Published {
				one := Service{Name: s.Name, Endpoints: s.Endpoints, Published: []Published{p}}
				rs, _ := planRules([]Service{one})
				for name := range rs.chains {
					labels[name] = fmt.Sprintf("pub %s %s/%d", s.Name, p.Protocol, p.Port)
				}
			}
		}
	}
	return labels
}

// ptRenderChange describes a change as sorted lines.
func ptRenderChange(c *change, labels map[string]string) []string {
	label := func(name string) string {
		if l, ok := labels[name]; ok {
			return l
		}
		return "UNKNOWN " + name
	}
	var out []string
	if c.full {
		out = append(out, "full")
	}
	addrs := func(what string, as []netip.Addr) {
		for _, a := range as {
			out = append(out, what+" "+a.String())
		}
	}
	addrs("del-vip", c.delVIPs)
	addrs("add-vip", c.addVIPs)
	addrs("del-hairpin", c.delHairpin)
	addrs("add-hairpin", c.addHairpin)
	addrs("gone", c.goneEndpoints)
	for what, m := range map[string]map[netip.Addr]string{"del-service-ip": c.delServiceIPs, "add-service-ip": c.addServiceIPs} {
		for a, ch := range m {
			out = append(out, fmt.Sprintf("%s %s -> %s", what, a, label(ch)))
		}
	}
	for what, m := range map[string]map[portKey]string{"del-node-port": c.delNodePorts, "add-node-port": c.addNodePorts} {
		for k, ch := range m {
			out = append(out, fmt.Sprintf("%s %s/%d -> %s", what, ptProto(k.proto), k.port, label(ch)))
		}
	}
	for what, m := range map[string]map[hostPortKey]string{"del-host-port": c.delHostPorts, "add-host-port": c.addHostPorts} {
		for k, ch := range m {
			out = append(out, fmt.Sprintf("%s %s %s/%d -> %s", what, k.addr, ptProto(k.proto), k.port, label(ch)))
		}
	}
	chains := func(what string, names []string) {
		for _, n := range names {
			out = append(out, what+" "+label(n))
		}
	}
	chains("new-chain", c.newChains)
	chains("refill", c.refill)
	chains("del-chain", c.delChains)
	slices.Sort(out)
	return out
}

func TestDiff(t *testing.T) {
	vipWeb, vipDB := ptAddr("10.96.0.1"), ptAddr("10.96.0.2")
	ep1, ep2, ep3 := ptEP("10.0.0.1", false), ptEP("10.0.0.2", false), ptEP("10.0.0.3", true)
	web := func(eps ...Endpoint) Service {
		return Service{Name: "p/web", VIP: vipWeb, Endpoints: eps, Published: []Published{
			{Port: 8080, Target: 80, Protocol: "tcp"},
			{HostIP: ptAddr("127.0.0.1"), Port: 8443, Target: 443, Protocol: "tcp"},
		}}
	}
	db := Service{Name: "p/db", VIP: vipDB, Endpoints: []Endpoint{ep3}, Published: []Published{{Port: 5432, Target: 5432, Protocol: "tcp"}}}
	tests := []struct {
		name      string
		fromNil   bool // cur is nil: nothing known
		cur, want []Service
		wantLines []string // ptRenderChange
		wantEmpty bool
	}{
		{
			name: "from nothing: full, every chain new, every element added", fromNil: true,
			want: []Service{web(ep1, ep2), db, {Name: "p/idle", VIP: ptAddr("10.96.0.3")}},
			wantLines: []string{
				"full",
				"add-vip 10.96.0.1", "add-vip 10.96.0.2", "add-vip 10.96.0.3",
				"add-hairpin 10.0.0.1", "add-hairpin 10.0.0.2", "add-hairpin 10.0.0.3",
				"add-service-ip 10.96.0.1 -> svc p/web", "add-service-ip 10.96.0.2 -> svc p/db",
				"add-node-port tcp/8080 -> pub p/web tcp/8080", "add-node-port tcp/5432 -> pub p/db tcp/5432",
				"add-host-port 127.0.0.1 tcp/8443 -> pub p/web tcp/8443",
				"new-chain svc p/web", "new-chain svc p/db",
				"new-chain pub p/web tcp/8080", "new-chain pub p/web tcp/8443", "new-chain pub p/db tcp/5432",
			},
		},
		{name: "from nothing to nothing is still full", fromNil: true, wantLines: []string{"full"}},
		{name: "identical", cur: []Service{web(ep1, ep2), db}, want: []Service{web(ep2, ep1), db}, wantEmpty: true},
		{name: "nothing to nothing", wantEmpty: true},
		{
			name: "one endpoint removed: its service's chains refilled, hairpin removed, flows flushed",
			cur:  []Service{web(ep1, ep2), db}, want: []Service{web(ep1), db},
			wantLines: []string{
				"del-hairpin 10.0.0.2", "gone 10.0.0.2",
				"refill svc p/web", "refill pub p/web tcp/8080", "refill pub p/web tcp/8443",
			},
		},
		{
			name: "one endpoint added",
			cur:  []Service{web(ep1), db}, want: []Service{web(ep1, ep2), db},
			wantLines: []string{
				"add-hairpin 10.0.0.2",
				"refill svc p/web", "refill pub p/web tcp/8080", "refill pub p/web tcp/8443",
			},
		},
		{
			name: "last endpoint removed: the vip stays, to be rejected",
			cur:  []Service{web(ep1), db}, want: []Service{web(), db},
			wantLines: []string{
				"del-hairpin 10.0.0.1", "gone 10.0.0.1",
				"del-service-ip 10.96.0.1 -> svc p/web",
				"del-node-port tcp/8080 -> pub p/web tcp/8080",
				"del-host-port 127.0.0.1 tcp/8443 -> pub p/web tcp/8443",
				"del-chain svc p/web", "del-chain pub p/web tcp/8080", "del-chain pub p/web tcp/8443",
			},
		},
		{
			name: "service removed: its chains and elements go",
			cur:  []Service{web(ep1, ep2), db}, want: []Service{db},
			wantLines: []string{
				"del-vip 10.96.0.1",
				"del-hairpin 10.0.0.1", "del-hairpin 10.0.0.2", "gone 10.0.0.1", "gone 10.0.0.2",
				"del-service-ip 10.96.0.1 -> svc p/web",
				"del-node-port tcp/8080 -> pub p/web tcp/8080",
				"del-host-port 127.0.0.1 tcp/8443 -> pub p/web tcp/8443",
				"del-chain svc p/web", "del-chain pub p/web tcp/8080", "del-chain pub p/web tcp/8443",
			},
		},
		{
			name: "published target changed: only its chain is refilled",
			cur:  []Service{web(ep1), db},
			want: []Service{web(ep1), {Name: db.Name, VIP: db.VIP, Endpoints: db.Endpoints,
				Published: []Published{{Port: 5432, Target: 5433, Protocol: "tcp"}}}},
			wantLines: []string{"refill pub p/db tcp/5432"},
		},
		{
			name: "host mode toggled: only its chain is refilled",
			cur:  []Service{web(ep1, ep3)},
			want: []Service{{Name: "p/web", VIP: vipWeb, Endpoints: []Endpoint{ep1, ep3}, Published: []Published{
				{Port: 8080, Target: 80, Protocol: "tcp", HostMode: true},
				{HostIP: ptAddr("127.0.0.1"), Port: 8443, Target: 443, Protocol: "tcp"},
			}}},
			wantLines: []string{"refill pub p/web tcp/8080"},
		},
		{
			name: "renamed service: elements point at another chain, deleted and added",
			cur:  []Service{web(ep1)},
			want: []Service{{Name: "p/www", VIP: vipWeb, Endpoints: []Endpoint{ep1}, Published: web().Published}},
			wantLines: []string{
				"del-service-ip 10.96.0.1 -> svc p/web", "add-service-ip 10.96.0.1 -> svc p/www",
				"del-node-port tcp/8080 -> pub p/web tcp/8080", "add-node-port tcp/8080 -> pub p/www tcp/8080",
				"del-host-port 127.0.0.1 tcp/8443 -> pub p/web tcp/8443", "add-host-port 127.0.0.1 tcp/8443 -> pub p/www tcp/8443",
				"del-chain svc p/web", "del-chain pub p/web tcp/8080", "del-chain pub p/web tcp/8443",
				"new-chain svc p/www", "new-chain pub p/www tcp/8080", "new-chain pub p/www tcp/8443",
			},
		},
		{
			name: "published port moves to another service",
			cur:  []Service{web(ep1), db},
			want: []Service{{Name: "p/web", VIP: vipWeb, Endpoints: []Endpoint{ep1}}, {Name: db.Name, VIP: db.VIP, Endpoints: db.Endpoints,
				Published: append(slices.Clone(db.Published), Published{Port: 8080, Target: 80, Protocol: "tcp"})}},
			wantLines: []string{
				"del-node-port tcp/8080 -> pub p/web tcp/8080", "add-node-port tcp/8080 -> pub p/db tcp/8080",
				"del-host-port 127.0.0.1 tcp/8443 -> pub p/web tcp/8443",
				"del-chain pub p/web tcp/8080", "del-chain pub p/web tcp/8443",
				"new-chain pub p/db tcp/8080",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cur *ruleset
			if !tt.fromNil {
				var err error
				if cur, err = planRules(tt.cur); err != nil {
					t.Fatal(err)
				}
			}
			want, err := planRules(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			c := diff(cur, want)
			ptCheckLines(t, "change", ptRenderChange(c, ptChainLabels(tt.cur, tt.want)), tt.wantLines)
			if got := c.empty(); got != tt.wantEmpty {
				t.Errorf("empty() = %v, want %v", got, tt.wantEmpty)
			}
			for what, names := range map[string][]string{"newChains": c.newChains, "refill": c.refill, "delChains": c.delChains} {
				if !slices.IsSorted(names) {
					t.Errorf("%s is not sorted: %q", what, names)
				}
			}
			if !slices.IsSortedFunc(c.goneEndpoints, netip.Addr.Compare) {
				t.Errorf("goneEndpoints is not sorted: %v", c.goneEndpoints)
			}
			// Every chain refilled or new must be one that want fills.
			for _, n := range slices.Concat(c.newChains, c.refill) {
				if len(want.chains[n]) == 0 {
					t.Errorf("chain %s is to be filled but want has no targets for it", n)
				}
			}
		})
	}
}

// TestDiffApplied checks that applying a change to cur gives want, for a
// chain of plans: the change is complete (nothing is left out of it).
func TestDiffApplied(t *testing.T) {
	vip := ptAddr("10.96.0.1")
	steps := [][]Service{
		{{Name: "p/web", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.1", true)}, Published: []Published{{Port: 80, Target: 80, Protocol: "tcp"}}}},
		{{Name: "p/web", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.1", true), ptEP("10.0.0.2", false)}, Published: []Published{{Port: 80, Target: 80, Protocol: "tcp", HostMode: true}}}},
		{{Name: "p/web", VIP: vip}, {Name: "p/api", VIP: ptAddr("10.96.0.2"), Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
			Published: []Published{{HostIP: ptAddr("127.0.0.1"), Port: 80, Target: 80, Protocol: "udp"}}}},
		{{Name: "p/api", VIP: vip, Endpoints: []Endpoint{ptEP("10.0.0.3", false)}}},
		nil,
	}
	var cur *ruleset
	for i, svcs := range steps {
		want, err := planRules(svcs)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		c := diff(cur, want)
		got := newRuleset()
		if cur != nil && !c.full {
			got = ptCloneRuleset(cur)
		}
		ptApplyChange(got, c, want)
		if g, w := ptRender(got), ptRender(want); !slices.Equal(g, w) {
			t.Errorf("step %d: applying the change gives\n\t%s\nwant\n\t%s", i, strings.Join(g, "\n\t"), strings.Join(w, "\n\t"))
		}
		cur = want
	}
}

func ptCloneRuleset(rs *ruleset) *ruleset {
	out := newRuleset()
	for k, v := range rs.vips {
		out.vips[k] = v
	}
	for k, v := range rs.endpoints {
		out.endpoints[k] = v
	}
	for k, v := range rs.serviceIPs {
		out.serviceIPs[k] = v
	}
	for k, v := range rs.nodePorts {
		out.nodePorts[k] = v
	}
	for k, v := range rs.hostPorts {
		out.hostPorts[k] = v
	}
	for k, v := range rs.chains {
		out.chains[k] = slices.Clone(v)
	}
	return out
}

// ptApplyChange does to rs what the kernel does with c (kernel_linux.go's
// program), taking the chains' contents from want.
func ptApplyChange(rs *ruleset, c *change, want *ruleset) {
	for k := range c.delServiceIPs {
		delete(rs.serviceIPs, k)
	}
	for k := range c.delNodePorts {
		delete(rs.nodePorts, k)
	}
	for k := range c.delHostPorts {
		delete(rs.hostPorts, k)
	}
	for _, a := range c.delVIPs {
		delete(rs.vips, a)
	}
	for _, a := range c.delHairpin {
		delete(rs.endpoints, a)
	}
	for _, n := range c.delChains {
		delete(rs.chains, n)
	}
	for _, n := range slices.Concat(c.newChains, c.refill) {
		rs.chains[n] = slices.Clone(want.chains[n])
	}
	for _, a := range c.addVIPs {
		rs.vips[a] = true
	}
	for _, a := range c.addHairpin {
		rs.endpoints[a] = true
	}
	for k, v := range c.addServiceIPs {
		rs.serviceIPs[k] = v
	}
	for k, v := range c.addNodePorts {
		rs.nodePorts[k] = v
	}
	for k, v := range c.addHostPorts {
		rs.hostPorts[k] = v
	}
}

// TestPlanRulesRegressions holds cases a review found wrong in plan.go
// (fixed since): errors name the owning service, "::" means every address,
// and port ownership does not depend on readiness.
func TestPlanRulesRegressions(t *testing.T) {
	tests := []struct {
		name     string
		services []Service
		want     []string
		wantErr  []string
	}{
		{
			// BUG: the duplicate-port error names the other *chain*
			// ("pub-p-a-1a2b3c4d"), not the other service, unlike the
			// duplicate-VIP error ("already used by p/a"). The chain's
			// readable part mangles the name ("/" -> "-") and cuts it at 32
			// characters, so the user cannot tell which service holds the port.
			name: "duplicate published port names both services",
			services: []Service{
				{Name: "p/a", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
					Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}},
				{Name: "p/b", Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
					Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}},
			},
			want: []string{
				"hairpin 10.0.0.1", "hairpin 10.0.0.2",
				"node-port tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }",
			},
			wantErr: []string{"p/b", "p/a", "8080"},
		},
		{
			// BUG: Published.HostIP's doc (service.go) says "the unspecified
			// address (or invalid) means every local address of the node",
			// and cluster/node/discovery.go relies on it ("invalid or
			// unspecified: every address"), but planPublished checks Is4
			// before IsUnspecified, so host_ip "::" (compose "[::]:8080:80")
			// is rejected as "host_ip is not IPv4" instead of becoming a
			// node port.
			name: "IPv6 unspecified host_ip publishes a node port",
			services: []Service{{Name: "p/a", Endpoints: []Endpoint{ptEP("10.0.0.1", false)},
				Published: []Published{{HostIP: ptAddr("::"), Port: 8080, Target: 80, Protocol: "tcp"}}}},
			want: []string{
				"hairpin 10.0.0.1",
				"node-port tcp/8080 -> pub: dnat to numgen random mod 1 map { 0 : 10.0.0.1 . 80 }",
			},
		},
		{
			// BUG: a published port is claimed only once it has targets, so
			// a duplicate ingress-mode port goes unreported while the first
			// service has no ready endpoint: the second service gets the
			// port, and loses it (with an error) as soon as the first one
			// becomes ready. Who owns a port flips with readiness. (For
			// `mode: host` skipping is right: the port is not published on a
			// node without local endpoints.)
			name: "duplicate ingress port is an error even when the first service has no endpoints",
			services: []Service{
				{Name: "p/a", Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}},
				{Name: "p/b", Endpoints: []Endpoint{ptEP("10.0.0.2", false)},
					Published: []Published{{Port: 8080, Target: 80, Protocol: "tcp"}}},
			},
			want:    []string{"hairpin 10.0.0.2"},
			wantErr: []string{"service p/b: ", "published port 8080/tcp is already published"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := planRules(tt.services)
			ptCheckErr(t, err, tt.wantErr)
			ptCheckLines(t, "plan", ptRender(rs), tt.want)
		})
	}
}
