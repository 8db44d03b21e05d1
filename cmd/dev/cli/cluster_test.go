package cli

import "testing"

func TestParseNodeLabels(t *testing.T) {
	got, err := parseNodeLabels([]string{"disk=ssd", "zone-", "team=a-b"})
	if err != nil || len(got) != 3 || got["disk"] != "ssd" || got["zone"] != "" || got["team"] != "a-b" {
		t.Errorf("parseNodeLabels = %v, %v", got, err)
	}
	for _, bad := range []string{"disk=", "disk", "-x=1", "a b=c", "k=v w"} {
		if _, err := parseNodeLabels([]string{bad}); err == nil {
			t.Errorf("parseNodeLabels(%q) succeeded", bad)
		}
	}
}
