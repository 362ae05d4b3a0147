package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"gopkg.in/yaml.v3"
)

// Spec is a job as users write it, in YAML.
type Spec struct {
	Name        string            `yaml:"name" json:"name"`
	Image       string            `yaml:"image" json:"image"`
	Command     []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Args        []string          `yaml:"args,omitempty" json:"args,omitempty"`
	Env         map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Inputs      []Input           `yaml:"inputs,omitempty" json:"inputs,omitempty"`
	Outputs     []string          `yaml:"outputs,omitempty" json:"outputs,omitempty"`
	Resources   Resources         `yaml:"resources" json:"resources"`
	Distributed *Distributed      `yaml:"distributed,omitempty" json:"distributed,omitempty"`
	Timeouts    Timeouts          `yaml:"timeouts,omitempty" json:"timeouts,omitempty"`
	MaxPrice    string            `yaml:"max_price,omitempty" json:"max_price,omitempty"`
	// Retry runs a market job again on another provider when its provider
	// disappears; zero attempts means no retry.
	Retry Retry `yaml:"retry,omitempty" json:"retry,omitempty"`
	// Kind is batch (the default: runs to its exit, then its outputs are
	// the result) or service (runs until canceled, its ports reached by
	// the requester through libp2p).
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"`
	// Ports a service listens on inside its container.
	Ports []Port `yaml:"ports,omitempty" json:"ports,omitempty"`
	// Restart is a service's restart policy; nil means on-failure, at
	// most DefaultRestarts times.
	Restart *Restart `yaml:"restart,omitempty" json:"restart,omitempty"`
	// Ready is a service's readiness check; nil means ready once started.
	Ready *Ready `yaml:"ready,omitempty" json:"ready,omitempty"`
	// Require is what a market job asks of its providers beyond
	// resources.
	Require *Require `yaml:"require,omitempty" json:"require,omitempty"`
	// Verify checks a market batch job's result by running it again on
	// other providers.
	Verify *Verify `yaml:"verify,omitempty" json:"verify,omitempty"`
	// Checkpoint gives the job a writable /checkpoints that the daemon
	// adds to content as it runs, and may fill it from a CID first.
	Checkpoint *Checkpoint `yaml:"checkpoint,omitempty" json:"checkpoint,omitempty"`
}

// Verify checks a market batch job's result on other providers.
type Verify struct {
	// Replicas runs the job on this many providers (2 to 5) that share no
	// peer ID; the result is the one a majority returns, a tie-breaker on
	// another provider deciding a split.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
	// Sample re-runs this share of such jobs ("5%"), chosen at random
	// once the result is in, on another provider that is not told.
	Sample string `yaml:"sample,omitempty" json:"sample,omitempty"`
	// Outputs, when set, are the files under /outputs that must match;
	// empty: the whole result (its CID).
	Outputs []string `yaml:"outputs,omitempty" json:"outputs,omitempty"`
	// Holdback is the share of each run's pay ("20%", at most 50%) that
	// is paid only once its result verifies: never for a result the
	// majority outvoted. Providers agree to it in their signed bids.
	Holdback string `yaml:"holdback,omitempty" json:"holdback,omitempty"`
	// Comparator, when set, decides whether two results whose bytes
	// differ are equivalent (floating-point tolerances): a container the
	// requester's node runs with the two results read-only at /inputs/a
	// and /inputs/b, exiting 0 when they are. The majority is then
	// counted over what it finds equivalent.
	Comparator *Comparator `yaml:"comparator,omitempty" json:"comparator,omitempty"`
}

// HoldbackBps is Holdback in basis points; zero when unset.
func (v *Verify) HoldbackBps() int {
	if v == nil || v.Holdback == "" {
		return 0
	}
	f, ok := percent(v.Holdback)
	if !ok {
		return 0
	}
	return int(math.Round(f * 100))
}

// percent reads a share written as "N%".
func percent(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if !strings.HasSuffix(s, "%") {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	return f, err == nil && !math.IsNaN(f)
}

// Comparator is a verify.comparator: an image and the command it runs.
type Comparator struct {
	Image   string   `yaml:"image" json:"image"`
	Command []string `yaml:"command,omitempty" json:"command,omitempty"`
	Args    []string `yaml:"args,omitempty" json:"args,omitempty"`
}

func (c *Comparator) validate() error {
	if c == nil {
		return nil
	}
	switch {
	case c.Image == "":
		return specErr("verify.comparator.image", "required: the image whose command compares two results")
	case strings.HasPrefix(c.Image, "ipfs://"):
		return specErr("verify.comparator.image", "%q: the comparator runs on this node from a local or registry image", c.Image)
	case !imageRE.MatchString(c.Image):
		return specErr("verify.comparator.image", "%q is not an image reference", c.Image)
	case len(c.Command) == 0 && len(c.Args) == 0:
		return specErr("verify.comparator", "give command (or args): what compares /inputs/a with /inputs/b and exits 0 when they are equivalent")
	}
	return nil
}

// SampleRate is Sample as a fraction in [0, 1].
func (v *Verify) SampleRate() float64 {
	if v == nil || v.Sample == "" {
		return 0
	}
	f, ok := percent(v.Sample)
	if !ok {
		return 0
	}
	return f / 100
}

func (v *Verify) validate(s *Spec) error {
	if v == nil {
		return nil
	}
	switch {
	case v.Replicas != 0 && (v.Replicas < 2 || v.Replicas > 5):
		return specErr("verify.replicas", "%d: want 2 to 5 (or leave it out)", v.Replicas)
	case v.Replicas == 0 && v.Sample == "":
		return specErr("verify", "give replicas (2 to 5) or sample (a share such as 5%%)")
	case v.Replicas != 0 && v.Sample != "":
		return specErr("verify", "replicas and sample: choose one (replicas checks every run)")
	case s.Distributed != nil || s.IsService():
		return specErr("verify", "only a batch job on one node can be checked by running it again")
	}
	if v.Sample != "" {
		if f, ok := percent(v.Sample); !ok || f <= 0 || f > 100 {
			return specErr("verify.sample", "%q: want a share such as 5%%", v.Sample)
		}
	}
	if v.Holdback != "" {
		if f, ok := percent(v.Holdback); !ok || f <= 0 || f > 50 {
			return specErr("verify.holdback", "%q: want a share of the pay from 0.01%% to 50%% such as 20%% (or leave it out)", v.Holdback)
		}
	}
	if err := v.Comparator.validate(); err != nil {
		return err
	}
	for i, o := range v.Outputs {
		p, err := underRoot(fmt.Sprintf("verify.outputs[%d]", i), o, "/outputs")
		if err != nil {
			return err
		}
		v.Outputs[i] = p
	}
	return nil
}

// Require is what a market job asks of its providers beyond resources.
type Require struct {
	// Verified deals only with providers that stand verified by proof of
	// GPU for the job's GPU class: challenged by this node, or by peers it
	// has dealt with. The others are refused with their standing.
	Verified bool `yaml:"verified,omitempty" json:"verified,omitempty"`
}

// Job kinds.
const (
	KindBatch   = "batch"
	KindService = "service"
)

// Port is a TCP port a service listens on, on its container's loopback.
type Port struct {
	Port int    `yaml:"port" json:"port"`
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
}

// Restart policies.
const (
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Restart says whether a service whose container exits non-zero starts
// again (policy on-failure, the default), and how many times at most (max;
// zero means DefaultRestarts: to never restart, say policy: never).
type Restart struct {
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
	Max    int    `yaml:"max,omitempty" json:"max,omitempty"`
}

// Ready is a readiness check: an HTTP GET of a path answering 200-399, or
// a TCP connect, to Port (zero: the first declared port), every Interval
// (default 1s), each attempt bounded by Timeout (default 2s). An HTTP
// answer's status line and headers must fit in 4 KiB and arrive within
// 10 s (or Timeout, if shorter); its body is never read.
type Ready struct {
	HTTP     string `yaml:"http,omitempty" json:"http,omitempty"`
	TCP      bool   `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	Port     int    `yaml:"port,omitempty" json:"port,omitempty"`
	Interval string `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout  string `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Retry is a job's retry policy.
type Retry struct {
	Attempts int `yaml:"attempts,omitempty" json:"attempts,omitempty"`
}

// Input mounts the content of a CID, read-only, at a path under /inputs.
type Input struct {
	CID  string `yaml:"cid" json:"cid"`
	Path string `yaml:"path" json:"path"`
}

// Resources a job needs on one node.
type Resources struct {
	GPUs         int     `yaml:"gpus,omitempty" json:"gpus,omitempty"`
	GPUClass     string  `yaml:"gpu_class,omitempty" json:"gpu_class,omitempty"`
	GPUMemoryMiB uint64  `yaml:"gpu_memory_mib,omitempty" json:"gpu_memory_mib,omitempty"`
	CPU          float64 `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	MemoryMiB    uint64  `yaml:"memory_mib,omitempty" json:"memory_mib,omitempty"`
	DiskMiB      uint64  `yaml:"disk_mib,omitempty" json:"disk_mib,omitempty"`
}

// validate checks normalized resources, naming the field at fault.
func (r Resources) validate() error {
	switch {
	case r.GPUs < 0 || r.GPUs > 64:
		return specErr("resources.gpus", "%d: want 0 to 64", r.GPUs)
	case r.GPUClass != "" && !classRE.MatchString(r.GPUClass):
		return specErr("resources.gpu_class", "%q: want a class key such as nvidia-h100-80gb", r.GPUClass)
	case r.CPU < 0 || r.CPU > 1024:
		return specErr("resources.cpu", "%g: want 0 to 1024", r.CPU)
	case r.MemoryMiB != 0 && r.MemoryMiB < 6:
		return specErr("resources.memory_mib", "%d: at least 6", r.MemoryMiB)
	case r.DiskMiB != 0 && r.DiskMiB < MinDiskMiB:
		return specErr("resources.disk_mib", "%d: at least %d (the job's filesystem needs room for itself)", r.DiskMiB, MinDiskMiB)
	case r.DiskMiB > 64<<20:
		return specErr("resources.disk_mib", "%d: at most %d (64 TiB)", r.DiskMiB, 64<<20)
	}
	return nil
}

// Distributed asks for several nodes (the DDP issue runs them).
type Distributed struct {
	Nodes        int    `yaml:"nodes" json:"nodes"`
	ProcsPerNode int    `yaml:"procs_per_node,omitempty" json:"procs_per_node,omitempty"`
	Framework    string `yaml:"framework,omitempty" json:"framework,omitempty"`
	MasterPort   int    `yaml:"master_port,omitempty" json:"master_port,omitempty"`
	// Network is where the ranks meet: "overlay" (the default) is the
	// job's private network over libp2p, each rank in a namespace of its
	// own; "host" puts ranks on their providers' networks, which only a
	// provider that lists this requester in market.host_network_for
	// accepts.
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	// Relay says whether ranks whose providers cannot reach each other
	// directly may talk through a job relay: "allow" (the default) or
	// "deny" (then such a set of providers is refused before any rank
	// starts).
	Relay string `yaml:"relay,omitempty" json:"relay,omitempty"`
	// MinNodes makes the job elastic: a lost rank does not fail it while
	// at least this many remain; the others restart with the new
	// membership (from the latest checkpoint, when the spec has one),
	// and a replacement from the market grows it back at the next
	// restart. Zero means not elastic: one lost rank fails the job.
	MinNodes int `yaml:"min_nodes,omitempty" json:"min_nodes,omitempty"`
	// MaxRestarts bounds an elastic job's membership changes; zero means
	// DefaultRestarts.
	MaxRestarts int `yaml:"max_restarts,omitempty" json:"max_restarts,omitempty"`
}

// Elastic reports whether a lost rank restarts the others rather than
// failing the job.
func (d *Distributed) Elastic() bool { return d != nil && d.MinNodes > 0 }

// RestartLimit is how many membership changes an elastic job may make.
func (d *Distributed) RestartLimit() int {
	if d.MaxRestarts > 0 {
		return d.MaxRestarts
	}
	return DefaultRestarts
}

// HostNetwork reports whether the ranks ask for their providers' networks.
func (d *Distributed) HostNetwork() bool { return d != nil && d.Network == "host" }

// Timeouts, as durations ("30s", "2h"). Queue bounds the wait to start,
// Execution the container's run (preparing is not counted), Total all of it.
type Timeouts struct {
	Queue     string `yaml:"queue,omitempty" json:"queue,omitempty"`
	Execution string `yaml:"execution,omitempty" json:"execution,omitempty"`
	Total     string `yaml:"total,omitempty" json:"total,omitempty"`
}

// Defaults for a spec that leaves them out.
const (
	DefaultMemoryMiB = 2048
	DefaultCPU       = 1.0
	DefaultExecution = time.Hour
	DefaultPrepare   = 30 * time.Minute
	MaxSpecBytes     = 64 << 10
	// DefaultRestarts is how often a service restarts when its spec does
	// not say.
	DefaultRestarts = 3
	MaxPorts        = 16
	MaxRestarts     = 100
)

// ErrSpec marks an invalid spec; it is wrapped with the field and problem.
var ErrSpec = errors.New("invalid job spec")

func specErr(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrSpec, field, fmt.Sprintf(format, a...))
}

// ParseSpec reads YAML strictly: unknown fields (privileged, volumes,
// devices and anything else a job may not ask for) are errors that name
// the field, as are bad values.
func ParseSpec(b []byte) (*Spec, error) {
	if len(b) > MaxSpecBytes {
		return nil, specErr("spec", "%d bytes, limit %d", len(b), MaxSpecBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		msg := err.Error()
		for _, forbidden := range []string{"privileged", "volumes", "devices", "mounts", "host_network", "cap_add", "binds"} {
			if strings.Contains(msg, "field "+forbidden+" not found") {
				return nil, specErr(forbidden, "not allowed: jobs run unprivileged, without host mounts or devices")
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrSpec, friendlyYAMLError(msg))
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	imageRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:/@+-]{0,254}$`)
	envRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	classRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	portRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// A readiness path goes into a request line the daemon writes: no
	// spaces or control characters, nothing but a path and a query.
	readyPathRE = regexp.MustCompile(`^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,255}$`)
)

// underRoot checks that p is an absolute path strictly inside root once
// cleaned, with no .. segment anywhere (even one that cleans away).
func underRoot(field, p, root string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", specErr(field, "%q must be an absolute path under %s", p, root)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", specErr(field, "%q escapes %s (..)", p, root)
		}
	}
	c := path.Clean(p)
	if c == root || !strings.HasPrefix(c, root+"/") {
		return "", specErr(field, "%q is not under %s", p, root)
	}
	return c, nil
}

// Validate checks every field and names the first bad one.
func (s *Spec) Validate() error {
	if s.Name != "" && !nameRE.MatchString(s.Name) {
		return specErr("name", "%q: letters, digits, '.', '_' and '-', at most 63", s.Name)
	}
	if s.Image == "" {
		return specErr("image", "required")
	}
	if c, ok := strings.CutPrefix(s.Image, "ipfs://"); ok {
		if _, err := cid.Decode(c); err != nil {
			return specErr("image", "%q: ipfs:// needs the CID of an image tarball (docker save)", s.Image)
		}
	} else if !imageRE.MatchString(s.Image) {
		return specErr("image", "%q is not an image reference (or ipfs://CID of an image tarball)", s.Image)
	} else if strings.Contains(strings.ToLower(s.Image), ipfsImageRepo+"/") {
		// Only the daemon names images there, after loading a tarball; a
		// registry image pulled under that name would pass for one.
		return specErr("image", "%q: the %s/ namespace is the daemon's own; name the tarball as ipfs://CID", s.Image, ipfsImageRepo)
	}
	if err := checkSpecEnv(s.Env); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, in := range s.Inputs {
		f := fmt.Sprintf("inputs[%d]", i)
		if _, err := cid.Decode(in.CID); err != nil {
			return specErr(f+".cid", "%q is not a CID", in.CID)
		}
		p, err := underRoot(f+".path", in.Path, "/inputs")
		if err != nil {
			return err
		}
		if seen[p] {
			return specErr(f+".path", "%s is used twice", p)
		}
		seen[p] = true
		s.Inputs[i].Path = p
	}
	for i, o := range s.Outputs {
		p, err := underRoot(fmt.Sprintf("outputs[%d]", i), o, "/outputs")
		if err != nil {
			return err
		}
		s.Outputs[i] = p
	}
	s.Resources.Normalize()
	if err := s.Resources.validate(); err != nil {
		return err
	}
	if err := s.Verify.validate(s); err != nil {
		return err
	}
	if err := s.Checkpoint.validate(); err != nil {
		return err
	}
	if s.Require != nil && s.Require.Verified && s.Resources.GPUs == 0 {
		return specErr("require.verified", "proof of GPU verifies GPUs, and this job asks for none: set resources.gpus, or drop require")
	}
	if d := s.Distributed; d != nil {
		switch {
		case d.Nodes < 1 || d.Nodes > 256:
			return specErr("distributed.nodes", "%d: want 1 to 256", d.Nodes)
		case d.ProcsPerNode < 0 || d.ProcsPerNode > 64:
			return specErr("distributed.procs_per_node", "%d: want 0 to 64", d.ProcsPerNode)
		case d.Framework != "" && d.Framework != "pytorch" && d.Framework != "tensorflow" && d.Framework != "none":
			return specErr("distributed.framework", "%q: want pytorch, tensorflow or none", d.Framework)
		case d.MasterPort < 0 || d.MasterPort > 65535:
			return specErr("distributed.master_port", "%d", d.MasterPort)
		case d.Network != "" && d.Network != "overlay" && d.Network != "host":
			return specErr("distributed.network", "%q: want overlay (the job's private network) or host", d.Network)
		case d.Relay != "" && d.Relay != "allow" && d.Relay != "deny":
			return specErr("distributed.relay", "%q: want allow or deny", d.Relay)
		}
		if err := d.validateElastic(); err != nil {
			return err
		}
	}
	for _, t := range []struct{ f, v string }{{"timeouts.queue", s.Timeouts.Queue}, {"timeouts.execution", s.Timeouts.Execution}, {"timeouts.total", s.Timeouts.Total}} {
		if t.v == "" {
			continue
		}
		if d, err := time.ParseDuration(t.v); err != nil || d <= 0 {
			return specErr(t.f, "%q is not a positive duration like 30s or 2h", t.v)
		}
	}
	if s.Retry.Attempts < 0 || s.Retry.Attempts > 10 {
		return specErr("retry.attempts", "%d: want 0 to 10", s.Retry.Attempts)
	}
	if err := s.validateService(); err != nil {
		return err
	}
	if s.MaxPrice != "" {
		var whole, frac string
		whole, frac, _ = strings.Cut(s.MaxPrice, ".")
		if strings.Trim(whole+frac, "0123456789") != "" || whole+frac == "" {
			return specErr("max_price", "%q is not a decimal amount", s.MaxPrice)
		}
	}
	return nil
}

// validateService checks kind, ports, restart and ready. Ports, restart
// and ready belong to services only: on a batch job they would mean
// nothing, and silently ignoring them hides a forgotten kind: service.
func (s *Spec) validateService() error {
	switch s.Kind {
	case "", KindBatch, KindService:
	default:
		return specErr("kind", "%q: want batch or service", s.Kind)
	}
	if !s.IsService() {
		for _, f := range []struct {
			name string
			set  bool
		}{{"ports", len(s.Ports) > 0}, {"restart", s.Restart != nil}, {"ready", s.Ready != nil}} {
			if f.set {
				return specErr(f.name, "only a service has %s: add kind: service", f.name)
			}
		}
		return nil
	}
	if d := s.Distributed; d != nil && d.Nodes > 1 {
		return specErr("distributed.nodes", "%d: a service runs on one node", d.Nodes)
	}
	if len(s.Ports) > MaxPorts {
		return specErr("ports", "%d ports, at most %d", len(s.Ports), MaxPorts)
	}
	ports, names := map[int]bool{}, map[string]bool{}
	for i, p := range s.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		switch {
		case p.Port < 1 || p.Port > 65535:
			return specErr(f+".port", "%d: want 1 to 65535", p.Port)
		case ports[p.Port]:
			return specErr(f+".port", "%d is declared twice", p.Port)
		case p.Name != "" && !portRE.MatchString(p.Name):
			return specErr(f+".name", "%q: lower-case letters, digits and '-', at most 32", p.Name)
		case p.Name != "" && names[p.Name]:
			return specErr(f+".name", "%q is used twice", p.Name)
		}
		ports[p.Port], names[p.Name] = true, p.Name != ""
	}
	if r := s.Restart; r != nil {
		switch {
		case r.Policy != "" && r.Policy != RestartOnFailure && r.Policy != RestartNever:
			return specErr("restart.policy", "%q: want on-failure or never", r.Policy)
		case r.Max < 0 || r.Max > MaxRestarts:
			return specErr("restart.max", "%d: want 0 to %d", r.Max, MaxRestarts)
		}
	}
	r := s.Ready
	if r == nil {
		return nil
	}
	switch {
	case (r.HTTP != "") == r.TCP:
		return specErr("ready", "give one check: http: /path or tcp: true")
	case r.HTTP != "" && !readyPathRE.MatchString(r.HTTP):
		return specErr("ready.http", "%q: want a path such as /healthz", r.HTTP)
	case len(s.Ports) == 0:
		return specErr("ready", "a readiness check needs a declared port (ports: [{port: 8080}])")
	case r.Port != 0 && !ports[r.Port]:
		return specErr("ready.port", "%d is not one of the declared ports", r.Port)
	}
	for _, t := range []struct{ f, v string }{{"ready.interval", r.Interval}, {"ready.timeout", r.Timeout}} {
		if t.v == "" {
			continue
		}
		if d, err := time.ParseDuration(t.v); err != nil || d < 10*time.Millisecond || d > time.Hour {
			return specErr(t.f, "%q: want a duration from 10ms to 1h, like 1s", t.v)
		}
	}
	return nil
}

// IsService reports whether the spec is a service.
func (s *Spec) IsService() bool { return s.Kind == KindService }

// HasPort reports whether a service declares port.
func (s *Spec) HasPort(port int) bool {
	for _, p := range s.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// MaxRestartCount is how many times the job's container may restart
// after a non-zero exit: zero for batch jobs and policy never.
func (s *Spec) MaxRestartCount() int {
	switch {
	case !s.IsService():
		return 0
	case s.Restart == nil:
		return DefaultRestarts
	case s.Restart.Policy == RestartNever:
		return 0
	case s.Restart.Max == 0:
		return DefaultRestarts
	}
	return s.Restart.Max
}

// ExecutionTimeout is the spec's execution timeout or the default. For a
// service without one it is the run time the requester asks a deal for;
// the Manager does not stop the service at its end (see ExecutionLimit).
func (s *Spec) ExecutionTimeout() time.Duration {
	if d, err := time.ParseDuration(s.Timeouts.Execution); err == nil {
		return d
	}
	return DefaultExecution
}

// ExecutionLimit is how long the Manager lets the container run: the
// execution timeout, or for a service without an explicit one no limit
// (ok false): it runs until canceled or its deal ends.
func (s *Spec) ExecutionLimit() (d time.Duration, ok bool) {
	if s.IsService() && s.Timeouts.Execution == "" {
		return 0, false
	}
	return s.ExecutionTimeout(), true
}

// readyCheck is the readiness check with its defaults filled in.
func (s *Spec) readyCheck() (r Ready, ok bool) {
	if !s.IsService() || s.Ready == nil {
		return Ready{}, false
	}
	r = *s.Ready
	if r.Port == 0 {
		r.Port = s.Ports[0].Port
	}
	if r.Interval == "" {
		r.Interval = "1s"
	}
	if r.Timeout == "" {
		r.Timeout = "2s"
	}
	return r, true
}

func (r Ready) String() string {
	if r.TCP {
		return fmt.Sprintf("a TCP connect to port %d", r.Port)
	}
	return fmt.Sprintf("GET %s on port %d", r.HTTP, r.Port)
}

// Argv is the command line: command then args.
func (s *Spec) Argv() []string { return append(append([]string{}, s.Command...), s.Args...) }

func cidDecode(s string) (cid.Cid, error) { return cid.Decode(s) }
