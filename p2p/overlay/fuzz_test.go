package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzPortHeader feeds the provider's header reader what any peer can
// send: it must never panic, never read past the frame, and whatever it
// accepts must be valid and survive a round trip.
func FuzzPortHeader(f *testing.F) {
	good, _ := encodeHeader(Header{Version: Version, JobID: "0123456789abcdef", Port: 8080})
	f.Add(good)
	f.Add(append(good, "GET / HTTP/1.1\r\n"...))
	f.Add(frameOf(map[string]any{"v": 1, "j": "job1", "p": 65535}))
	f.Add(frameOf(map[string]any{"v": 1, "j": "job1", "p": 8080, "x": 1}))
	f.Add(frameOf(map[string]any{"v": 1, "j": "job1", "j ": "dup", "p": 1}))
	f.Add(frameOf([]any{1, "job1", 8080}))
	f.Add(binary.AppendUvarint(nil, 1<<40))
	f.Add([]byte{0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := readHeader(r)
		if err != nil {
			return
		}
		if err := h.validate(); err != nil {
			t.Fatalf("accepted an invalid header %+v: %v", h, err)
		}
		size, n := binary.Uvarint(b)
		if consumed := len(b) - r.Len(); n <= 0 || consumed != n+int(size) {
			t.Fatalf("read %d bytes of a %d-byte frame", consumed, n+int(size))
		}
		again, err := encodeHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := readHeader(bytes.NewReader(again))
		if err != nil || h2 != h {
			t.Fatalf("round trip: %+v, %v; want %+v", h2, err, h)
		}
	})
}

// FuzzNetHeader: the opening of a job network stream, from any peer. What
// it accepts is a printable ID of the allowed length, read from exactly
// the bytes the header claims.
func FuzzNetHeader(f *testing.F) {
	f.Add([]byte("\x01\x20" + "0123456789abcdef0123456789abcdef"))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 255, 'a'})
	f.Add([]byte{2, 1, 'a'})
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		id, err := readNetHeader(r)
		if err != nil {
			return
		}
		if len(id) == 0 || len(id) > maxNetID || int(b[1]) != len(id) || len(b)-r.Len() != 2+len(id) {
			t.Fatalf("accepted %q from %x", id, b)
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c > '~' {
				t.Fatalf("accepted an unprintable id %q", id)
			}
		}
	})
}

// FuzzParsePacket: every packet a member sends is parsed before it is
// routed. What is accepted is IPv4 with consistent lengths; the addresses
// are the header's.
func FuzzParsePacket(f *testing.F) {
	f.Add(udpPacket(RankAddr(1), RankAddr(0), 9000, []byte("hi")))
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add(make([]byte, 20))
	f.Add([]byte{0x60, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x4f, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		src, dst, err := parsePacket(b)
		if err != nil {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if b[0]>>4 != 4 || ihl < 20 || total < ihl || total > len(b) {
			t.Fatalf("accepted an inconsistent packet %x", b)
		}
		if src.As4() != [4]byte(b[12:16]) || dst.As4() != [4]byte(b[16:20]) {
			t.Fatalf("addresses %s %s from %x", src, dst, b)
		}
		if r, ok := rankOf(dst); ok && RankAddr(r) != dst {
			t.Fatalf("rank %d of %s maps back to %s", r, dst, RankAddr(r))
		}
	})
}

// FuzzDevicePacket: what a rank's device hands the daemon (a virtio-net
// header, then a packet) is checked before anything of it is trusted. An
// accepted read offers no segmentation, and filling in its checksum
// changes only the two bytes of the checksum, inside the packet.
func FuzzDevicePacket(f *testing.F) {
	hdr := func(h vnetHdr) []byte { b := make([]byte, vnetHdrLen); h.encode(b); return b }
	tcp := tcpPacket(RankAddr(0), RankAddr(1), 20, []byte("payload"))
	f.Add(append(hdr(vnetHdr{flags: vnetNeedsCsum, hdrLen: 40, csumStart: 20, csumOffset: 16}), tcp...))
	f.Add(append(hdr(vnetHdr{}), udpPacket(RankAddr(0), RankAddr(1), 9, []byte("hi"))...))
	f.Add(append(hdr(vnetHdr{flags: vnetNeedsCsum, gsoType: 1, gsoSize: 1448, csumStart: 20, csumOffset: 16}), tcp...))
	f.Add(append(hdr(vnetHdr{flags: vnetNeedsCsum, csumStart: 0xffff, csumOffset: 0xffff}), tcp...))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		before := bytes.Clone(b)
		pkt, err := devicePacket(b)
		if err != nil {
			if !errors.Is(err, errVnet) || pkt != nil {
				t.Fatalf("refused with %v and a packet of %d bytes", err, len(pkt))
			}
			return
		}
		h := decodeVnetHdr(before)
		if h.gsoType != vnetGSONone || h.gsoSize != 0 || len(pkt) != len(b)-vnetHdrLen {
			t.Fatalf("accepted %+v with a packet of %d bytes from %d", h, len(pkt), len(b))
		}
		at := vnetHdrLen + int(h.csumStart) + int(h.csumOffset)
		for i := range b {
			changed := b[i] != before[i]
			if changed && (h.flags&vnetNeedsCsum == 0 || i < at || i >= at+2) {
				t.Fatalf("byte %d changed, header %+v", i, h)
			}
		}
	})
}

// FuzzOffloadFor: a member's packet, once parsed, is written to the rank
// with a header this daemon builds from it. A checksum marked as one to
// fill in lies in the transport header of a whole TCP or UDP packet.
func FuzzOffloadFor(f *testing.F) {
	f.Add(tcpPacket(RankAddr(1), RankAddr(0), 20, []byte("payload")))
	f.Add(tcpPacket(RankAddr(1), RankAddr(0), 60, nil))
	f.Add(udpPacket(RankAddr(1), RankAddr(0), 9, []byte("hi")))
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0x20, 0, 64, 6, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		if _, _, err := parsePacket(p); err != nil {
			return
		}
		h := offloadFor(p)
		if h.flags == 0 {
			if h != (vnetHdr{}) {
				t.Fatalf("an empty header with fields: %+v", h)
			}
			return
		}
		ihl := int(p[0]&0x0f) * 4
		whole := binary.BigEndian.Uint16(p[6:8])&0x3fff == 0 && int(binary.BigEndian.Uint16(p[2:4])) == len(p)
		end := int(h.csumStart) + int(h.csumOffset) + 2
		if h.flags != vnetNeedsCsum || h.gsoType != vnetGSONone || (p[9] != 6 && p[9] != 17) || !whole ||
			int(h.csumStart) != ihl || end > int(h.hdrLen) || int(h.hdrLen) > len(p) {
			t.Fatalf("header %+v for protocol %d, %d bytes, ihl %d", h, p[9], len(p), ihl)
		}
	})
}

// FuzzSumBytes: the fast checksum agrees with the plain one.
func FuzzSumBytes(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xff})
	f.Add(bytes.Repeat([]byte{0xff}, 65))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := fold(sumBytes(b)), refSum(b); got != want {
			t.Fatalf("%x: %#04x, want %#04x", b, got, want)
		}
	})
}
