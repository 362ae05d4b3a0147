package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// Docker is the Runtime over a Docker engine.
type Docker struct{ c *client.Client }

// NewDocker connects to the engine named by the environment (DOCKER_HOST,
// else the local socket), negotiating the API version down to the
// engine's (Debian's speaks 1.41).
func NewDocker(ctx context.Context) (*Docker, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, fmt.Errorf("docker engine not answering (%w): install docker.io and start dockerd", err)
	}
	return &Docker{c}, nil
}

// Client is the underlying moby client (tests build images with it).
func (d *Docker) Client() *client.Client { return d.c }

// Close releases the client.
func (d *Docker) Close() error { return d.c.Close() }

// HasImage reports whether the engine holds image.
func (d *Docker) HasImage(ctx context.Context, image string) (bool, error) {
	_, err := d.c.ImageInspect(ctx, image)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("docker image inspect %s: %w", image, err)
}

func (d *Docker) ImageID(ctx context.Context, ref string) (string, error) {
	res, err := d.c.ImageInspect(ctx, ref)
	if isNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("docker image inspect %s: %w", ref, err)
	}
	return res.ID, nil
}

func (d *Docker) Pull(ctx context.Context, image string) error {
	res, err := d.c.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return fmt.Errorf("docker pull %s: %w", image, err)
	}
	defer res.Close()
	out, err := io.ReadAll(io.LimitReader(res, 16<<20))
	if err != nil {
		return fmt.Errorf("docker pull %s: %w", image, err)
	}
	if strings.Contains(string(out), `"error"`) {
		return fmt.Errorf("docker pull %s: %s", image, lastLine(string(out)))
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func (d *Docker) ImageSize(ctx context.Context, image string) (int64, error) {
	res, err := d.c.ImageInspect(ctx, image)
	if err != nil {
		return 0, fmt.Errorf("docker image inspect %s: %w", image, err)
	}
	return res.Size, nil
}

func (d *Docker) RemoveImage(ctx context.Context, image string) error {
	if _, err := d.c.ImageRemove(ctx, image, client.ImageRemoveOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("docker rmi %s: %w", image, err)
	}
	return nil
}

func (d *Docker) LoadImage(ctx context.Context, r io.Reader) error {
	res, err := d.c.ImageLoad(ctx, r)
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	defer res.Close()
	out, _ := io.ReadAll(io.LimitReader(res, 1<<20))
	if strings.Contains(string(out), `"error"`) {
		return fmt.Errorf("docker load: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// Create makes the container with the locked-down defaults.
func (d *Docker) Create(ctx context.Context, c Container) (string, error) {
	mem := int64(c.MemoryMiB) << 20
	pids := c.PidsLimit
	hc := &container.HostConfig{
		Privileged:     false,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,size=64m"},
		ShmSize:        int64(c.ShmMiB) << 20,
		NetworkMode:    "none",
		Resources: container.Resources{
			Memory:     mem,
			MemorySwap: mem, // no swap
			NanoCPUs:   int64(c.CPU * 1e9),
			PidsLimit:  &pids,
		},
	}
	if c.NetworkOf != "" {
		hc.NetworkMode = container.NetworkMode("container:" + c.NetworkOf)
	}
	if c.HostNetwork {
		hc.NetworkMode = "host"
	}
	for _, in := range c.Inputs {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: in.Source, Target: in.Target, ReadOnly: true})
	}
	if c.Outputs != "" {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: c.Outputs, Target: "/outputs"})
	}
	if c.Checkpoints != "" {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: c.Checkpoints, Target: CheckpointDir})
	}
	if len(c.GPUs) > 0 {
		hc.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: c.GPUs, Capabilities: [][]string{{"gpu"}}}}
	}
	cfg := &container.Config{
		Image: c.Image, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, Labels: c.Labels,
		User: "65534:65534", // nobody: even a file the image leaves writable is not ours
	}
	res, err := d.c.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: c.Name})
	if err != nil {
		return "", fmt.Errorf("docker create: %w", err)
	}
	return res.ID, nil
}

func (d *Docker) Start(ctx context.Context, id string) error {
	if _, err := d.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("docker start: %w", err)
	}
	return nil
}

func (d *Docker) Wait(ctx context.Context, id string) (int, error) {
	w := d.c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-w.Result:
		if r.Error != nil && r.Error.Message != "" {
			return int(r.StatusCode), fmt.Errorf("docker wait: %s", r.Error.Message)
		}
		return int(r.StatusCode), nil
	case err := <-w.Error:
		return -1, fmt.Errorf("docker wait: %w", err)
	}
}

func (d *Docker) Logs(ctx context.Context, id string, stdout, stderr io.Writer) error {
	rc, err := d.c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return fmt.Errorf("docker logs: %w", err)
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(stdout, stderr, rc)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("docker logs: %w", err)
	}
	return nil
}

func (d *Docker) Stop(ctx context.Context, id string, grace time.Duration) error {
	// A frozen container takes no signal: thaw it first (an error here
	// is the engine saying it was not paused).
	_, _ = d.c.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	secs := int(grace / time.Second)
	if _, err := d.c.ContainerStop(ctx, id, client.ContainerStopOptions{Signal: "SIGTERM", Timeout: &secs}); err != nil && !isNotFound(err) {
		return fmt.Errorf("docker stop: %w", err)
	}
	return nil
}

func (d *Docker) Pause(ctx context.Context, id string) error {
	if _, err := d.c.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("docker pause: %w", err)
	}
	return nil
}

func (d *Docker) Unpause(ctx context.Context, id string) error {
	if _, err := d.c.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("docker unpause: %w", err)
	}
	return nil
}

func (d *Docker) Remove(ctx context.Context, id string) error {
	if _, err := d.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
		return fmt.Errorf("docker rm: %w", err)
	}
	return nil
}

func (d *Docker) State(ctx context.Context, id string) (ContainerState, error) {
	res, err := d.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if isNotFound(err) {
		return ContainerState{}, nil
	}
	if err != nil {
		return ContainerState{}, fmt.Errorf("docker inspect: %w", err)
	}
	st := res.Container.State
	if st == nil {
		return ContainerState{Exists: true}, nil
	}
	return ContainerState{Exists: true, Running: st.Running, ExitCode: st.ExitCode, OOM: st.OOMKilled, Paused: st.Paused, Pid: st.Pid}, nil
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nf interface{ NotFound() }
	return errors.As(err, &nf) || strings.Contains(strings.ToLower(err.Error()), "no such")
}
