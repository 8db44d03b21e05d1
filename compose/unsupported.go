package compose

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Warning is a compose attribute dev ignores.
type Warning struct {
	// Service is the service the attribute belongs to; empty for a top-level
	// attribute.
	Service string
	// Key is the compose key, dotted below the service: "network_mode",
	// "deploy.placement", "ports.mode".
	Key string
	// Message says what happens; empty means "is not supported by dev yet
	// and is ignored".
	Message string
}

// String renders the warning for humans:
//
//	service "web": key "privileged" is not supported by dev yet and is ignored
func (w Warning) String() string {
	var b strings.Builder
	if w.Service != "" {
		fmt.Fprintf(&b, "service %q: ", w.Service)
	}
	if w.Message == "" {
		fmt.Fprintf(&b, "key %q is not supported by dev yet and is ignored", w.Key)
	} else {
		fmt.Fprintf(&b, "key %q: %s", w.Key, w.Message)
	}
	return b.String()
}

// warner collects the warnings of one service, once each.
type warner struct {
	service string
	seen    map[Warning]bool
	list    []Warning
}

func (w *warner) add(key, message string) {
	x := Warning{Service: w.service, Key: key, Message: message}
	if w.seen[x] {
		return
	}
	if w.seen == nil {
		w.seen = map[Warning]bool{}
	}
	w.seen[x] = true
	w.list = append(w.list, x)
}

func (w *warner) sorted() []Warning {
	sort.Slice(w.list, func(i, j int) bool {
		a, b := w.list[i], w.list[j]
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Message < b.Message
	})
	return w.list
}

// attrs is a tree of supported service attributes: a nil subtree means the
// whole value is supported; "*" matches any mapping key and "[]" any list item.
type attrs map[string]attrs

// supported lists every service attribute Convert honours. Anything else a
// compose file sets is reported, so attributes added to the compose
// specification later are caught without a change here.
var supported = newAttrs(
	"image",
	"build.context", "build.dockerfile", "build.target", "build.args",
	"command", "entrypoint",
	"environment", "env_file", // env_file is merged into environment by the loader
	"labels", "label_file", // label_file is merged into labels by the loader
	"ports.[].target", "ports.[].published", "ports.[].protocol", "ports.[].host_ip", "ports.[].name", "ports.[].mode",
	"expose",
	"volumes.[].type", "volumes.[].source", "volumes.[].target", "volumes.[].read_only",
	"tmpfs",
	"secrets.[].source", "secrets.[].target", "secrets.[].mode",
	"configs.[].source", "configs.[].target", "configs.[].mode",
	"healthcheck.test", "healthcheck.interval", "healthcheck.timeout", "healthcheck.start_period",
	"healthcheck.retries", "healthcheck.disable",
	"restart",
	"scale", "deploy.replicas",
	"deploy.resources.limits.cpus", "deploy.resources.limits.memory", "deploy.resources.limits.pids",
	"deploy.resources.reservations.cpus", "deploy.resources.reservations.memory",
	"cpus", "mem_limit", "mem_reservation", "pids_limit",
	"depends_on.*.condition", "depends_on.*.required",
	"stop_signal", "stop_grace_period",
	"user", "working_dir",
	"cap_add", "cap_drop", "sysctls",
	"hostname", "container_name",
	"init", "tty", "stdin_open",
	"networks.*.aliases",
	"deploy.update_config", "deploy.rollback_config",
	"deploy.placement.constraints", "deploy.placement.preferences.[].spread", "deploy.placement.max_replicas_per_node",
	"develop.watch.[].path", "develop.watch.[].action", "develop.watch.[].target", // read by the CLI (dev up --watch)
	"develop.watch.[].ignore", "develop.watch.[].include", "develop.watch.[].initial_sync",
	"profiles", // applied by the loader
	"extends",  // applied by the loader
)

func newAttrs(paths ...string) attrs {
	root := attrs{}
	for _, p := range paths {
		node := root
		parts := strings.Split(p, ".")
		for i, part := range parts {
			if i == len(parts)-1 {
				node[part] = nil
				break
			}
			next, ok := node[part]
			if !ok || next == nil {
				next = attrs{}
				node[part] = next
			}
			node = next
		}
	}
	return root
}

// unsupported reports every attribute of s that is set and not supported.
// Values compose-go fills in by default (the default network, ingress port
// mode, depends_on implied by links or network_mode) are not reported.
func unsupported(s types.ServiceConfig, w *warner) {
	s = withoutDefaults(s)
	b, err := json.Marshal(s)
	if err != nil {
		w.add("(service)", fmt.Sprintf("cannot inspect attributes: %v", err))
		return
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		w.add("(service)", fmt.Sprintf("cannot inspect attributes: %v", err))
		return
	}
	dropEmptyWatchExec(m)
	walkAttrs(m, supported, nil, func(key string) { w.add(key, "") })
}

// dropEmptyWatchExec removes the "exec" hook JSON encoding gives every
// develop.watch rule ({"command": null}) when the rule sets none.
func dropEmptyWatchExec(m map[string]any) {
	develop, _ := m["develop"].(map[string]any)
	rules, _ := develop["watch"].([]any)
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		if exec, ok := rule["exec"].(map[string]any); ok {
			empty := true
			for _, v := range exec {
				empty = empty && isEmpty(v)
			}
			if empty {
				delete(rule, "exec")
			}
		}
	}
}

func walkAttrs(v any, a attrs, key []string, report func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if isEmpty(e) {
				continue
			}
			child, ok := a[k]
			next := append(key[:len(key):len(key)], k)
			if !ok {
				if child, ok = a["*"]; ok {
					next = key // a name (service, label), not a key
				}
			}
			if !ok {
				report(strings.Join(next, "."))
				continue
			}
			if child != nil {
				walkAttrs(e, child, next, report)
			}
		}
	case []any:
		child, ok := a["[]"]
		if !ok {
			return // a list where a mapping was expected: compose-go validated it
		}
		if child == nil {
			return
		}
		for _, e := range v {
			walkAttrs(e, child, key, report)
		}
	}
}

// isEmpty reports values JSON encoding leaves behind for unset attributes:
// null, "", {} and []. false and 0 only survive omitempty when the user set
// them (pointer fields), so they count as set.
func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}

// withoutDefaults clears what compose-go sets without the user asking.
func withoutDefaults(s types.ServiceConfig) types.ServiceConfig {
	if len(s.Networks) == 1 {
		if n, ok := s.Networks["default"]; ok && (n == nil || reflect.DeepEqual(*n, types.ServiceNetworkConfig{})) {
			s.Networks = nil
		}
	}
	if len(s.Ports) > 0 {
		ports := make([]types.ServicePortConfig, len(s.Ports))
		copy(ports, s.Ports)
		for i := range ports {
			if ports[i].Mode == "ingress" {
				ports[i].Mode = ""
			}
		}
		s.Ports = ports
	}
	if s.Deploy != nil {
		d := *s.Deploy
		if d.Mode == "replicated" {
			d.Mode = ""
		}
		if d.EndpointMode == "vip" {
			d.EndpointMode = ""
		}
		s.Deploy = &d
	}
	if len(s.DependsOn) > 0 {
		implied := impliedDependencies(s)
		deps := make(types.DependsOnConfig, len(s.DependsOn))
		for name, d := range s.DependsOn {
			if implied[name] {
				d.Restart = false
			}
			deps[name] = d
		}
		s.DependsOn = deps
	}
	// Sharing a service's network makes a sidecar (sidecars.go), and its
	// IPC namespace comes with the pod. (After the implied dependencies,
	// which read them.)
	if main, ok := strings.CutPrefix(s.NetworkMode, types.ServicePrefix); ok {
		s.NetworkMode = ""
		if s.Ipc == types.ServicePrefix+main {
			s.Ipc = ""
		}
		if s.Pid == types.ServicePrefix+main {
			s.Pid = ""
		}
	}
	// The host's namespaces (namespaces.go).
	if s.NetworkMode == "host" {
		s.NetworkMode = ""
	}
	if s.Pid == "host" {
		s.Pid = ""
	}
	return s
}

// impliedDependencies are the depends_on entries compose-go adds for links,
// volumes_from and service: namespaces (each reported on its own key).
func impliedDependencies(s types.ServiceConfig) map[string]bool {
	out := map[string]bool{}
	for _, l := range s.Links {
		name, _, _ := strings.Cut(l, ":")
		out[name] = true
	}
	for _, ns := range []string{s.NetworkMode, s.Ipc, s.Pid, s.Uts, s.Cgroup} {
		if name, ok := strings.CutPrefix(ns, types.ServicePrefix); ok {
			out[name] = true
		}
	}
	for _, v := range s.VolumesFrom {
		if !strings.HasPrefix(v, types.ContainerPrefix) {
			name, _, _ := strings.Cut(v, ":")
			out[name] = true
		}
	}
	return out
}
