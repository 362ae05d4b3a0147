package jobs

import (
	"context"
	"io"
	"time"
)

// Runtime runs containers: what the Manager asks of the engine. Docker is
// the implementation; an in-memory fake (fake_test.go) stands in for it in
// the state machine's unit tests (manager_test.go).
type Runtime interface {
	// ImageID is the ID of the image ref names now, or "" when the engine
	// has none by that name.
	ImageID(ctx context.Context, ref string) (string, error)
	// Pull fetches image from its registry.
	Pull(ctx context.Context, image string) error
	// ImageSize is an image's size in bytes; RemoveImage deletes it.
	ImageSize(ctx context.Context, image string) (int64, error)
	RemoveImage(ctx context.Context, image string) error
	// LoadImage loads an image tarball (`docker save` format).
	LoadImage(ctx context.Context, r io.Reader) error
	Create(ctx context.Context, c Container) (id string, err error)
	Start(ctx context.Context, id string) error
	// Wait blocks until the container exits and returns its exit code.
	Wait(ctx context.Context, id string) (int, error)
	// Logs copies the container's stdout and stderr, following until it
	// exits.
	Logs(ctx context.Context, id string, stdout, stderr io.Writer) error
	// Stop sends SIGTERM, then SIGKILL after grace (a paused container
	// is unpaused first).
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Pause freezes a container's processes; Unpause thaws them.
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	// State is the container's state; Exists is false once it is gone.
	State(ctx context.Context, id string) (ContainerState, error)
}

// Container is what the manager asks the runtime to create.
type Container struct {
	Name       string
	Image      string
	Entrypoint []string // empty: the image's
	Cmd        []string
	Env        []string
	Inputs     []Mount // read-only
	Outputs    string  // host directory bound writable at /outputs
	// Checkpoints, when set, is the host directory bound writable at
	// /checkpoints (a spec with checkpoint).
	Checkpoints string
	CPU         float64
	MemoryMiB   uint64
	PidsLimit   int64
	ShmMiB      uint64
	// NetworkOf, when set, is the container whose network namespace this
	// one joins (a rank joins its holder's, where the job network is);
	// otherwise the container has loopback only.
	NetworkOf string
	// HostNetwork puts a distributed rank on the host's network, so that
	// ranks on other machines reach it at the provider's address: only
	// for a requester the provider trusts with its network.
	HostNetwork bool
	GPUs        []string // UUIDs to pass as device requests
	Labels      map[string]string
}

// Mount binds a host path into the container.
type Mount struct {
	Source, Target string
}

// ContainerState is what the runtime knows of a container.
type ContainerState struct {
	Exists   bool
	Running  bool
	ExitCode int
	OOM      bool
	// Paused: its processes are frozen (Pause).
	Paused bool
	// Pid is the container's first process as the host sees it, while it
	// runs (a service's ports are reached in its network namespace).
	Pid int
}
