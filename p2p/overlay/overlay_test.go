package overlay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/fxamacker/cbor/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

const testNet = "overlaytest"

// newHosts starts n nodes on loopback TCP, each connected to the first
// and identified both ways, and returns their hosts.
func newHosts(tb testing.TB, n int) []host.Host {
	tb.Helper()
	// Ended after the nodes closed (cleanups run last first): GossipSub
	// runs under the context p2p.New is given, and stops only with it.
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	nodes := make([]*p2p.Node, n)
	hs := make([]host.Host, n)
	for i := range nodes {
		nd, err := p2p.New(ctx, p2ptest.Config(testNet))
		if err != nil {
			tb.Fatalf("p2p node: %v", err)
		}
		tb.Cleanup(func() { nd.Close() })
		nodes[i], hs[i] = nd, nd.Host
		if i > 0 {
			p2ptest.Connect(tb, nodes[i], nodes[0])
		}
	}
	return hs
}

// allowOnly is the node's rule in small: one requester, one job, one port,
// reached at target.
func allowOnly(requester peer.ID, jobID string, port int, target string) Authorizer {
	return func(ctx context.Context, from peer.ID, job string, p int) (Dialer, error) {
		switch {
		case from != requester:
			return nil, errors.New("not this job's requester")
		case job != jobID:
			return nil, fmt.Errorf("no service job %s here", job)
		case p != port:
			return nil, fmt.Errorf("job %s declares no port %d", job, p)
		}
		return func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target)
		}, nil
	}
}

func newServer(tb testing.TB, h host.Host, auth Authorizer) *Server {
	tb.Helper()
	s, err := NewServer(h, ServerConfig{Network: testNet, Authorize: auth, HeaderTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func forward(tb testing.TB, h host.Host, provider peer.ID, jobID string, port int) *Forwarder {
	tb.Helper()
	f, err := Forward(context.Background(), h, provider, jobID, port, "", ForwardOptions{Network: testNet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// echoServer echoes each connection until its client half-closes, then
// half-closes back.
func echoServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

func httpServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestForwardHTTP(t *testing.T) {
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	newServer(t, provider, allowOnly(requester.ID(), "job1", 8080, httpServer(t)))
	f := forward(t, requester, provider.ID(), "job1", 8080)
	if a := f.Addr().(*net.TCPAddr); !a.IP.IsLoopback() || a.Port == 0 {
		t.Fatalf("listening on %s, want loopback and a chosen port", a)
	}
	for i := range 3 {
		res, err := http.Get(fmt.Sprintf("http://%s/predict/%d", f.Addr(), i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if want := fmt.Sprintf("hello from /predict/%d", i); string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
	if st := f.Stats(); st.Accepted < 1 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Many connections at once, each 1 MiB each way, every byte checked.
func TestForwardConcurrentEcho(t *testing.T) {
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	newServer(t, provider, allowOnly(requester.ID(), "job1", 7000, echoServer(t)))
	f := forward(t, requester, provider.ID(), "job1", 7000)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(f.Addr().String(), 1<<20)
			_ = i
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if st := f.Stats(); st.Accepted != 50 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func echoOnce(addr string, size int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	want := make([]byte, size)
	rand.Read(want)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo: got %d bytes back, want the %d sent", len(got), len(want))
	}
	return nil
}

// rawStream plays a hostile peer: it writes whatever bytes it likes as the
// header and returns the provider's reply line.
func rawStream(t *testing.T, from host.Host, to peer.ID, frame []byte) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := from.NewStream(ctx, to, Protocol(testNet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if len(frame) > 0 {
		s.Write(frame)
	}
	line, err := readLine(s, 4096)
	if err != nil {
		return line, err
	}
	// After a refusal the provider closes: nothing else comes.
	if rest, err := io.ReadAll(s); len(rest) > 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
		return line, fmt.Errorf("after the reply: %q, %v", rest, err)
	}
	return line, nil
}

func frameOf(v any) []byte {
	body, err := cbor.Marshal(v)
	if err != nil {
		panic(err)
	}
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
}

// A peer that is not the job's requester gets a refusal naming why, and
// the port is never dialed, whatever header it crafts.
func TestThirdPeerRefused(t *testing.T) {
	hs := newHosts(t, 3)
	provider, requester, stranger := hs[0], hs[1], hs[2]
	dialed := make(chan struct{}, 10)
	auth := allowOnly(requester.ID(), "job1", 8080, httpServer(t))
	newServer(t, provider, func(ctx context.Context, from peer.ID, job string, p int) (Dialer, error) {
		d, err := auth(ctx, from, job, p)
		if err == nil {
			dialed <- struct{}{}
		}
		return d, err
	})
	line, err := rawStream(t, stranger, provider.ID(), frameOf(map[string]any{"v": 1, "j": "job1", "p": 8080}))
	if err != nil || line != "refused: not this job's requester" {
		t.Fatalf("stranger got %q, %v", line, err)
	}
	// Through Forward as well: its client sees a closed connection.
	f := forward(t, stranger, provider.ID(), "job1", 8080)
	if _, err := http.Get("http://" + f.Addr().String() + "/"); err == nil {
		t.Fatal("the stranger's forward got an answer")
	}
	if st := f.Stats(); st.Failed != 1 || !strings.Contains(st.LastError, "not this job's requester") {
		t.Fatalf("stats %+v", st)
	}
	if len(dialed) != 0 {
		t.Fatal("a stranger's stream was authorized")
	}
}

func TestBadHeadersRefused(t *testing.T) {
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	newServer(t, provider, allowOnly(requester.ID(), "job1", 8080, httpServer(t)))
	huge := append(binary.AppendUvarint(nil, 1<<20), make([]byte, 1000)...)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"oversized", huge, "1048576 bytes, limit 256"},
		{"varint overflow", bytes.Repeat([]byte{0xff}, 12), "length"},
		{"empty", []byte{0}, "0 bytes"},
		{"garbage", append([]byte{5}, "\xff\xfe\xfd\xfc\xfb"...), "port header"},
		{"not a map", frameOf([]int{1, 2, 3}), "port header"},
		{"unknown field", frameOf(map[string]any{"v": 1, "j": "job1", "p": 8080, "x": "host"}), "unknown field"},
		{"wrong version", frameOf(map[string]any{"v": 2, "j": "job1", "p": 8080}), "version 2"},
		{"bad job ID", frameOf(map[string]any{"v": 1, "j": "../../etc", "p": 8080}), "job ID"},
		{"port 0", frameOf(map[string]any{"v": 1, "j": "job1", "p": 0}), "port 0"},
		{"port too big", frameOf(map[string]any{"v": 1, "j": "job1", "p": 70000}), "port 70000"},
		{"silent", nil, "port header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := rawStream(t, requester, provider.ID(), tc.frame)
			if !strings.HasPrefix(line, "refused: ") || !strings.Contains(line, tc.want) {
				t.Fatalf("got %q (%v), want a refusal naming %q", line, err, tc.want)
			}
			if len(line) > MaxReplyBytes {
				t.Fatalf("reply of %d bytes", len(line))
			}
		})
	}
}

// The requester itself is refused a port the job does not declare, and a
// job that is not there.
func TestUndeclaredPortRefused(t *testing.T) {
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	newServer(t, provider, allowOnly(requester.ID(), "job1", 8080, httpServer(t)))
	for _, tc := range []struct {
		job  string
		port int
		want string
	}{{"job1", 22, "declares no port 22"}, {"job2", 8080, "no service job job2"}} {
		f := forward(t, requester, provider.ID(), tc.job, tc.port)
		c, err := net.Dial("tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
		}
		c.Close()
		// The failure is counted as the forward closes the connection:
		// the local read may see the close first.
		p2ptest.WaitFor(t, 5*time.Second, func() bool { return f.Stats().Failed > 0 }, "no failure counted")
		if st := f.Stats(); st.Failed != 1 || !strings.Contains(st.LastError, tc.want) || st.LastErrorAt.IsZero() {
			t.Fatalf("stats %+v, want the reason %q", st, tc.want)
		}
	}
}

// Close ends the connections being carried and the port stops accepting;
// so does the end of the forward's context, and the provider's CloseJob.
// pingConn opens a connection through f to an echo server and sees
// "ping" come back.
func pingConn(tb testing.TB, f *Forwarder) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		tb.Fatalf("echo %q, %v", buf, err)
	}
	return c
}

// A port stream is in the port protocol's resource-manager service and
// holds its copy buffers there until it ends.
func TestPortStreamInItsService(t *testing.T) {
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	newServer(t, provider, allowOnly(requester.ID(), "job1", 7000, echoServer(t)))
	f := forward(t, requester, provider.ID(), "job1", 7000)
	c := pingConn(t, f)
	if st := p2ptest.ServiceStat(t, provider, Protocol(testNet)); st.NumStreamsInbound != 1 || st.Memory != pumpMemory {
		t.Fatalf("port service with one connection open: %+v, want 1 inbound stream and %d bytes", st, pumpMemory)
	}
	c.Close()
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		st := p2ptest.ServiceStat(t, provider, Protocol(testNet))
		return st.NumStreamsInbound == 0 && st.Memory == 0
	}, "the port service still holds the closed connection's stream")
}

func TestCloseEndsConnections(t *testing.T) {
	hs := newHosts(t, 2)
	provider, requester := hs[0], hs[1]
	srv := newServer(t, provider, allowOnly(requester.ID(), "job1", 7000, echoServer(t)))
	openConn := func(f *Forwarder) net.Conn { return pingConn(t, f) }
	ended := func(c net.Conn) {
		t.Helper()
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("read %d, %v: the connection is still open", n, err)
		}
	}

	f := forward(t, requester, provider.ID(), "job1", 7000)
	conns := []net.Conn{openConn(f), openConn(f)}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		ended(c)
	}
	if c, err := net.DialTimeout("tcp", f.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the local port still accepts after Close")
	}

	ctx, cancel := context.WithCancel(context.Background())
	g, err := Forward(ctx, requester, provider.ID(), "job1", 7000, "127.0.0.1:0", ForwardOptions{Network: testNet})
	if err != nil {
		t.Fatal(err)
	}
	c := openConn(g)
	cancel()
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the forward outlived its context")
	}
	ended(c)

	// The provider drops the ended streams as their resets arrive.
	p2ptest.WaitFor(t, 5*time.Second, func() bool { return srv.Open() == 0 }, "the provider still holds streams of the ended forwards")
	h := forward(t, requester, provider.ID(), "job1", 7000)
	c = openConn(h)
	if n := srv.CloseJob("job1"); n != 1 {
		t.Fatalf("CloseJob ended %d streams, want 1", n)
	}
	ended(c)
}

// Strangers' silent streams counted against the one limit of all streams,
// so a few throwaway peers holding streams open without a header locked
// the job's requester out. Now a peer's streams waiting for their header
// are capped per peer and do not count against the carried ones.
func TestSilentStrangersDoNotLockOut(t *testing.T) {
	hs := newHosts(t, 4)
	provider, requester := hs[0], hs[1]
	s, err := NewServer(provider, ServerConfig{Network: testNet, Authorize: allowOnly(requester.ID(), "job1", 7000, echoServer(t)),
		HeaderTimeout: 5 * time.Second, MaxStreams: 16, MaxPendingPerPeer: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	refused := 0
	for _, stranger := range hs[2:] {
		for range 12 {
			st, err := stranger.NewStream(t.Context(), provider.ID(), Protocol(testNet))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Reset()
			// Silent: no header. A refused stream gets its reason at once.
			st.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			b := make([]byte, 128)
			if n, _ := st.Read(b); n > 0 {
				if !strings.Contains(string(b[:n]), "waiting for their header") {
					t.Fatalf("stranger's stream answered %q", b[:n])
				}
				refused++
			}
		}
	}
	if refused != 8 {
		t.Fatalf("%d of the strangers' 24 silent streams refused, want 8 (4 over the cap of 8 for each)", refused)
	}
	f := forward(t, requester, provider.ID(), "job1", 7000)
	if err := echoOnce(f.Addr().String(), 1<<16); err != nil {
		t.Fatalf("the requester, with the strangers' streams open: %v (stats %+v)", err, f.Stats())
	}
}
