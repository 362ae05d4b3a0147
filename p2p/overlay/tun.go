package overlay

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

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
//
// The device is persistent (TUNSETPERSIST): it outlives the daemon's file,
// with its address and route, so a daemon that restarts finds it in the
// rank's namespace and attaches to it again (openTUN), and the rank's TCP
// connections see an outage, not a reset. Its lifetime is the namespace's
// (the holder container's) or, when the rank leaves, remove's.
type tun struct {
	f *os.File
}

// tunFlags are the device's flags, the same at its making and at every
// attach (the kernel refuses an attach whose type or queues differ, and
// takes the vnet header flag from the attach).
const tunFlags = unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_ONE_QUEUE | unix.IFF_VNET_HDR

// newTUN makes a TUN device in this process's namespace, moves it into the
// namespace at nsPath (where it is named IfName), gives it addr within
// prefix, and brings it up. The device goes when remove is called or
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
		t.remove()
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
	// Persistent only once in the rank's namespace: a daemon that dies
	// before leaves no device in its own.
	if err := ioctlInt(t.f, unix.TUNSETPERSIST, 1); err != nil {
		return fail(fmt.Errorf("make %s persistent: %w", IfName, err))
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

// Close detaches the daemon from the device, which stays in the rank's
// namespace (a daemon that goes away leaves its ranks' devices for the
// next one).
func (t *tun) Close() error { return t.f.Close() }

// remove ends the device: no longer persistent, it goes with the file.
// A device whose namespace ended is gone already (EBADFD).
func (t *tun) remove() error {
	err := ioctlInt(t.f, unix.TUNSETPERSIST, 0)
	if errors.Is(err, unix.EBADFD) {
		err = nil
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// openTUN attaches to the rank device IfName that a daemon before this
// one left in the namespace at nsPath, checking it is a TUN device with
// addr: the rank's connections go on through it. The attach is made on a
// thread inside the namespace, where the device's name is looked up; the
// device must exist already (an attach by a name that has none would make
// a new one).
func openTUN(nsPath string, addr netip.Addr) (*tun, error) {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("job network: namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	if err := checkRankDevice(target, addr); err != nil {
		return nil, fmt.Errorf("job network: rejoin in %s: %w", nsPath, err)
	}
	f, err := attachIn(target)
	if err != nil {
		return nil, fmt.Errorf("job network: rejoin in %s: %w", nsPath, err)
	}
	t := &tun{f: f}
	if err := setOffload(t.f, tunFCsum); err != nil {
		t.Close()
		return nil, fmt.Errorf("job network: checksum offload on %s: %w", IfName, err)
	}
	return t, nil
}

// checkRankDevice: IfName in target is a TUN device holding addr.
func checkRankDevice(target netns.NsHandle, addr netip.Addr) error {
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(IfName)
	if err != nil {
		return fmt.Errorf("no device %s: %w", IfName, err)
	}
	if link.Type() != "tuntap" {
		return fmt.Errorf("%s is a %s device, not the rank's", IfName, link.Type())
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", IfName, err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP.To4()); ok && got == addr {
			if link.Attrs().Flags&net.FlagUp == 0 {
				return h.LinkSetUp(link)
			}
			return nil
		}
	}
	return fmt.Errorf("%s does not hold the rank's address %s", IfName, addr)
}

// attachIn opens /dev/net/tun on a thread in target and attaches to
// IfName there. A thread that cannot go back to the daemon's namespace
// ends with its goroutine (it stays locked).
func attachIn(target netns.NsHandle) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, restored, err := attachOnThread(target)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

func attachOnThread(target netns.NsHandle) (f *os.File, restored bool, err error) {
	own, err := netns.Get()
	if err != nil {
		return nil, true, fmt.Errorf("own namespace: %w", err)
	}
	defer own.Close()
	if err := netns.Set(target); err != nil {
		return nil, true, fmt.Errorf("enter namespace: %w", err)
	}
	f, err = attachTUN()
	if rerr := netns.Set(own); rerr != nil {
		if f != nil {
			f.Close()
		}
		return nil, false, fmt.Errorf("leave namespace: %w", rerr)
	}
	return f, true, err
}

// attachTUN opens /dev/net/tun and attaches to IfName, in the calling
// thread's namespace. As netlink does for a new device, the descriptor is
// made non-blocking before it becomes a File, so reads go through the
// poller.
func attachTUN() (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(IfName)
	if err == nil {
		ifr.SetUint16(tunFlags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to %s: %w", IfName, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// setOffload tells the device which offloads its reader handles.
func setOffload(f *os.File, flags int) error { return ioctlInt(f, unix.TUNSETOFFLOAD, flags) }

// ioctlInt is an ioctl on f's descriptor taking an int.
func ioctlInt(f *os.File, req uint, v int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), req, v) }); err != nil {
		return err
	}
	return ierr
}
