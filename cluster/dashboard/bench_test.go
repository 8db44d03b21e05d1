package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

// BenchmarkLive measures one /live answer (every section rendered anew),
// what each open page costs the agent at every change of the cluster.
func BenchmarkLive(b *testing.B) {
	for _, size := range []struct{ nodes, services, pods int }{{3, 10, 30}, {100, 100, 1000}} {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", size.nodes, size.pods), func(b *testing.B) {
			src := newFake()
			src.snap.Nodes, src.snap.Services, src.snap.Pods = nil, nil, nil
			for i := range size.nodes {
				src.snap.Nodes = append(src.snap.Nodes, api.Node{Name: fmt.Sprintf("n%03d", i), Status: api.NodeReady,
					PodSubnet: fmt.Sprintf("10.213.%d.0/24", i+1), Allocatable: api.ResourceAmounts{NanoCPUs: 2e9}})
			}
			for i := range size.services {
				src.snap.Services = append(src.snap.Services, api.ServiceInfo{Project: "p", Name: fmt.Sprintf("s%03d", i),
					VIP: "10.214.0.1", Ports: []api.PortSpec{{Target: 80}}, Desired: 10, Ready: 10})
			}
			for i := range size.pods {
				src.snap.Pods = append(src.snap.Pods, api.Pod{Name: fmt.Sprintf("p-s%03d-%d", i%size.services, i), Project: "p",
					Service: fmt.Sprintf("s%03d", i%size.services), Index: i, Node: fmt.Sprintf("n%03d", i%size.nodes),
					Status: api.PodStatus{State: api.PodRunning, IP: "10.213.1.2"}})
			}
			for i := range 60 {
				src.events = append(src.events, api.Event{Index: uint64(i + 1), Reason: api.EventStarted, Kind: "pod", Name: "p-s000-1", Message: "started"})
			}
			d, err := New(src, Options{Token: "t"})
			if err != nil {
				b.Fatal(err)
			}
			h := d.Handler()
			req := httptest.NewRequest(http.MethodGet, "/live", nil)
			req.AddCookie(&http.Cookie{Name: cookieName, Value: "t"})
			b.ReportAllocs()
			var size int
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("live: %d %s", w.Code, w.Body)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/answer")
		})
	}
}
