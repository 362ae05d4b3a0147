package jobs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
)

// A distributed rank's network namespace is made by a holder container
// (network mode none) that the daemon starts before the rank: the daemon
// places the job network's device in the holder's namespace, and the
// rank's container joins it (network mode container:HOLDER), so the
// device is there before the rank's first instruction. Kubernetes' pod
// sandbox works this way.
//
// The holder runs the job's own image (already here) with holdELF bound
// in as its entrypoint: no other image to fetch, build or trust. It is a
// static program of a few instructions that waits forever; the daemon
// removes the holder (SIGKILL) when the rank ends.

const holdTarget = "/.aixblock-hold"

// holdELF is a minimal static ELF executable for arch that waits forever.
func holdELF(arch string) ([]byte, error) {
	var machine uint16
	var code []byte
	switch arch {
	case "amd64":
		machine = 0x3e
		code = []byte{
			0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
			0x0f, 0x05, // syscall
			0xeb, 0xf7, // jmp to the start
		}
	case "arm64":
		machine = 0xb7
		for _, w := range []uint32{
			0xd2800000, // mov x0, #0
			0xd2800001, // mov x1, #0
			0xd2800002, // mov x2, #0
			0xd2800003, // mov x3, #0
			0xd2800928, // mov x8, #73 (ppoll: arm64 has no pause)
			0xd4000001, // svc #0
			0x17fffffa, // b to the start
		} {
			code = binary.LittleEndian.AppendUint32(code, w)
		}
	default:
		return nil, fmt.Errorf("distributed ranks on a private network need amd64 or arm64, not %s", arch)
	}
	const base, ehdr, phdr = 0x400000, 64, 56
	size := uint64(ehdr + phdr + len(code))
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	le := binary.LittleEndian
	b = le.AppendUint16(b, 2) // executable
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, base+ehdr+phdr) // entry
	b = le.AppendUint64(b, ehdr)           // program headers
	b = le.AppendUint64(b, 0)              // no section headers
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, ehdr)
	b = le.AppendUint16(b, phdr)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 64)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 5) // read, execute
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	return append(b, code...), nil
}

// holdFile writes the holder program under dir once and returns its path.
func holdFile(dir string) (string, error) {
	elf, err := holdELF(runtime.GOARCH)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, ".hold")
	if old, err := os.ReadFile(p); err == nil && string(old) == string(elf) {
		return p, nil
	}
	if err := atomicfile.WriteFile(p, elf, 0o755); err != nil {
		return "", fmt.Errorf("jobs: holder program: %w", err)
	}
	return p, nil
}

// holdNetwork starts the rank's holder container, hands its namespace to
// join, and returns the holder's ID for the rank to join.
func (m *Manager) holdNetwork(ctx context.Context, j *Job, c Container, join func(context.Context, string) (io.Closer, error)) (string, error) {
	hold, err := holdFile(m.cfg.Dir)
	if err != nil {
		return "", err
	}
	hc := Container{Name: c.Name + "-net", Image: c.Image, Entrypoint: []string{holdTarget},
		Inputs: []Mount{{Source: hold, Target: holdTarget}},
		// The holder sleeps, but the engine's runc init runs in its
		// cgroup first: a Go program whose threads count against the pids
		// limit and whose pages against the memory one. At 4 pids and 16
		// MiB it was killed now and then on a busy machine ("cannot start
		// a stopped process").
		CPU: 0.05, MemoryMiB: 32, PidsLimit: 32, ShmMiB: 1, Labels: c.Labels}
	id, err := m.cfg.Runtime.Create(ctx, hc)
	if err != nil {
		return "", fmt.Errorf("job network: holder container: %w", err)
	}
	m.mu.Lock()
	j.NetHolder = id
	m.mu.Unlock()
	if err := m.cfg.Runtime.Start(ctx, id); err != nil {
		return "", fmt.Errorf("job network: holder container: %w", err)
	}
	closer, err := m.joinHolder(ctx, j, id, join)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.nets[j.ID] = closer
	m.mu.Unlock()
	return id, nil
}

// joinHolder hands the namespace of holder container id to join.
//
// The namespace is opened through the holder's process held by a pidfd
// and checked against the engine (pinContainer), and handed to join as
// this process's descriptor of it, never as /proc/PID: a PID reused
// meanwhile cannot put the job's device in another namespace.
func (m *Manager) joinHolder(ctx context.Context, j *Job, id string, join func(context.Context, string) (io.Closer, error)) (io.Closer, error) {
	p, pid, err := m.pinContainer(ctx, id)
	if errors.Is(err, errNotRunning) {
		st, _ := m.cfg.Runtime.State(ctx, id)
		return nil, fmt.Errorf("job network: the holder container is not running (exit %d)", st.ExitCode)
	}
	if err != nil {
		return nil, fmt.Errorf("job network: holder container: %w", err)
	}
	defer p.Close()
	ns, err := p.NetNS()
	if err != nil {
		return nil, fmt.Errorf("job network: holder container: %w", err)
	}
	defer ns.Close()
	closer, err := join(ctx, fmt.Sprintf("/proc/self/fd/%d", ns.Fd()))
	if err != nil {
		return nil, err
	}
	m.log.Debug("job network joined", "job_id", j.ID, "holder_pid", pid)
	return closer, nil
}

// releaseNetwork ends a rank's job network and removes its holder.
func (m *Manager) releaseNetwork(j *Job) {
	m.mu.Lock()
	closer, holder := m.nets[j.ID], j.NetHolder
	delete(m.nets, j.ID)
	m.mu.Unlock()
	if closer != nil {
		closer.Close()
	}
	if holder != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.cfg.Runtime.Remove(ctx, holder); err != nil {
			m.log.Warn("remove the job network's holder", "job_id", j.ID, "err", err)
		}
	}
}
