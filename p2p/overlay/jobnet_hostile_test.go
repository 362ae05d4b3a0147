package overlay

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The job network from a hostile member's side: a provider of the job's
// deals that accepts the job network's stream and never reads it, or that
// opens stream after stream and sends nothing. What it can make the victim
// hold is bounded while the job runs and freed when the job ends.

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// heapMiB is the live heap after a collection, in MiB.
func heapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// sink is a hostile member's job network handler: it reads the header and
// then holds the stream, never reading, until the test ends.
type sink struct {
	mu      sync.Mutex
	streams []network.Stream
}

func newSink(t *testing.T, h host.Host) *sink {
	s := &sink{}
	h.SetStreamHandler(JobNetProtocol(testNet), func(st network.Stream) {
		if _, err := readNetHeader(st); err != nil {
			st.Reset()
			return
		}
		s.mu.Lock()
		s.streams = append(s.streams, st)
		s.mu.Unlock()
	})
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, st := range s.streams {
			st.Reset()
		}
	})
	return s
}

func (s *sink) String() string { return strconv.Itoa(s.count()) }

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// udpFlood sends count datagrams of size bytes from the namespace at path
// to addr, ignoring the kernel's refusals (a full device queue).
func udpFlood(t *testing.T, path, addr string, size, count int) {
	t.Helper()
	if err := inNetns(t, path, func() error {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, size)
		for range count {
			c.Write(b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A member that takes the stream and never reads: the victim's queue for
// it stays within its byte budget (small packets no longer hold a 64 KiB
// buffer each), and when the job ends the sender's goroutine and
// everything it queued are gone.
func TestJobNetStalledMemberIsBounded(t *testing.T) {
	hs := newHosts(t, 2)
	victim, hostile := hs[0], hs[1]
	jn := NewJobNet(victim, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	sk := newSink(t, hostile)
	path := "/run/netns/" + newNetns(t)
	base := heapMiB()
	r, err := jn.Join("job-stall", []peer.ID{victim.ID(), hostile.ID()}, 0, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	// Small packets first (each once held a 64 KiB buffer), then big
	// ones, until the stream is stuck and the queue drops.
	dst := RankAddr(1).String() + ":9"
	for round := 0; ; round++ {
		udpFlood(t, path, dst, 64, 4000)
		udpFlood(t, path, dst, 60000, 200)
		st, _ := jn.Stat("job-stall")
		if sk.count() > 0 && st.Dropped > 2000 {
			break
		}
		if round == 50 {
			t.Fatalf("the queue never filled: %+v, %d streams at the hostile member", st, sk.count())
		}
	}
	held := heapMiB() - base
	senders := goroutinesIn("overlay.(*sender).run")
	t.Logf("stalled member: %.1f MiB held by the victim, %d sender goroutines", held, senders)
	if held > 16 {
		t.Errorf("a member that never reads pins %.1f MiB of the victim's memory", held)
	}

	r.Close()
	ok := waitUntil(30*time.Second, func() bool {
		return goroutinesIn("overlay.(*sender).run") == 0 && heapMiB()-base < 4
	})
	after := heapMiB() - base
	t.Logf("after the job ended: %.1f MiB held, %d sender goroutines", after, goroutinesIn("overlay.(*sender).run"))
	if !ok {
		t.Fatalf("the job ended and its network still holds %.1f MiB and %d sender goroutines", after, goroutinesIn("overlay.(*sender).run"))
	}
}

// A member that takes the stream and never reads loses it after the write
// deadline; the victim opens another (and loses that one too) rather than
// waiting on it for ever.
func TestJobNetStalledStreamIsReset(t *testing.T) {
	defer func(d time.Duration) { writeTimeout = d }(writeTimeout)
	writeTimeout = 300 * time.Millisecond
	hs := newHosts(t, 2)
	victim, hostile := hs[0], hs[1]
	jn := NewJobNet(victim, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	sk := newSink(t, hostile)
	path := "/run/netns/" + newNetns(t)
	r, err := jn.Join("job-reset", []peer.ID{victim.ID(), hostile.ID()}, 0, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	dst := RankAddr(1).String() + ":9"
	p2ptest.WaitFor(t, 60*time.Second, func() bool {
		udpFlood(t, path, dst, 60000, 100)
		return sk.count() >= 2
	}, "the victim never gave up a stream the member does not read (%v streams opened)", sk)
}

// A member that opens stream after stream and sends nothing but the
// header: the victim keeps one inbound stream per member, not one per
// stream opened.
func TestJobNetOneInboundStreamPerMember(t *testing.T) {
	hs := newHosts(t, 2)
	victim, hostile := hs[0], hs[1]
	jn := NewJobNet(victim, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	path := "/run/netns/" + newNetns(t)
	base := heapMiB()
	handlers := goroutinesIn("overlay.(*JobNet).handle")
	r, err := jn.Join("job-many", []peer.ID{victim.ID(), hostile.ID()}, 0, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	const opened = 100
	id := "job-many"
	var streams []network.Stream
	t.Cleanup(func() {
		for _, st := range streams {
			st.Reset()
		}
	})
	for range opened {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := hostile.NewStream(ctx, victim.ID(), JobNetProtocol(testNet))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write(append([]byte{1, byte(len(id))}, id...)); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	// Every header is read (accepted or not) before counting.
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		return goroutinesIn("readNetHeader") == 0
	}, "the headers were never read")
	ok := waitUntil(30*time.Second, func() bool {
		return goroutinesIn("overlay.(*JobNet).handle")-handlers <= 1
	})
	live := goroutinesIn("overlay.(*JobNet).handle") - handlers
	held := heapMiB() - base
	t.Logf("%d streams opened by one member: %d held open by the victim, %.1f MiB held", opened, live, held)
	if !ok {
		t.Fatalf("one member holds %d inbound streams open (%.1f MiB)", live, held)
	}
}

// An inbound stream that carries nothing is closed after the idle
// deadline; the member opens another when it has packets again.
func TestJobNetIdleInboundStreamEnds(t *testing.T) {
	defer func(d time.Duration) { inboundIdle = d }(inboundIdle)
	inboundIdle = 500 * time.Millisecond
	hs := newHosts(t, 2)
	victim, hostile := hs[0], hs[1]
	jn := NewJobNet(victim, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	path := "/run/netns/" + newNetns(t)
	handlers := goroutinesIn("overlay.(*JobNet).handle")
	r, err := jn.Join("job-idle", []peer.ID{victim.ID(), hostile.ID()}, 0, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := hostile.NewStream(ctx, victim.ID(), JobNetProtocol(testNet))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	st.Write(append([]byte{1, 8}, "job-idle"...))
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		return goroutinesIn("overlay.(*JobNet).handle")-handlers == 1
	}, "the member's stream was never accepted")
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		return goroutinesIn("overlay.(*JobNet).handle")-handlers == 0
	}, "an idle inbound stream was never closed")
	// The stream was reset: the member sees it end.
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Read(make([]byte, 1)); err == nil {
		t.Fatal("the idle stream still reads")
	}
}

// waitUntil polls cond as p2ptest.WaitFor does, reporting instead of
// failing, so a test can log its figures either way.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for pause := 5 * time.Millisecond; !cond(); pause = min(2*pause, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
	return true
}

// This daemon's own stream to a member ends when it has had nothing to
// send for outboundIdle, so neither side holds an idle stream.
func TestJobNetIdleOutboundStreamEnds(t *testing.T) {
	defer func(d time.Duration) { outboundIdle = d }(outboundIdle)
	outboundIdle = 300 * time.Millisecond
	hs := newHosts(t, 2)
	victim, member := hs[0], hs[1]
	jn := NewJobNet(victim, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	ended := make(chan error, 4)
	member.SetStreamHandler(JobNetProtocol(testNet), func(st network.Stream) {
		_, err := io.Copy(io.Discard, st)
		ended <- err
	})
	path := "/run/netns/" + newNetns(t)
	r, err := jn.Join("job-out", []peer.ID{victim.ID(), member.ID()}, 0, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	udpFlood(t, path, RankAddr(1).String()+":9", 100, 1)
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("the idle stream was reset, not closed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream to a member stayed open with nothing to send")
	}
}
