package overlay

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IfName is the job network's interface inside a rank's namespace.
const IfName = "aix0"

// MTU of a rank's interface. Large, as loopback's: the inner TCP then
// sends 64 KiB segments, so the per-packet costs (a TUN read, a frame, a
// TUN write) are paid once per 64 KiB rather than once per 1.5 KiB.
const MTU = 65000

// tun is a TUN device placed in another network namespace; the daemon
// keeps its file, so packets the namespace sends are read here.
type tun struct {
	f *os.File
}

// newTUN makes a TUN device in this process's namespace, moves it into the
// namespace at nsPath (where it is named IfName), gives it addr within
// prefix, and brings it up. The device goes when the file is closed or
// the namespace ends.
func newTUN(nsPath string, addr netip.Addr, prefix netip.Prefix) (*tun, error) {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("job network: namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	var rb [5]byte
	rand.Read(rb[:])
	// Unique in the daemon's namespace for the moment it lives there.
	tmp := "aixj" + hex.EncodeToString(rb[:])
	la := netlink.NewLinkAttrs()
	la.Name = tmp
	la.MTU = MTU
	dev := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TUN,
		Flags:  netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE | netlink.TUNTAP_VNET_HDR,
		Queues: 1, NonPersist: true}
	if err := netlink.LinkAdd(dev); err != nil {
		return nil, fmt.Errorf("job network: make TUN device (the daemon needs CAP_NET_ADMIN and /dev/net/tun): %w", err)
	}
	if len(dev.Fds) != 1 {
		for _, f := range dev.Fds {
			f.Close()
		}
		return nil, fmt.Errorf("job network: TUN device %s: %d queues", tmp, len(dev.Fds))
	}
	t := &tun{f: dev.Fds[0]}
	fail := func(err error) (*tun, error) {
		t.f.Close()
		return nil, fmt.Errorf("job network: %w", err)
	}
	if err := setOffload(t.f, tunFCsum); err != nil {
		return fail(fmt.Errorf("checksum offload on %s: %w", tmp, err))
	}
	if err := netlink.LinkSetNsFd(dev, int(target)); err != nil {
		return fail(fmt.Errorf("move %s into %s: %w", tmp, nsPath, err))
	}
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return fail(fmt.Errorf("netlink in %s: %w", nsPath, err))
	}
	defer h.Close()
	link, err := h.LinkByName(tmp)
	if err != nil {
		return fail(fmt.Errorf("find %s in %s: %w", tmp, nsPath, err))
	}
	// Tuntap's LinkAdd leaves the MTU at 1500 whatever the attributes say.
	if err := h.LinkSetMTU(link, MTU); err != nil {
		return fail(fmt.Errorf("MTU %d: %w", MTU, err))
	}
	if err := h.LinkSetName(link, IfName); err != nil {
		return fail(fmt.Errorf("name %s: %w", IfName, err))
	}
	ipn := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(prefix.Bits(), 32)}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fail(fmt.Errorf("address %s: %w", ipn, err))
	}
	if err := h.LinkSetUp(link); err != nil {
		return fail(fmt.Errorf("bring up %s: %w", IfName, err))
	}
	// Loopback may be down in a bare namespace (ip netns add); a rank's
	// own processes talk over it (torchrun's local workers).
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	return t, nil
}

// readPacket reads the next packet the rank sends into b: a virtio-net
// header, then the packet, which it returns whole (see finishPacket). An
// error of the device ends the reading; a packet whose header is refused
// comes back as nil with errVnet.
func (t *tun) readPacket(b []byte) ([]byte, error) {
	k, err := t.f.Read(b)
	if err != nil {
		return nil, err
	}
	return devicePacket(b[:k])
}

// writePacket gives the rank the parsed IPv4 packet in b[vnetHdrLen:],
// with the header offloadFor builds for it written in front.
func (t *tun) writePacket(b []byte) error {
	offloadFor(b[vnetHdrLen:]).encode(b)
	_, err := t.f.Write(b)
	return err
}

func (t *tun) Close() error { return t.f.Close() }

// setOffload tells the device which offloads its reader handles.
func setOffload(f *os.File, flags int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags) }); err != nil {
		return err
	}
	return ierr
}
