package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// refSum is the ones' complement sum of b as big-endian 16-bit words,
// the plain way (RFC 1071), folded.
func refSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestSumBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1499, 1500, 65535} {
		for _, fill := range []string{"random", "ones", "zeros"} {
			b := make([]byte, n)
			switch fill {
			case "random":
				for i := range b {
					b[i] = byte(r.Uint32())
				}
			case "ones":
				for i := range b {
					b[i] = 0xff
				}
			}
			if got, want := fold(sumBytes(b)), refSum(b); got != want {
				t.Errorf("%d %s bytes: sum %#04x, want %#04x", n, fill, got, want)
			}
		}
	}
}

// pseudoSum is the folded sum of an IPv4 packet's pseudo-header for its
// transport segment, the reference way.
func pseudoSum(p []byte) uint16 {
	n := int(binary.BigEndian.Uint16(p[2:4])) - int(p[0]&0x0f)*4
	return refSum(append(append([]byte{}, p[12:20]...), 0, p[9], byte(n>>8), byte(n)))
}

// transportSum is the folded sum of an IPv4 packet's pseudo-header and
// transport segment, checksum field included: 0xffff when it is right.
func transportSum(p []byte) uint16 {
	seg := p[int(p[0]&0x0f)*4 : binary.BigEndian.Uint16(p[2:4])]
	return fold(uint64(pseudoSum(p)) + uint64(refSum(seg)))
}

func transportOK(p []byte) bool { return transportSum(p) == 0xffff }

// tcpPacket is an IPv4/TCP segment from src to dst with a header of
// hdrLen bytes, its checksum field left holding the pseudo-header's sum
// as a device with checksum offload is given it.
func tcpPacket(src, dst netip.Addr, hdrLen int, payload []byte) []byte {
	p := make([]byte, 20+hdrLen+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 6
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], 7100)
	p[32] = byte(hdrLen/4) << 4
	copy(p[20+hdrLen:], payload)
	binary.BigEndian.PutUint16(p[36:], pseudoSum(p))
	return p
}

func TestFinishPacket(t *testing.T) {
	a, b := RankAddr(0), RankAddr(1)
	payload := bytes.Repeat([]byte("overlay!"), 1000)
	needs := func(start, off uint16) vnetHdr {
		return vnetHdr{flags: vnetNeedsCsum, csumStart: start, csumOffset: off}
	}
	const (
		filled = iota
		untouched
		refused
	)
	tests := []struct {
		name string
		h    vnetHdr
		pkt  []byte
		want int
	}{
		{"tcp with its checksum to fill", needs(20, 16), tcpPacket(a, b, 20, payload), filled},
		{"tcp with options, odd length", needs(20, 16), tcpPacket(a, b, 32, payload[:999]), filled},
		{"tcp with no payload", needs(20, 16), tcpPacket(a, b, 20, nil), filled},
		{"udp whole already", vnetHdr{}, withUDPSum(udpPacket(a, b, 9, payload)), untouched},
		{"a super-packet not asked for", vnetHdr{flags: vnetNeedsCsum, gsoType: 1, gsoSize: 1448, csumStart: 20, csumOffset: 16}, tcpPacket(a, b, 20, payload), refused},
		{"a segment size without a type", vnetHdr{gsoSize: 1448}, tcpPacket(a, b, 20, payload), refused},
		{"checksum past the end", needs(20, 16), tcpPacket(a, b, 20, nil)[:37], refused},
		{"start past the end", needs(65000, 0), tcpPacket(a, b, 20, nil), refused},
		{"offset wrapping past the end", needs(20, 0xffff), tcpPacket(a, b, 20, nil), refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := bytes.Clone(tt.pkt)
			err := finishPacket(tt.h, tt.pkt)
			switch tt.want {
			case filled:
				if err != nil || !transportOK(tt.pkt) {
					t.Fatalf("finish: %v; checksum right %v", err, transportOK(tt.pkt))
				}
			case untouched:
				if err != nil || !bytes.Equal(tt.pkt, before) {
					t.Fatalf("a whole packet: %v, changed %v", err, !bytes.Equal(tt.pkt, before))
				}
			case refused:
				if !errors.Is(err, errVnet) {
					t.Fatalf("accepted: %v", err)
				}
			}
		})
	}
}

func TestOffloadFor(t *testing.T) {
	a, b := RankAddr(0), RankAddr(1)
	frag := func(p []byte, v uint16) []byte { binary.BigEndian.PutUint16(p[6:], v); return p }
	proto := func(p []byte, v byte) []byte { p[9] = v; return p }
	doff := func(p []byte, words byte) []byte { p[32] = words << 4; return p }
	tests := []struct {
		name string
		pkt  []byte
		want vnetHdr
	}{
		{"tcp", tcpPacket(a, b, 20, []byte("x")), vnetHdr{flags: vnetNeedsCsum, hdrLen: 40, csumStart: 20, csumOffset: 16}},
		{"tcp with options", tcpPacket(a, b, 40, nil), vnetHdr{flags: vnetNeedsCsum, hdrLen: 60, csumStart: 20, csumOffset: 16}},
		{"udp", udpPacket(a, b, 9, []byte("x")), vnetHdr{flags: vnetNeedsCsum, hdrLen: 28, csumStart: 20, csumOffset: 6}},
		{"a first fragment", frag(udpPacket(a, b, 9, []byte("x")), 0x2000), vnetHdr{}},
		{"a later fragment", frag(udpPacket(a, b, 9, []byte("x")), 0x0010), vnetHdr{}},
		{"don't fragment is whole", frag(udpPacket(a, b, 9, []byte("x")), 0x4000), vnetHdr{flags: vnetNeedsCsum, hdrLen: 28, csumStart: 20, csumOffset: 6}},
		{"icmp", proto(udpPacket(a, b, 9, []byte("x")), 1), vnetHdr{}},
		{"tcp shorter than its header", proto(udpPacket(a, b, 9, nil), 6), vnetHdr{}},
		{"tcp claiming a short header", doff(tcpPacket(a, b, 20, nil), 4), vnetHdr{}},
		{"tcp claiming a header past its end", doff(tcpPacket(a, b, 20, nil), 15), vnetHdr{}},
		{"udp shorter than its header", proto(tcpPacket(a, b, 20, nil), 17)[:24], vnetHdr{}},
		{"bytes after the packet", append(udpPacket(a, b, 9, []byte("x")), 0), vnetHdr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "udp shorter than its header" {
				binary.BigEndian.PutUint16(tt.pkt[2:], 24)
			}
			if _, _, err := parsePacket(tt.pkt); err != nil {
				t.Fatalf("the case is not a parsed packet: %v", err)
			}
			if got := offloadFor(tt.pkt); got != tt.want {
				t.Fatalf("header %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestVnetHdrRoundTrip(t *testing.T) {
	h := vnetHdr{flags: 1, gsoType: 4, hdrLen: 0x1234, gsoSize: 0x5678, csumStart: 0x9abc, csumOffset: 0xdef0}
	b := make([]byte, vnetHdrLen)
	h.encode(b)
	if got := decodeVnetHdr(b); got != h {
		t.Fatalf("%+v came back as %+v", h, got)
	}
}

// newTap makes h a member that keeps every packet another member sends
// it, as its frames arrive.
func newTap(t *testing.T, h host.Host) <-chan []byte {
	pkts := make(chan []byte, 4096)
	h.SetStreamHandler(JobNetProtocol(testNet), func(st network.Stream) {
		defer st.Reset()
		if _, err := readNetHeader(st); err != nil {
			return
		}
		var lb [2]byte
		for {
			if _, err := io.ReadFull(st, lb[:]); err != nil {
				return
			}
			p := make([]byte, binary.BigEndian.Uint16(lb[:]))
			if _, err := io.ReadFull(st, p); err != nil {
				return
			}
			select {
			case pkts <- p:
			default:
			}
		}
	})
	return pkts
}

// What a rank sends leaves this daemon whole: the TCP and UDP checksums
// its kernel left to the device are filled in before the packets go on
// the wire, so a member that reads them as plain packets (a daemon
// before offloads) finds them right.
func TestJobNetSendsWholeChecksums(t *testing.T) {
	hs := newHosts(t, 2)
	sender, tapHost := hs[0], hs[1]
	jn := NewJobNet(sender, testNet, nil)
	t.Cleanup(func() { jn.Close() })
	tap := newTap(t, tapHost)
	path := "/run/netns/" + newNetns(t)
	r, err := jn.Join("job-sums", []peer.ID{sender.ID(), tapHost.ID()}, 0, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	dst := RankAddr(1).String() + ":9"
	seen := map[string]bool{} // "tcp", and UDP packets by payload size
	want := []string{"tcp", "udp 1", "udp 1001", "udp 60000"}
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		for _, n := range []int{1, 1001, 60000} {
			udpFlood(t, path, dst, n, 1)
		}
		// A connection nobody answers: its SYNs are the TCP packets.
		dialInNs(t, path, "tcp4", dst, 100*time.Millisecond)
		for {
			select {
			case p := <-tap:
				if _, _, err := parsePacket(p); err != nil {
					t.Fatalf("a packet on the wire: %v", err)
				}
				if !transportOK(p) {
					t.Fatalf("protocol %d, %d bytes: its checksum is not filled in", p[9], len(p))
				}
				switch p[9] {
				case 6:
					seen["tcp"] = true
				case 17:
					seen[fmt.Sprintf("udp %d", len(p)-28)] = true
				}
			default:
				for _, w := range want {
					if !seen[w] {
						return false
					}
				}
				return true
			}
		}
	}, "not every kind of packet reached the tap: saw %v of %v", seen, want)
}

// withUDPSum fills in an IPv4/UDP packet's checksum, as a kernel without
// offloads does.
func withUDPSum(p []byte) []byte {
	binary.BigEndian.PutUint16(p[26:], 0)
	binary.BigEndian.PutUint16(p[26:], ^transportSum(p))
	return p
}

// A member's packets whose checksums are wrong are not checked again on
// arrival, as a checked link's would not be: the stream they crossed is
// authenticated, and what the member sends it could as well send with a
// right checksum. One with a right one arrives too, and so does a packet
// written whole by a daemon without offloads (the wire is the same).
func TestJobNetDeliversMemberPackets(t *testing.T) {
	p := newJobNetPair(t, 2)
	var pc net.PacketConn
	if err := inNetns(t, p.ns[0], func() error {
		var err error
		pc, err = net.ListenPacket("udp4", RankAddr(0).String()+":9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	good := withUDPSum(udpPacket(RankAddr(1), RankAddr(0), 9000, []byte("good")))
	bad := withUDPSum(udpPacket(RankAddr(1), RankAddr(0), 9000, []byte("bad!")))
	bad[26] ^= 0x5a
	if !transportOK(good) || transportOK(bad) {
		t.Fatal("the test's packets are not what they claim")
	}
	sendRaw(t, p.hosts[1], p.hosts[0].ID(), "job-1", good, bad)
	got := map[string]bool{}
	buf := make([]byte, 64)
	for len(got) < 2 {
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("received %v: %v", got, err)
		}
		got[string(buf[:n])] = true
	}
}
