package overlay

import (
	"io"
	"net"
	"testing"
	"time"
)

// The rank's device takes the job network's MTU: TCP between two ranks
// then moves segments near 64 KiB, each packet's costs (a device read, a
// frame, a device write) paid once for them. netlink's Tuntap leaves a
// new device at 1500, which made the overlay a twelfth of a plain copy.
func TestJobNetCarriesLargePackets(t *testing.T) {
	p := newJobNetPair(t, 2)
	copyRate(t, p.ns[0], p.ns[1], "10.77.0.1:7100", 64<<20)
	st, _ := p.nets[1].Stat("job-1")
	peer := st.Peers[0]
	if avg := peer.TxBytes / max(peer.TxPackets, 1); avg < 16<<10 {
		t.Fatalf("a 64 MiB copy went in packets of %d bytes on average (%d packets): the device's MTU is not the job network's", avg, peer.TxPackets)
	}
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
