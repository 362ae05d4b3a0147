package overlay

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"

	"github.com/vishvananda/netns"
)

// DialPID connects to 127.0.0.1:port inside the network namespace of
// process pid (a container's init, as the engine reports it). It needs
// CAP_SYS_ADMIN, which the provider's daemon has.
func DialPID(ctx context.Context, pid, port int) (net.Conn, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("dial port %d: no process (pid %d)", port, pid)
	}
	return DialNetns(ctx, fmt.Sprintf("/proc/%d/ns/net", pid), port)
}

// DialNetns connects to 127.0.0.1:port inside the network namespace at
// path (/proc/PID/ns/net, /run/netns/NAME). The socket is made on a
// thread switched into that namespace; a socket keeps the namespace it
// was made in, so the connection works from the daemon's own after the
// thread switches back.
func DialNetns(ctx context.Context, path string, port int) (net.Conn, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A thread left in the container's namespace must not run other
		// goroutines: on that path the goroutine exits still locked, and
		// the runtime ends the thread with it.
		runtime.LockOSThread()
		c, restored, err := dialIn(ctx, path, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("dial %s in %s: %w", addr, path, r.err)
	}
	return r.c, nil
}

// dialIn runs on a locked thread; restored is false when the thread could
// not go back to its own namespace.
func dialIn(ctx context.Context, path, addr string) (c net.Conn, restored bool, err error) {
	own, err := netns.Get()
	if err != nil {
		return nil, true, fmt.Errorf("own namespace: %w", err)
	}
	defer own.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, true, fmt.Errorf("namespace: %w", err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, true, fmt.Errorf("enter namespace: %w", err)
	}
	// One address, so the dialer connects on this goroutine (no
	// parallel attempts on other threads).
	var d net.Dialer
	c, err = d.DialContext(ctx, "tcp4", addr)
	if rerr := netns.Set(own); rerr != nil {
		if c != nil {
			c.Close()
		}
		return nil, false, fmt.Errorf("leave namespace: %w", rerr)
	}
	return c, true, err
}
