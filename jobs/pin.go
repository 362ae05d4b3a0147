package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A container's network namespace is reached through its first process,
// by the PID the engine reports. A PID is only a number: once that
// process has exited and been reaped, the number can name another
// process, even one in the host's namespace. So the daemon never uses a
// PID it read earlier as it stands: it holds the process by a pidfd
// (which names that one process for as long as it is open), asks the
// engine again, and uses the PID only while the engine still gives that
// PID for the container and the held process has not exited
// (pinContainer). A held process that has not exited keeps its PID: the
// number cannot be reused under it.

// procPin holds one process.
type procPin interface {
	// Alive reports whether the held process has not been reaped, so
	// that its PID still names it.
	Alive() bool
	// NetNS opens the held process's network namespace.
	NetNS() (*os.File, error)
	Close() error
}

// pidfdPin holds a process by its pidfd (Linux 5.3 and later).
type pidfdPin struct {
	fd, pid int
}

// pinPID holds process pid by a pidfd.
func pinPID(pid int) (procPin, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("pid %d: holding a process needs pidfd_open (Linux 5.3 or later): %w", pid, err)
	case err != nil:
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	return &pidfdPin{fd: fd, pid: pid}, nil
}

func (p *pidfdPin) Alive() bool {
	// Signal 0 checks the process without signalling it; EPERM still
	// means it is there.
	err := unix.PidfdSendSignal(p.fd, 0, nil, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

func (p *pidfdPin) NetNS() (*os.File, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", p.pid))
	if err != nil {
		return nil, fmt.Errorf("pid %d: network namespace: %w", p.pid, err)
	}
	// Alive after the open: the path named the held process when it
	// was opened.
	if !p.Alive() {
		f.Close()
		return nil, fmt.Errorf("pid %d exited while its network namespace was opened", p.pid)
	}
	return f, nil
}

func (p *pidfdPin) Close() error { return unix.Close(p.fd) }

// errNotRunning marks a container with no process to reach.
var errNotRunning = errors.New("the container is not running")

// pinContainer holds container id's first process and returns it with
// its PID, once it is sure the process held is the container's: the
// engine gives a PID, the process by that PID is held, the engine is
// asked again, and the PID must be the same and the held process not
// yet exited. An engine's answer read before the hold may be stale (the
// container's process gone, its PID another's), so it never counts on
// its own.
func (m *Manager) pinContainer(ctx context.Context, id string) (procPin, int, error) {
	st, err := m.cfg.Runtime.State(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if !st.Running || st.Pid <= 0 {
		return nil, 0, errNotRunning
	}
	pin := m.pin
	if pin == nil {
		pin = pinPID
	}
	p, err := pin(st.Pid)
	if err != nil {
		return nil, 0, fmt.Errorf("the container's process: %w", err)
	}
	again, err := m.cfg.Runtime.State(ctx, id)
	if err != nil {
		p.Close()
		return nil, 0, err
	}
	switch {
	case !again.Running || again.Pid <= 0:
		p.Close()
		return nil, 0, errNotRunning
	case again.Pid != st.Pid:
		p.Close()
		return nil, 0, fmt.Errorf("the container's process changed from pid %d to %d while it was being held; pid %d is not used", st.Pid, again.Pid, st.Pid)
	case !p.Alive():
		p.Close()
		return nil, 0, fmt.Errorf("the container's process (pid %d) exited while it was being held", st.Pid)
	}
	return p, st.Pid, nil
}
