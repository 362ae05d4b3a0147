package overlay

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/aixblock/aixblock/internal/leakcheck"
)

// Closing a forward and the provider's server after carrying a
// connection leaves nothing of theirs running, nor of the nodes under
// them once those close.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	leakcheck.Check(t)
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	srv := newServer(t, provider, allowOnly(requester.ID(), "job1", 7000, echoServer(t)))
	f := forward(t, requester, provider.ID(), "job1", 7000)
	if err := echoOnce(f.Addr().String(), 64<<10); err != nil {
		t.Fatal(err)
	}
	// A connection still open when the forward closes.
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// Closing the job networks after a connection between two ranks leaves
// nothing of theirs running, whether the ranks left first or not (the
// daemon closes its JobNet with ranks still on it).
func TestJobNetCloseLeavesNoGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name       string
		closeRanks bool
	}{
		{"ranks closed first", true},
		{"ranks left on", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			// No cleanup closes the ranks: what the test does not close
			// stays open.
			p := joinJobNetPair(t, 2, false)
			echoAcross(t, p)
			for _, r := range p.ranks {
				if tc.closeRanks {
					if err := r.Close(); err != nil {
						t.Error(err)
					}
				}
			}
			for _, n := range p.nets {
				if err := n.Close(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// echoAcross opens a connection from rank 1 to an echo server at rank 0,
// echoes a few bytes and closes it, and waits until its end crossed the
// network.
func echoAcross(t *testing.T, p *jobNetPair) {
	t.Helper()
	ln := listenIn(t, p.ns[0], "10.77.0.1:7000")
	defer ln.Close()
	served := serveEcho(ln)
	c, err := dialInNs(t, p.ns[1], "tcp4", "10.77.0.1:7000", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's end never crossed the job network")
	}
}

// serveEcho echoes ln's first connection; the channel closes when it ends.
func serveEcho(ln net.Listener) <-chan struct{} {
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	return served
}
