package overlay

import (
	"io"
	"net"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkJobNet copies over the job network between two namespaces
// (each with its own libp2p host) and, in the same run, over a plain veth
// pair between two other namespaces: the ratio is what the overlay costs
// (encryption, framing, two TUN crossings) against the kernel's own path.
func BenchmarkJobNet(b *testing.B) {
	const size = 256 << 20
	p := newJobNetPair(b, 2)
	a, c := newNetns(b), newNetns(b)
	veth := "aixv" + a[len(a)-6:]
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("link", "add", veth+"a", "netns", a, "type", "veth", "peer", "name", veth+"c", "netns", c)
	run("-n", a, "addr", "add", "10.99.0.1/24", "dev", veth+"a")
	run("-n", c, "addr", "add", "10.99.0.2/24", "dev", veth+"c")
	run("-n", a, "link", "set", veth+"a", "up")
	run("-n", c, "link", "set", veth+"c", "up")
	var plain, over float64
	for b.Loop() {
		plain = copyRate(b, "/run/netns/"+a, "/run/netns/"+c, "10.99.0.1:7100", size)
		over = copyRate(b, p.ns[0], p.ns[1], "10.77.0.1:7100", size)
	}
	b.ReportMetric(plain, "tcp-MiB/s")
	b.ReportMetric(over, "overlay-MiB/s")
	b.ReportMetric(over/plain, "overlay/tcp")
}

// copyRate sends size bytes from namespace from to a listener at addr in
// namespace to, in MiB/s.
func copyRate(b testing.TB, to, from, addr string, size int) float64 {
	ln := listenIn(b, to, addr)
	defer ln.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := dialInNs(b, from, "tcp4", addr, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for sent := 0; sent < size; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	n := <-done
	el := time.Since(start)
	c.Close()
	if n != int64(size) {
		b.Fatalf("%d of %d bytes arrived", n, size)
	}
	return float64(size) / (1 << 20) / el.Seconds()
}

func TestJobNetPacketSizes(t *testing.T) {
	p := newJobNetPair(t, 2)
	copyRate(t, p.ns[0], p.ns[1], "10.77.0.1:7100", 64<<20)
	st, _ := p.nets[1].Stat("job-1")
	t.Logf("%+v avg tx %d", st.Peers[0], st.Peers[0].TxBytes/max(st.Peers[0].TxPackets, 1))
}
