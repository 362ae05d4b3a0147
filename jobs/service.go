package jobs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// ErrNotServing marks a port request for a job that is not a running
// service with that port.
var ErrNotServing = errors.New("not serving")

// checkReady runs a service's readiness check until it passes or ctx
// ends. Until then the job is running but not ready, and Progress holds
// what the last check saw. A service without a check is ready as it
// starts.
func (m *Manager) checkReady(ctx context.Context, j *Job) {
	m.mu.Lock()
	ready := j.Ready
	m.mu.Unlock()
	r, check := j.Spec.readyCheck()
	if !check || ready {
		return
	}
	interval, _ := time.ParseDuration(r.Interval)
	timeout, _ := time.ParseDuration(r.Timeout)
	for {
		err := m.probe(ctx, j, r, timeout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			m.mu.Lock()
			j.Ready, j.Progress = true, ""
			m.mu.Unlock()
			m.set(j, Running, "ready: "+r.String()+" answered")
			return
		}
		m.progress(j, "not ready: "+err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// notReady is the suffix of a running service's reason until it is ready.
func (m *Manager) notReady(j *Job) string {
	if r, check := j.Spec.readyCheck(); check {
		return "; not ready until " + r.String() + " answers"
	}
	return ""
}

// An HTTP readiness check's answer is read by the daemon, not in the
// memory-capped container: only its status line and headers, at most
// readyHeadMax bytes of them, within readyHeadTimeout of the request (or
// ready.timeout, if shorter). The body is never read.
const (
	readyHeadMax     = 4 << 10
	readyHeadTimeout = 10 * time.Second
)

// probe runs one readiness check: a TCP connect, or a GET answered with
// a status from 200 to 399.
func (m *Manager) probe(ctx context.Context, j *Job, r Ready, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := m.dialPort(ctx, j, r.Port)
	if err != nil {
		return err
	}
	defer c.Close()
	if r.TCP {
		return nil
	}
	head := m.readyHead
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < head {
		head = time.Until(dl)
	}
	c.SetDeadline(time.Now().Add(head))
	// The path passed Validate: no spaces or line breaks to inject.
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: aixblock-ready\r\nConnection: close\r\n\r\n", r.HTTP); err != nil {
		return fmt.Errorf("GET %s: %w", r.HTTP, err)
	}
	lr := &io.LimitedReader{R: c, N: readyHeadMax}
	res, err := http.ReadResponse(bufio.NewReaderSize(lr, readyHeadMax), nil)
	switch {
	case err != nil && lr.N == 0:
		return fmt.Errorf("GET %s: the answer's status line and headers pass %d bytes", r.HTTP, readyHeadMax)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("GET %s: no status line and headers within %s", r.HTTP, head.Round(time.Millisecond))
	case err != nil:
		return fmt.Errorf("GET %s: %w", r.HTTP, err)
	}
	// Not res.Body.Close, which would read the body to its end: the
	// connection closes with it unread.
	if res.StatusCode < 200 || res.StatusCode > 399 {
		return fmt.Errorf("GET %s: %s", r.HTTP, res.Status)
	}
	return nil
}

// dialPort connects to port in the job's container, whichever process is
// its first now (a restart makes a new one). The process is held while
// the socket is made (pinContainer), so a PID the engine gave earlier
// never puts the socket in another process's namespace; a dial during
// which the process exited is closed unused.
func (m *Manager) dialPort(ctx context.Context, j *Job, port int) (net.Conn, error) {
	if m.cfg.DialPort == nil {
		return nil, errors.New("this node cannot reach service ports (no Config.DialPort)")
	}
	m.mu.Lock()
	id := j.ContainerID
	m.mu.Unlock()
	p, pid, err := m.pinContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	c, err := m.cfg.DialPort(ctx, pid, port)
	if err != nil {
		return nil, err
	}
	if !p.Alive() {
		c.Close()
		return nil, fmt.Errorf("dial port %d: the container's process (pid %d) exited during the dial; the connection is not used", port, pid)
	}
	return c, nil
}

// ContainerPID is the host PID of a running service's container's first
// process, checked against the engine as pinContainer does. It is a
// snapshot: the process may exit and its PID name another afterwards, so
// reach a port through PortDialer, which holds the process while it
// dials.
func (m *Manager) ContainerPID(ctx context.Context, id string) (int, error) {
	j, err := m.service(id, 0)
	if err != nil {
		return 0, err
	}
	p, pid, err := m.pinContainer(ctx, j.ContainerID)
	if errors.Is(err, errNotRunning) {
		return 0, fmt.Errorf("%w: job %s's container is not running", ErrNotServing, id)
	}
	if err != nil {
		return 0, err
	}
	p.Close()
	return pid, nil
}

// PortDialer returns how to connect to port of service job id, checking
// now that the job is a running service declaring that port. Each call of
// the dialer finds the container's process afresh, so it outlives a
// restart, and fails once the job has ended.
func (m *Manager) PortDialer(id string, port int) (func(ctx context.Context) (net.Conn, error), error) {
	if _, err := m.service(id, port); err != nil {
		return nil, err
	}
	if m.cfg.DialPort == nil {
		return nil, fmt.Errorf("%w: this node cannot reach service ports", ErrNotServing)
	}
	return func(ctx context.Context) (net.Conn, error) {
		j, err := m.service(id, port)
		if err != nil {
			return nil, err
		}
		return m.dialPort(ctx, j, port)
	}, nil
}

// service is the job's record while it is a running service declaring
// port (zero: any).
func (m *Manager) service(id string, port int) (*Job, error) {
	j, err := m.Get(id)
	switch {
	case err != nil:
		return nil, err
	case !j.Spec.IsService():
		return nil, fmt.Errorf("%w: job %s is not a service", ErrNotServing, id)
	case port != 0 && !j.Spec.HasPort(port):
		return nil, fmt.Errorf("%w: job %s declares no port %d", ErrNotServing, id, port)
	case j.State != Running || j.ContainerID == "":
		return nil, fmt.Errorf("%w: job %s is %s", ErrNotServing, id, j.State)
	}
	return j, nil
}
