package overlay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vishvananda/netns"
)

// inNetns runs fn on a thread inside the namespace at path; sockets made
// there stay in it.
func inNetns(t testing.TB, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer own.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(own); err != nil {
			errc <- errors.Join(ferr, err) // the thread ends locked
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func dialInNs(t testing.TB, path, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(t, path, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

type jobNetPair struct {
	hosts []host.Host
	nets  []*JobNet
	ns    []string // /run/netns paths, by rank
	ranks []*Rank
}

// newJobNetPair is a two-rank job network: rank r on host r, in a
// namespace of its own.
func newJobNetPair(t testing.TB, hosts int) *jobNetPair {
	t.Helper()
	return joinJobNetPair(t, hosts, true)
}

// joinJobNetPair is newJobNetPair; the ranks are closed when the test
// ends only with closeRanks (the job networks always are).
func joinJobNetPair(t testing.TB, hosts int, closeRanks bool) *jobNetPair {
	t.Helper()
	p := &jobNetPair{hosts: newHosts(t, hosts)}
	members := []peer.ID{p.hosts[0].ID(), p.hosts[1].ID()}
	for i, h := range p.hosts {
		jn := NewJobNet(h, testNet, nil)
		t.Cleanup(func() { jn.Close() })
		p.nets = append(p.nets, jn)
		if i >= 2 {
			continue
		}
		name := newNetns(t)
		path := "/run/netns/" + name
		r, err := jn.Join("job-1", members, i, path)
		if err != nil {
			t.Fatal(err)
		}
		if closeRanks {
			t.Cleanup(func() { r.Close() })
		}
		p.ns = append(p.ns, path)
		p.ranks = append(p.ranks, r)
	}
	return p
}

// Two ranks on two daemons meet at their overlay addresses and move 32 MiB
// intact; the traffic is counted on the direct path.
func TestJobNetCarriesTCP(t *testing.T) {
	p := newJobNetPair(t, 2)
	if p.ranks[0].Addr().String() != "10.77.0.1" || p.ranks[1].Addr().String() != "10.77.0.2" {
		t.Fatalf("addresses %s %s", p.ranks[0].Addr(), p.ranks[1].Addr())
	}
	ln := listenIn(t, p.ns[0], "10.77.0.1:7000")
	defer ln.Close()
	sums := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		sums <- [32]byte(h.Sum(nil))
	}()
	data := make([]byte, 32<<20)
	rand.Read(data)
	c, err := dialInNs(t, p.ns[1], "tcp4", "10.77.0.1:7000", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case got := <-sums:
		if got != sha256.Sum256(data) {
			t.Fatal("the bytes arrived changed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("32 MiB did not cross the job network in 30 s")
	}
	st, ok := p.nets[1].Stat("job-1")
	if !ok || len(st.Peers) != 1 {
		t.Fatalf("stat %+v %v", st, ok)
	}
	if pr := st.Peers[0]; pr.Path != "direct" || pr.TxBytes < 32<<20 || pr.RxPackets == 0 {
		t.Fatalf("rank 1's view of rank 0: %+v", pr)
	}
}

// A rank reaches its job's ranks and nothing else: not the daemon's
// loopback (its own is another), not any address off the job's subnet,
// not a rank the job does not have.
func TestJobNetReachesNothingElse(t *testing.T) {
	p := newJobNetPair(t, 2)
	host, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go answer(host, "the daemon's loopback")
	if c, err := dialInNs(t, p.ns[1], "tcp4", host.Addr().String(), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("a rank reached the daemon's loopback")
	}
	for _, addr := range []string{"192.0.2.1:80", "172.17.0.1:2375", "10.0.0.1:22"} {
		_, err := dialInNs(t, p.ns[1], "tcp4", addr, 2*time.Second)
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("dial %s from a rank: %v, want network unreachable", addr, err)
		}
	}
	// A rank the job lacks: the SYN goes into the device and is dropped
	// by the daemon, counted.
	before, _ := p.nets[1].Stat("job-1")
	_, err = dialInNs(t, p.ns[1], "tcp4", "10.77.0.9:7000", 300*time.Millisecond)
	if err == nil {
		t.Fatal("a rank reached an address no rank has")
	}
	p2ptest.WaitFor(t, 5*time.Second, func() bool {
		st, _ := p.nets[1].Stat("job-1")
		return st.Dropped > before.Dropped
	}, "the packet to a missing rank was not counted as dropped")
}

// udpPacket is an IPv4/UDP packet from src to dst (checksums left zero:
// IPv4 header checksum is filled in, UDP's is optional).
func udpPacket(src, dst netip.Addr, port uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], port)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// sendRaw opens a job network stream from h as a hostile peer would and
// writes frames; it returns the stream's read error (a reset when the
// network refuses it).
func sendRaw(t *testing.T, h host.Host, to peer.ID, id string, pkts ...[]byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := h.NewStream(ctx, to, JobNetProtocol(testNet))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write([]byte{1, byte(len(id))})
	b.WriteString(id)
	for _, p := range pkts {
		binary.Write(&b, binary.BigEndian, uint16(len(p)))
		b.Write(p)
	}
	st.Write(b.Bytes())
	st.CloseWrite()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = st.Read(make([]byte, 1))
	return err
}

// A third peer's packets are refused at the stream; a member's packets
// that claim another member's rank are dropped, and its own arrive.
func TestJobNetStrangersAndSpoofers(t *testing.T) {
	p := newJobNetPair(t, 3)
	var got []string
	var ln net.PacketConn
	if err := inNetns(t, p.ns[0], func() error {
		var err error
		ln, err = net.ListenPacket("udp4", "10.77.0.1:9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	arrived := make(chan string, 8)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := ln.ReadFrom(buf)
			if err != nil {
				return
			}
			arrived <- string(buf[:n])
		}
	}()
	r0, r1 := RankAddr(0), RankAddr(1)
	stranger := p.hosts[2]
	// The stranger is refused before a packet is read: the stream resets.
	if err := sendRaw(t, stranger, p.hosts[0].ID(), "job-1", udpPacket(r1, r0, 9000, []byte("from a stranger"))); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a stranger's stream was not reset: %v", err)
	}
	// Member 1 speaks for rank 0 (spoofed) and then as itself.
	before, _ := p.nets[0].Stat("job-1")
	sendRaw(t, p.hosts[1], p.hosts[0].ID(), "job-1",
		udpPacket(r0, r0, 9000, []byte("spoofed as rank 0")),
		udpPacket(r1, r0, 9000, []byte("from rank 1")))
	select {
	case s := <-arrived:
		got = append(got, s)
	case <-time.After(10 * time.Second):
		t.Fatal("rank 1's own packet never arrived")
	}
	if got[0] != "from rank 1" {
		t.Fatalf("first packet to arrive: %q", got[0])
	}
	st, _ := p.nets[0].Stat("job-1")
	if st.Dropped <= before.Dropped {
		t.Fatalf("the spoofed packet was not counted as dropped (%d → %d)", before.Dropped, st.Dropped)
	}
	select {
	case s := <-arrived:
		t.Fatalf("another packet arrived: %q", s)
	default:
	}
}

func TestJoinChecks(t *testing.T) {
	hs := newHosts(t, 2)
	jn := NewJobNet(hs[0], testNet, nil)
	defer jn.Close()
	me, other := hs[0].ID(), hs[1].ID()
	for _, c := range []struct {
		name    string
		id      string
		members []peer.ID
		rank    int
	}{
		{"empty id", "", []peer.ID{me}, 0},
		{"no members", "n", nil, 0},
		{"rank out of range", "n", []peer.ID{me}, 1},
		{"rank of another peer", "n", []peer.ID{me, other}, 1},
	} {
		if _, err := jn.Join(c.id, c.members, c.rank, "/proc/self/ns/net"); err == nil {
			t.Errorf("%s: joined", c.name)
		}
	}
}

// writeLog is a stream that records the size of each write it is given.
type writeLog struct{ writes []int }

func (w *writeLog) Write(b []byte) (int, error) {
	w.writes = append(w.writes, len(b))
	return len(b), nil
}

// The sender's frames: small ones are gathered into one write of at most
// gatherBytes, a large one goes as it is (after what was gathered, in
// order), and a flush with nothing gathered writes nothing.
func TestFrameWriter(t *testing.T) {
	small, big := make([]byte, 100), make([]byte, directBytes)
	tests := []struct {
		name   string
		frames [][]byte
		want   []int
	}{
		{"small ones gathered", [][]byte{small, small, small}, []int{300}},
		{"a large one alone", [][]byte{big}, []int{directBytes}},
		{"gathered, then a large one", [][]byte{small, small, big, small}, []int{200, directBytes, 100}},
		{"gathered up to the limit", slices.Repeat([][]byte{small}, gatherBytes/100+1), []int{gatherBytes / 100 * 100, 100}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &writeLog{}
			fw := &frameWriter{w: log, buf: make([]byte, 0, gatherBytes)}
			for _, f := range tt.frames {
				if err := fw.write(f); err != nil {
					t.Fatal(err)
				}
			}
			if err := fw.flush(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(log.writes, tt.want) {
				t.Fatalf("writes %v, want %v", log.writes, tt.want)
			}
		})
	}
}
