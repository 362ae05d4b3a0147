package overlay

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// rejoinPair is a two-rank job network whose rank 1's daemon can go
// away and come back as the same peer (its identity key kept).
type rejoinPair struct {
	t       *testing.T
	n0      *p2p.Node
	key     crypto.PrivKey
	members []peer.ID
	ns      []string
	net1    *JobNet
	node1   *p2p.Node
	rank1   *Rank
}

func newRejoinPair(t *testing.T) *rejoinPair {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &rejoinPair{t: t, key: key, n0: p2ptest.New(t, p2ptest.Config(testNet))}
	p.ns = []string{"/run/netns/" + newNetns(t), "/run/netns/" + newNetns(t)}
	p.start1()
	p.members = []peer.ID{p.n0.Host.ID(), p.node1.Host.ID()}
	jn0 := NewJobNet(p.n0.Host, testNet, nil)
	t.Cleanup(func() { jn0.Close() })
	r0, err := jn0.Join("job-1", p.members, 0, p.ns[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r0.Close() })
	if p.rank1, err = p.net1.Join("job-1", p.members, 1, p.ns[1]); err != nil {
		t.Fatal(err)
	}
	return p
}

// start1 starts rank 1's daemon side: a host with the pair's key,
// connected to rank 0's, and its JobNet.
func (p *rejoinPair) start1() {
	cfg := p2ptest.Config(testNet)
	cfg.Identity = p.key
	p.node1 = p2ptest.New(p.t, cfg)
	p2ptest.Connect(p.t, p.node1, p.n0)
	p.net1 = NewJobNet(p.node1.Host, testNet, nil)
	p.t.Cleanup(func() { p.net1.Close() })
}

// stop1 ends rank 1's daemon side as a daemon that goes away does: its
// JobNet and host close, the rank left as it is.
func (p *rejoinPair) stop1() {
	p.net1.Close()
	p.node1.Close()
}

// hasDevice: the namespace at path holds the rank device.
func hasDevice(path string) bool {
	return exec.Command("nsenter", "--net="+path, "ip", "link", "show", IfName).Run() == nil
}

// echoOn writes msg on c and reads it back within timeout.
func echoOn(t *testing.T, c net.Conn, msg string, timeout time.Duration) {
	t.Helper()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %q back: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// A rank's daemon that goes away and comes back (the same peer on a new
// host, as a restarted daemon is) rejoins the rank's device: the TCP
// connection the ranks had carries data again, bytes written during the
// outage included, and the rank's leaving then removes the device.
func TestJobNetRejoinKeepsConnections(t *testing.T) {
	p := newRejoinPair(t)
	ln := listenIn(t, p.ns[0], "10.77.0.1:7000")
	defer ln.Close()
	serveEcho(ln)
	c, err := dialInNs(t, p.ns[1], "tcp4", "10.77.0.1:7000", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOn(t, c, "before", 10*time.Second)

	p.stop1()
	if !hasDevice(p.ns[1]) {
		t.Fatal("the rank's device went with its daemon")
	}
	// Written while no daemon carries the rank's packets: the kernel
	// retransmits it.
	if _, err := io.WriteString(c, "during"); err != nil {
		t.Fatal(err)
	}
	p.start1()
	r, err := p.net1.Rejoin("job-1", p.members, 1, p.ns[1])
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("during"))
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "during" {
		t.Fatalf("the bytes written during the outage: %q, %v", got, err)
	}
	echoOn(t, c, "after", 30*time.Second)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if hasDevice(p.ns[1]) {
		t.Fatal("the rank's device outlived its leaving")
	}
}

// A rejoin finds the device or fails: it never makes one (a namespace
// with none, or one whose device holds another rank's address).
func TestJobNetRejoinNeedsTheRanksDevice(t *testing.T) {
	hs := newHosts(t, 2)
	members := []peer.ID{hs[0].ID(), hs[1].ID()}
	jn := NewJobNet(hs[0], testNet, nil)
	t.Cleanup(func() { jn.Close() })
	bare := "/run/netns/" + newNetns(t)
	if r, err := jn.Rejoin("job-1", members, 0, bare); err == nil {
		r.Close()
		t.Fatal("a rejoin made a device in a namespace that had none")
	}
	if hasDevice(bare) {
		t.Fatal("a refused rejoin left a device")
	}
	other := NewJobNet(hs[1], testNet, nil)
	t.Cleanup(func() { other.Close() })
	ns1 := "/run/netns/" + newNetns(t)
	r1, err := other.Join("job-1", members, 1, ns1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r1.Close() })
	// Rank 0's daemon, rejoining with rank 1's namespace, finds rank 1's
	// address there.
	if r, err := jn.Rejoin("job-1", members, 0, ns1); err == nil {
		r.Close()
		t.Fatal("a rejoin took another rank's device")
	}
}

// A third peer cannot stand in for a member whose daemon went away: it
// may not rejoin the member's rank, and its stream for the network,
// carrying a packet from that rank's address, is reset unread.
func TestJobNetImpostorCannotRejoin(t *testing.T) {
	p := newRejoinPair(t)
	p.stop1()
	impostor := p2ptest.New(t, p2ptest.Config(testNet))
	p2ptest.Connect(t, impostor, p.n0)
	jn := NewJobNet(impostor.Host, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	if r, err := jn.Rejoin("job-1", p.members, 1, p.ns[1]); err == nil {
		r.Close()
		t.Fatal("another peer rejoined the member's rank")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := impostor.Host.NewStream(ctx, p.n0.Host.ID(), JobNetProtocol(testNet))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	pkt := udpPacket(RankAddr(1), RankAddr(0), 7000, []byte("spoof"))
	frame := append([]byte{0, byte(len(pkt))}, pkt...)
	st.Write(append(append([]byte{1, byte(len("job-1"))}, "job-1"...), frame...))
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) {
		t.Fatalf("the impostor's stream: %v, want a reset", err)
	}
}
