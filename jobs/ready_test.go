package jobs

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countConn counts what the daemon read from a service's port.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// hostileHealth serves every connection with answer on loopback and
// returns its address; the listener and its connections close when t
// ends.
func hostileHealth(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				go func() { <-done; c.Close() }()
				// The request first, as a service would.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 1024)
				var req []byte
				for !strings.Contains(string(req), "\r\n\r\n") {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					req = append(req, buf[:n]...)
				}
				answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// The readiness check from the hostile side (issue 28, N2): a service's
// /healthz answers with a header line that never ends, with a trickle, or
// with an endless body. The daemon, not the memory-capped container,
// reads the answer: it reads a status line and headers of at most
// readyHeadMax bytes, within its own short deadline, and never the body.
func TestReadyProbeBounded(t *testing.T) {
	const stopAfter = 64 << 20 // the hostile server gives up here, so a failing run stays small
	flood := func(prefix string) func(c net.Conn) {
		return func(c net.Conn) {
			if _, err := io.WriteString(c, prefix); err != nil {
				return
			}
			chunk := []byte(strings.Repeat("a", 64<<10))
			for sent := 0; sent < stopAfter; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}
	}
	for _, tc := range []struct {
		name    string
		answer  func(c net.Conn)
		timeout string // ready.timeout
		ready   bool   // the check passes
		errHas  string
		within  time.Duration
	}{
		{name: "a header line without end", answer: flood("HTTP/1.1 200 OK\r\nX: "), timeout: "2s",
			errHas: "GET /healthz: the answer's status line and headers pass 4096 bytes", within: 2 * time.Second},
		{name: "a status line without end", answer: flood("HTTP/1.1 200 "), timeout: "2s",
			errHas: "pass 4096 bytes", within: 2 * time.Second},
		{name: "an endless body is not read", answer: flood("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n"), timeout: "2s",
			ready: true, within: 2 * time.Second},
		{name: "a trickle under an hour's timeout", timeout: "1h",
			answer: func(c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nX: ")
				for {
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			},
			errHas: "GET /healthz: no status line and headers within 500ms", within: 3 * time.Second},
		{name: "a plain answer passes", answer: func(c net.Conn) { io.WriteString(c, "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n") },
			timeout: "2s", ready: true, within: 2 * time.Second},
		{name: "a refusal fails", answer: func(c net.Conn) { io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\n\r\n") },
			timeout: "2s", errHas: "GET /healthz: 503 Service Unavailable", within: 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileHealth(t, tc.answer)
			var read atomic.Int64
			rt := newFakeRuntime()
			rt.add("svc", true, 0)
			m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, func(c *Config) {
				c.DialPort = func(ctx context.Context, pid, port int) (net.Conn, error) {
					var d net.Dialer
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						return nil, err
					}
					return countConn{c, &read}, nil
				}
			})
			m.readyHead = 500 * time.Millisecond
			timeout, _ := time.ParseDuration(tc.timeout)
			j := &Job{ContainerID: "svc"}
			r := Ready{HTTP: "/healthz", Port: 8080, Timeout: tc.timeout}

			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- m.probe(context.Background(), j, r, timeout) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(tc.within + 3*time.Second):
				t.Fatalf("the check still runs after %s, %d bytes read", time.Since(start).Round(time.Millisecond), read.Load())
			}
			took := time.Since(start)
			t.Logf("check: %v after %s, %d bytes read", err, took.Round(time.Millisecond), read.Load())
			if n := read.Load(); n > readyHeadMax {
				t.Errorf("the daemon read %d bytes (%.1f MiB) of the answer; at most %d", n, float64(n)/(1<<20), readyHeadMax)
			}
			if took > tc.within {
				t.Errorf("the check took %s; want under %s", took, tc.within)
			}
			if tc.ready != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.errHas)) {
				t.Errorf("check: %v; want ready %v, error with %q", err, tc.ready, tc.errHas)
			}
		})
	}
}
