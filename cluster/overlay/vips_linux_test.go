package overlay

import (
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

// loAddrs lists the addresses of cidr on lo.
func loAddrs(t *testing.T, cidr netip.Prefix) []netip.Addr {
	t.Helper()
	link, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, ad := range have {
		if a, ok := netip.AddrFromSlice(ad.IP.To4()); ok && cidr.Contains(a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func TestLoopbackVIPs(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root (netlink) and CI is set")
		}
		t.Skip("needs root")
	}
	cidr := netip.MustParsePrefix("10.254.77.0/24") // test-only range, removed below
	v := NewLoopbackVIPs(cidr)
	t.Cleanup(func() { _ = v.Set(nil) })
	a1, a2, a3 := netip.MustParseAddr("10.254.77.1"), netip.MustParseAddr("10.254.77.2"), netip.MustParseAddr("10.254.77.3")

	steps := []struct {
		name    string
		desired []netip.Addr
		wantErr bool
		want    []netip.Addr
	}{
		{"add two", []netip.Addr{a1, a2}, false, []netip.Addr{a1, a2}},
		{"idempotent", []netip.Addr{a2, a1}, false, []netip.Addr{a1, a2}},
		{"swap one", []netip.Addr{a2, a3}, false, []netip.Addr{a2, a3}},
		{"outside cidr refused", []netip.Addr{netip.MustParseAddr("10.254.78.1")}, true, []netip.Addr{a2, a3}},
		{"clear", nil, false, nil},
	}
	for _, s := range steps {
		err := v.Set(s.desired)
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: err = %v, wantErr %v", s.name, err, s.wantErr)
		}
		if got := loAddrs(t, cidr); !slices.Equal(got, s.want) {
			t.Fatalf("%s: lo has %v, want %v", s.name, got, s.want)
		}
	}
}
