package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

// fakeImagesAPI: shop-web-1 on n1 (a sidecar logs), shop-db-1 on n1,
// stopped, shop-web-2 on n2, which cannot answer, shop-web-3 pending.
type fakeImagesAPI struct{ asked []string }

func (f *fakeImagesAPI) Pods(context.Context, api.PodQuery) (api.PodList, error) {
	return api.PodList{Pods: append(testPods(), api.Pod{Name: "shop-web-3", Project: "shop", Service: "web"})}, nil
}

func (f *fakeImagesAPI) PodImages(_ context.Context, pod string) (api.PodImages, error) {
	f.asked = append(f.asked, pod)
	web := api.ContainerImage{Container: "web", Repository: "shop-web", Tag: "latest",
		ImageID: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Size: 12_500_000}
	switch pod {
	case "shop-web-1":
		return api.PodImages{Pod: pod, Service: "web", Node: "n1", Containers: []api.ContainerImage{web,
			{Container: "logs", Repository: "busybox", Tag: "1.36", ImageID: "sha256:fedcba9876543210fedcba9876543210", Size: 4_300_000}}}, nil
	case "shop-db-1":
		return api.PodImages{Pod: pod, Service: "db", Node: "n1", Containers: []api.ContainerImage{
			{Container: "db", Repository: "shop-db", Tag: "<none>", ImageID: "sha256:aaaabbbbccccddddeeee", Size: 900}}}, nil
	}
	return api.PodImages{}, errors.New("node n2 is down")
}

func TestImages(t *testing.T) {
	tests := []struct {
		name     string
		services []string
		o        imagesOptions
		want     string
		wantErr  string
	}{
		{name: "table", o: imagesOptions{output: "table"},
			want: "CONTAINER         NODE   REPOSITORY   TAG      IMAGE ID       SIZE\n" +
				"shop-db-1         n1     shop-db      <none>   aaaabbbbcccc   900B\n" +
				"shop-web-1        n1     shop-web     latest   0123456789ab   12.5MB\n" +
				"shop-web-1/logs   n1     busybox      1.36     fedcba987654   4.3MB\n",
			wantErr: "images shop-web-2 (node n2): node n2 is down"},
		{name: "quiet: each ID once, without sha256:", services: []string{"db", "web"}, o: imagesOptions{quiet: true, output: "table"},
			want: "aaaabbbbccccddddeeee\n" +
				"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n" +
				"fedcba9876543210fedcba9876543210\n",
			wantErr: "shop-web-2"},
		{name: "one service", services: []string{"db"}, o: imagesOptions{output: "table"},
			want: "CONTAINER   NODE   REPOSITORY   TAG      IMAGE ID       SIZE\n" +
				"shop-db-1   n1     shop-db      <none>   aaaabbbbcccc   900B\n"},
		{name: "unknown service", services: []string{"nope"}, o: imagesOptions{output: "table"},
			wantErr: "no pods of service nope in project shop; `dev ps -p shop` lists them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeImagesAPI{}
			var out, errOut bytes.Buffer
			err := runImages(context.Background(), f, "shop", tt.services, tt.o, &out, &errOut)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if out.String() != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", out.String(), tt.want)
			}
			for _, p := range f.asked {
				if p == "shop-web-3" {
					t.Errorf("asked the node of a pending pod")
				}
			}
		})
	}
}

func TestImagesJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runImages(context.Background(), &fakeImagesAPI{}, "shop", []string{"db"}, imagesOptions{output: "json"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	var rows []imageRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	want := imageRow{Container: "shop-db-1", Pod: "shop-db-1", Project: "shop", Service: "db", Node: "n1",
		Repository: "shop-db", Tag: "<none>", ImageID: "sha256:aaaabbbbccccddddeeee", Size: 900}
	if len(rows) != 1 || rows[0] != want {
		t.Errorf("rows = %+v, want [%+v]", rows, want)
	}
}
