package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// delayLine is netem's delay and rate in user space, for kernels built
// without sch_netem: two TUN devices, eth0 in each namespace (10.88.0.1
// and 10.88.0.2), and each packet one sends is written into the other
// after it has waited its turn on a link of rate bits/s and then delay.
// The queue is not bounded (netem's with a large limit), so it never
// drops.
type delayLine struct {
	tuns  [2]*os.File
	delay time.Duration
	rate  float64
	wg    sync.WaitGroup
}

// wanMTU is an internet path's.
const wanMTU = 1500

func newDelayLine(tb testing.TB, nsPaths [2]string, delay time.Duration, rate float64) *delayLine {
	tb.Helper()
	d := &delayLine{delay: delay, rate: rate}
	for i, path := range nsPaths {
		f, err := wanTUN(path, fmt.Sprintf("10.88.0.%d/24", i+1))
		if err != nil {
			tb.Fatal(err)
		}
		d.tuns[i] = f
	}
	for i := range 2 {
		d.carry(d.tuns[i], d.tuns[1-i])
	}
	tb.Cleanup(func() {
		for _, f := range d.tuns {
			f.Close()
		}
		d.wg.Wait()
	})
	return d
}

type shapedPacket struct {
	b  []byte
	at time.Time // when it leaves the far end of the link
}

// carry moves packets from one device to the other: the reader stamps
// each with its departure (after the packets ahead of it, at the rate)
// plus the delay; the writer delivers them at that time, in order.
func (d *delayLine) carry(from, to *os.File) {
	q := make(chan shapedPacket, 1<<16)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		defer close(q)
		var free time.Time // when the link has sent what it holds
		for {
			b := make([]byte, wanMTU+64)
			n, err := from.Read(b)
			if err != nil {
				return // the file was closed
			}
			free = later(free, time.Now()).Add(time.Duration(float64(n*8) / d.rate * float64(time.Second)))
			q <- shapedPacket{b[:n], free.Add(d.delay)}
		}
	}()
	go func() {
		defer d.wg.Done()
		for p := range q {
			time.Sleep(time.Until(p.at))
			to.Write(p.b) // a closed device at the end: the packet is lost, as on a link going down
		}
	}()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// wanTUN makes a TUN device here, moves it into the namespace at path as
// eth0 with address cidr, and brings it up; it goes when its file closes.
func wanTUN(path, cidr string) (*os.File, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", path, err)
	}
	defer target.Close()
	la := netlink.NewLinkAttrs()
	var rb [4]byte
	rand.Read(rb[:])
	la.Name = "aixwan" + hex.EncodeToString(rb[:]) // unique here while it lives here
	dev := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
		Queues: 1, NonPersist: true}
	if err := netlink.LinkAdd(dev); err != nil {
		return nil, fmt.Errorf("TUN device (needs /dev/net/tun): %w", err)
	}
	f := dev.Fds[0]
	fail := func(what string, err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("TUN %s in %s: %s: %w", la.Name, path, what, err)
	}
	if err := netlink.LinkSetNsFd(dev, int(target)); err != nil {
		return fail("move", err)
	}
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return fail("netlink", err)
	}
	defer h.Close()
	link, err := h.LinkByName(la.Name)
	if err != nil {
		return fail("find", err)
	}
	ip, ipn, _ := net.ParseCIDR(cidr)
	ipn.IP = ip
	for what, err := range map[string]error{"mtu": h.LinkSetMTU(link, wanMTU), "name": h.LinkSetName(link, "eth0")} {
		if err != nil {
			return fail(what, err)
		}
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fail("address", err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fail("up", err)
	}
	return f, nil
}
