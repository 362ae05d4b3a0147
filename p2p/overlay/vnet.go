package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// A rank's device speaks virtio-net headers (IFF_VNET_HDR) with checksum
// offload (TUN_F_CSUM): a packet its kernel sends carries a header, and
// its TCP and UDP checksums are left for the device to fill in. The
// device being a checksum-capable one also lets the kernel hand it
// scattered buffers, where a device without offloads made it gather each
// 64 KiB packet into one buffer and sum it in software. The header does
// not cross the wire: a member's packets travel whole, checksums filled
// in here, so the wire is that of any other daemon (jobnet/1). What
// arrives is written with a header that this daemon builds from the
// packet itself, never one a member sent.
//
// TCP segmentation offload (TUN_F_TSO4) is not asked for: the device's
// MTU already lets TCP send 64 KiB packets, the most IPv4 carries, so a
// super-packet would hold no more, and carrying one whole would put
// segment sizes on the wire.

// vnetHdrLen is the size of struct virtio_net_hdr, the device's default
// (TUNSETVNETHDRSZ is left alone).
const vnetHdrLen = 10

// The header's fields, from linux/virtio_net.h and linux/if_tun.h.
const (
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: csum_start, csum_offset valid
	vnetGSONone   = 0 // VIRTIO_NET_HDR_GSO_NONE
	tunFCsum      = 1 // TUN_F_CSUM for TUNSETOFFLOAD
)

// vnetHdr is struct virtio_net_hdr. Its fields are in the host's byte
// order (a TUN device's header is, unless told otherwise).
type vnetHdr struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	e := binary.NativeEndian
	return vnetHdr{flags: b[0], gsoType: b[1], hdrLen: e.Uint16(b[2:]), gsoSize: e.Uint16(b[4:]),
		csumStart: e.Uint16(b[6:]), csumOffset: e.Uint16(b[8:])}
}

func (h vnetHdr) encode(b []byte) {
	e := binary.NativeEndian
	b[0], b[1] = h.flags, h.gsoType
	e.PutUint16(b[2:], h.hdrLen)
	e.PutUint16(b[4:], h.gsoSize)
	e.PutUint16(b[6:], h.csumStart)
	e.PutUint16(b[8:], h.csumOffset)
}

var errVnet = errors.New("virtio-net header")

// devicePacket is the packet in b, a read from a rank's device (its
// header, then the packet), made whole by finishPacket.
func devicePacket(b []byte) ([]byte, error) {
	if len(b) < vnetHdrLen {
		return nil, fmt.Errorf("%w: a read of %d bytes", errVnet, len(b))
	}
	pkt := b[vnetHdrLen:]
	if err := finishPacket(decodeVnetHdr(b), pkt); err != nil {
		return nil, err
	}
	return pkt, nil
}

// finishPacket checks the header the device put before pkt and fills in
// the checksum it left: the packet is then whole, as a device without
// offloads would have handed it. A header this daemon did not ask for (a
// segmented super-packet) or whose checksum lies outside the packet is
// refused, not trusted.
func finishPacket(h vnetHdr, pkt []byte) error {
	if h.gsoType != vnetGSONone || h.gsoSize != 0 {
		return fmt.Errorf("%w: segmentation type %d, size %d: not offered", errVnet, h.gsoType, h.gsoSize)
	}
	if h.flags&vnetNeedsCsum == 0 {
		return nil
	}
	start, at := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
	if at+2 > len(pkt) {
		return fmt.Errorf("%w: checksum at %d+%d in a %d-byte packet", errVnet, h.csumStart, h.csumOffset, len(pkt))
	}
	// The field holds the pseudo-header's sum: summed with the rest, it
	// gives the whole. A sum of zero is sent as its other form, as the
	// kernel does (UDP reads zero as no checksum).
	sum := ^fold(sumBytes(pkt[start:]))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], sum)
	return nil
}

// offloadFor is the header to write pkt, a parsed IPv4 packet, to a
// rank's device with: for a whole (unfragmented) TCP or UDP packet, its
// checksum marked as one to fill in, which the receiving kernel takes as
// checked. The packet crossed an authenticated stream, so a second check
// would find only what its sender put there; a member that sends a bad
// checksum reaches no further than with a good one. Anything else gets
// an empty header and is checked by the kernel as before.
func offloadFor(pkt []byte) vnetHdr {
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	fragment := binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 // more fragments, or an offset
	if fragment || total != len(pkt) {
		return vnetHdr{}
	}
	var off, hdr int
	switch pkt[9] {
	case 6: // TCP: the checksum at 16, the header's length in its data offset
		off = 16
		if ihl+20 <= total {
			hdr = int(pkt[ihl+12]>>4) * 4
		}
		if hdr < 20 {
			return vnetHdr{}
		}
	case 17: // UDP: a header of 8, the checksum at 6
		off, hdr = 6, 8
	default:
		return vnetHdr{}
	}
	if ihl+hdr > total {
		return vnetHdr{}
	}
	return vnetHdr{flags: vnetNeedsCsum, hdrLen: uint16(ihl + hdr), csumStart: uint16(ihl), csumOffset: uint16(off)}
}

// sumBytes is the ones' complement sum of b as big-endian 16-bit words
// (an odd last byte padded with zero), not yet folded to 16 bits. It adds
// 64-bit little-endian words with their carries and swaps the bytes at
// the end: the ones' complement sum commutes with the byte order.
func sumBytes(b []byte) uint64 {
	var acc, carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:]), carry)
		acc += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		acc += carry
		b = b[8:]
	}
	var tail [8]byte
	copy(tail[:], b)
	acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(tail[:]), 0)
	acc += carry
	s := fold(acc)
	return uint64(s>>8 | s<<8)
}

// fold reduces a ones' complement sum to 16 bits.
func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
