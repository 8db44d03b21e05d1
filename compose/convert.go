package compose

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/devhq/dev/cluster/api"
)

// Convert turns a loaded compose-go project (active services only) into the
// project dev deploys. Services come out sorted by name and every slice in a
// deterministic order, so ServiceSpec.Hash is stable across loads. Attributes
// dev does not implement yield one Warning each per service. Secret files are
// read here.
func Convert(p *types.Project) (*api.Project, []Warning, error) {
	if p == nil {
		return nil, nil, fmt.Errorf("convert compose project: no project")
	}
	// env_file is normally already merged into environment (and discarded);
	// resolving again is idempotent and covers callers that skipped it.
	if hasEnvFiles(p) {
		resolved, err := p.WithServicesEnvironmentResolved(true)
		if err != nil {
			return nil, nil, fmt.Errorf("resolve environment: %w", err)
		}
		p = resolved
	}
	out := &api.Project{Name: p.Name}
	var warnings []Warning
	var err error
	for _, name := range p.ServiceNames() {
		spec, w, err := convertService(p, name, p.Services[name])
		if err != nil {
			return nil, nil, err
		}
		out.Services = append(out.Services, spec)
		warnings = append(warnings, w...)
	}
	if out.Services, err = groupSidecars(p, out.Services); err != nil {
		return nil, nil, err
	}
	if err := localhostRoutes(p, out); err != nil {
		return nil, nil, err
	}
	if err := api.CheckIngress(out); err != nil {
		return nil, nil, err
	}
	for _, name := range p.VolumeNames() {
		if !bool(p.Volumes[name].External) {
			out.Volumes = append(out.Volumes, name)
		}
	}
	jobs := make([]string, 0, len(p.Jobs))
	for name := range p.Jobs {
		jobs = append(jobs, name)
	}
	sort.Strings(jobs)
	for _, name := range jobs {
		warnings = append(warnings, Warning{Key: "jobs." + name})
	}
	return out, warnings, nil
}

func hasEnvFiles(p *types.Project) bool {
	for _, s := range p.Services {
		if len(s.EnvFiles) > 0 {
			return true
		}
	}
	return false
}

func convertService(p *types.Project, name string, s types.ServiceConfig) (api.ServiceSpec, []Warning, error) {
	if s.Provider != nil {
		return api.ServiceSpec{}, nil, fmt.Errorf("service %q: provider services are not supported by dev; remove provider or the service", name)
	}
	if err := checkContainerName(name, s); err != nil {
		return api.ServiceSpec{}, nil, err
	}
	w := &warner{service: name}
	spec := api.ServiceSpec{
		Project:       p.Name,
		Name:          name,
		Image:         s.Image,
		Command:       nilIfEmpty(s.Command),
		Entrypoint:    nilIfEmpty(s.Entrypoint),
		Environment:   resolvedMap(s.Environment),
		Expose:        nilIfEmpty([]string(s.Expose)),
		Replicas:      s.GetScale(),
		Labels:        copyMap(s.Labels),
		StopSignal:    s.StopSignal,
		User:          s.User,
		WorkingDir:    s.WorkingDir,
		CapAdd:        nilIfEmpty(s.CapAdd),
		CapDrop:       nilIfEmpty(s.CapDrop),
		Sysctls:       copyMap(s.Sysctls),
		Hostname:      s.Hostname,
		ContainerName: s.ContainerName,
		Init:          s.Init,
		Tty:           s.Tty,
		StdinOpen:     s.StdinOpen,
	}
	if s.StopGracePeriod != nil {
		d := api.Duration(*s.StopGracePeriod)
		spec.StopGracePeriod = &d
	}
	if s.Build != nil {
		spec.Build = &api.BuildSpec{
			Context:    s.Build.Context,
			Dockerfile: s.Build.Dockerfile,
			Target:     s.Build.Target,
			Args:       resolvedMap(s.Build.Args),
		}
		if spec.Image == "" {
			spec.Image = p.Name + "-" + name // compose's default image name
		}
	}

	var err error
	if spec.Ports, err = convertPorts(name, s.Ports); err != nil {
		return api.ServiceSpec{}, nil, err
	}
	spec.Volumes = convertVolumes(p, s, w)
	if spec.Secrets, err = convertSecrets(p, name, s.Secrets); err != nil {
		return api.ServiceSpec{}, nil, err
	}
	if spec.Configs, err = convertConfigs(p, name, s.Configs); err != nil {
		return api.ServiceSpec{}, nil, err
	}
	spec.Healthcheck = convertHealthcheck(s.HealthCheck)
	if spec.Restart, err = convertRestart(name, s.Restart, w); err != nil {
		return api.ServiceSpec{}, nil, err
	}
	spec.Resources = convertResources(s)
	spec.Placement = convertPlacement(s)
	if s.Deploy != nil {
		spec.Update = convertUpdate(s.Deploy.UpdateConfig)
		spec.Rollback = convertUpdate(s.Deploy.RollbackConfig)
	}
	if spec.Ingress, err = convertIngress(name, s); err != nil {
		return api.ServiceSpec{}, nil, err
	}
	spec.DependsOn = convertDependsOn(s.DependsOn)
	spec.Networks = convertNetworks(s.Networks)
	if err := convertNamespaces(name, s, &spec, w); err != nil {
		return api.ServiceSpec{}, nil, err
	}

	unsupported(s, w)
	return spec, w.sorted(), nil
}

// checkContainerName rejects a fixed container name on several replicas.
func checkContainerName(service string, s types.ServiceConfig) error {
	return api.CheckReplicas(service, s.GetScale(), s.ContainerName)
}

func nilIfEmpty[S ~[]string](s S) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func copyMap[M ~map[string]string](m M) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// resolvedMap drops keys without a value (unset variables), as compose does.
func resolvedMap(m types.MappingWithEquals) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != nil {
			out[k] = *v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func convertPorts(service string, ports []types.ServicePortConfig) ([]api.PortSpec, error) {
	var out []api.PortSpec
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("service %q: port %d/%s: protocol %s is not supported; use tcp or udp", service, p.Target, p.Protocol, p.Protocol)
		}
		if p.Target == 0 || p.Target > 65535 {
			return nil, fmt.Errorf("service %q: port target %d is out of range 1-65535", service, p.Target)
		}
		spec := api.PortSpec{Name: p.Name, Target: uint16(p.Target), Protocol: proto, HostIP: p.HostIP}
		switch p.Mode {
		case "", "ingress":
		case api.PortModeHost:
			spec.Mode = api.PortModeHost
		default:
			return nil, fmt.Errorf("service %q: port mode %q is not supported; use ingress (the default) or host", service, p.Mode)
		}
		if p.Published != "" {
			if strings.Contains(p.Published, "-") {
				return nil, fmt.Errorf("service %q: published port range %q is not supported; publish a single port for target %d",
					service, p.Published, p.Target)
			}
			n, err := strconv.ParseUint(p.Published, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("service %q: published port %q is not a port number (1-65535)", service, p.Published)
			}
			spec.Published = uint16(n)
		}
		out = append(out, spec)
	}
	return out, nil
}

func convertVolumes(p *types.Project, s types.ServiceConfig, w *warner) []api.VolumeMount {
	var out []api.VolumeMount
	for _, v := range s.Volumes {
		m := api.VolumeMount{Type: v.Type, Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume:
			m.Source = v.Source
			if vol, ok := p.Volumes[v.Source]; ok && bool(vol.External) {
				w.add("volumes", fmt.Sprintf("volume %q is external: dev does not support external volumes yet and mounts a project volume instead", v.Source))
			}
		case types.VolumeTypeBind:
			m.Source = v.Source
			if !filepath.IsAbs(m.Source) {
				m.Source = filepath.Join(p.WorkingDir, m.Source)
			}
		case types.VolumeTypeTmpfs:
		default:
			w.add("volumes", fmt.Sprintf("volume type %q (target %s) is not supported by dev yet and is ignored", v.Type, v.Target))
			continue
		}
		out = append(out, m)
	}
	// service-level tmpfs: "PATH[:OPTIONS]"
	for _, t := range s.Tmpfs {
		target, opts, _ := strings.Cut(t, ":")
		if opts != "" {
			w.add("tmpfs", fmt.Sprintf("options %q of %s are not supported by dev yet and are ignored", opts, target))
		}
		out = append(out, api.VolumeMount{Type: api.MountTmpfs, Target: target})
	}
	return out
}

// fileKind is what differs between compose's secrets and configs.
type fileKind struct {
	key    string // "secret" or "config"
	defDir string // where a target that is not absolute goes
}

var (
	secretFiles = fileKind{key: "secret", defDir: "/run/secrets/"}
	configFiles = fileKind{key: "config", defDir: "/"}
)

func convertSecrets(p *types.Project, service string, refs []types.ServiceSecretConfig) ([]api.SecretMount, error) {
	return convertFiles(p, service, secretFiles,
		mapValues(p.Secrets, func(v types.SecretConfig) types.FileObjectConfig { return types.FileObjectConfig(v) }),
		mapSlice(refs, func(r types.ServiceSecretConfig) types.FileReferenceConfig { return types.FileReferenceConfig(r) }))
}

func convertConfigs(p *types.Project, service string, refs []types.ServiceConfigObjConfig) ([]api.SecretMount, error) {
	return convertFiles(p, service, configFiles,
		mapValues(p.Configs, func(v types.ConfigObjConfig) types.FileObjectConfig { return types.FileObjectConfig(v) }),
		mapSlice(refs, func(r types.ServiceConfigObjConfig) types.FileReferenceConfig { return types.FileReferenceConfig(r) }))
}

func mapValues[M ~map[string]V, V, W any](m M, f func(V) W) map[string]W {
	out := make(map[string]W, len(m))
	for k, v := range m {
		out[k] = f(v)
	}
	return out
}

func mapSlice[S ~[]V, V, W any](s S, f func(V) W) []W {
	out := make([]W, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

// convertFiles turns a service's secrets or configs into the files its
// containers get: the content read now (file, environment or inline
// content), the target (default <defDir><name>), the mode.
func convertFiles(p *types.Project, service string, kind fileKind, defs map[string]types.FileObjectConfig, refs []types.FileReferenceConfig) ([]api.SecretMount, error) {
	var out []api.SecretMount
	for _, ref := range refs {
		def, ok := defs[ref.Source]
		if !ok {
			return nil, fmt.Errorf("service %q: %s %q is not declared in the top-level %ss", service, kind.key, ref.Source, kind.key)
		}
		var content []byte
		switch {
		case bool(def.External):
			return nil, fmt.Errorf("service %q: %s %q is external, which dev does not support; declare it with file:, environment: or content:", service, kind.key, ref.Source)
		case def.File != "":
			file := def.File
			if !filepath.IsAbs(file) {
				file = filepath.Join(p.WorkingDir, file)
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("service %q: read %s %q: %w", service, kind.key, ref.Source, err)
			}
			content = b
		case def.Environment != "":
			v, ok := p.Environment[def.Environment]
			if !ok {
				return nil, fmt.Errorf("service %q: %s %q: environment variable %s is not set", service, kind.key, ref.Source, def.Environment)
			}
			content = []byte(v)
		case def.Content != "":
			content = []byte(def.Content)
		default:
			return nil, fmt.Errorf("service %q: %s %q has none of file:, environment: or content:, which dev needs", service, kind.key, ref.Source)
		}
		target := ref.Target
		switch {
		case target == "":
			target = kind.defDir + ref.Source
		case !path.IsAbs(target):
			target = kind.defDir + target
		}
		m := api.SecretMount{Name: ref.Source, Target: target, Content: content}
		if ref.Mode != nil {
			m.Mode = uint32(*ref.Mode)
		}
		out = append(out, m)
	}
	return out, nil
}

func convertHealthcheck(hc *types.HealthCheckConfig) *api.Healthcheck {
	if hc == nil {
		return nil
	}
	if hc.Disable || (len(hc.Test) > 0 && strings.EqualFold(hc.Test[0], "NONE")) {
		return &api.Healthcheck{Test: []string{"NONE"}, Disable: true}
	}
	h := &api.Healthcheck{
		Test:        nilIfEmpty(hc.Test),
		Interval:    duration(hc.Interval),
		Timeout:     duration(hc.Timeout),
		StartPeriod: duration(hc.StartPeriod),
	}
	if hc.Retries != nil {
		h.Retries = int(*hc.Retries)
	}
	return h
}

func duration(d *types.Duration) *api.Duration {
	if d == nil {
		return nil
	}
	v := api.Duration(time.Duration(*d))
	return &v
}

func convertRestart(service, restart string, w *warner) (string, error) {
	policy, max, _ := strings.Cut(restart, ":")
	switch policy {
	case "":
		return "", nil
	case api.RestartNo, api.RestartAlways, api.RestartUnlessStopped:
		if max == "" {
			return policy, nil
		}
	case api.RestartOnFailure:
		if max == "" {
			return policy, nil
		}
		if _, err := strconv.ParseUint(max, 10, 32); err == nil {
			w.add("restart", fmt.Sprintf("the retry limit of %q is not supported by dev yet and is ignored", restart))
			return policy, nil
		}
	}
	return "", fmt.Errorf("service %q: restart %q is not valid; use no, always, on-failure[:N] or unless-stopped", service, restart)
}

func convertResources(s types.ServiceConfig) api.Resources {
	var r api.Resources
	if s.Deploy != nil {
		if l := s.Deploy.Resources.Limits; l != nil {
			r.Limits = amounts(l)
		}
		if l := s.Deploy.Resources.Reservations; l != nil {
			r.Reservations = amounts(l)
		}
	}
	// the service-level forms compose also accepts (it rejects conflicting values)
	if r.Limits.NanoCPUs == 0 {
		r.Limits.NanoCPUs = nanoCPUs(s.CPUS)
	}
	if r.Limits.MemoryBytes == 0 {
		r.Limits.MemoryBytes = int64(s.MemLimit)
	}
	if r.Limits.Pids == 0 {
		r.Limits.Pids = s.PidsLimit
	}
	if r.Reservations.MemoryBytes == 0 {
		r.Reservations.MemoryBytes = int64(s.MemReservation)
	}
	return r
}

func amounts(r *types.Resource) api.ResourceAmounts {
	return api.ResourceAmounts{
		NanoCPUs:    nanoCPUs(float32(r.NanoCPUs)),
		MemoryBytes: int64(r.MemoryBytes),
		Pids:        r.Pids,
	}
}

// nanoCPUs converts compose's float32 CPUs through their shortest decimal
// form, so 0.1 becomes 100000000 rather than 100000001.
func nanoCPUs(cpus float32) int64 {
	if cpus <= 0 {
		return 0
	}
	f, err := strconv.ParseFloat(strconv.FormatFloat(float64(cpus), 'f', -1, 32), 64)
	if err != nil {
		return 0
	}
	return int64(f*1e9 + 0.5)
}

func convertDependsOn(deps types.DependsOnConfig) []api.Dependency {
	names := make([]string, 0, len(deps))
	for name := range deps {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []api.Dependency
	for _, name := range names {
		d := deps[name]
		cond := d.Condition
		if cond == "" {
			cond = api.ConditionStarted
		}
		out = append(out, api.Dependency{Service: name, Condition: cond, Required: d.Required})
	}
	return out
}

// convertNetworks keeps the service's networks and their aliases, sorted; a
// service with only the implicit default network gets none (it means
// "default").
func convertNetworks(nets map[string]*types.ServiceNetworkConfig) []api.NetworkAttachment {
	if len(nets) == 0 {
		return nil
	}
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 1 && names[0] == "default" && (nets["default"] == nil || len(nets["default"].Aliases) == 0) {
		return nil
	}
	out := make([]api.NetworkAttachment, 0, len(names))
	for _, n := range names {
		a := api.NetworkAttachment{Name: n}
		if c := nets[n]; c != nil && len(c.Aliases) > 0 {
			a.Aliases = append([]string(nil), c.Aliases...)
			sort.Strings(a.Aliases)
		}
		out = append(out, a)
	}
	return out
}

func convertPlacement(s types.ServiceConfig) api.Placement {
	var pl api.Placement
	if s.Deploy == nil {
		return pl
	}
	p := s.Deploy.Placement
	pl.Constraints = nilIfEmpty(p.Constraints)
	for _, pref := range p.Preferences {
		if pref.Spread != "" {
			pl.Preferences = append(pl.Preferences, pref.Spread)
		}
	}
	pl.MaxPerNode = int(p.MaxReplicas)
	return pl
}

func convertUpdate(u *types.UpdateConfig) *api.UpdateConfig {
	if u == nil {
		return nil
	}
	c := &api.UpdateConfig{
		Order: u.Order, FailureAction: u.FailureAction, MaxFailureRatio: float64(u.MaxFailureRatio),
		Delay: duration(&u.Delay), Monitor: duration(&u.Monitor), Parallelism: 1,
	}
	if u.Parallelism != nil {
		c.Parallelism = int(*u.Parallelism)
	}
	if u.Delay == 0 {
		c.Delay = nil
	}
	if u.Monitor == 0 {
		c.Monitor = nil
	}
	return c
}
