package content

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// benchSize is 1 GiB unless AIXBLOCK_BENCH_MIB says otherwise.
func benchSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("AIXBLOCK_BENCH_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 1 << 30
}

// BenchmarkTransfer moves one file between two nodes on loopback TCP
// (libp2p, bitswap, pebble datastores in temp dirs: the daemon's stack in one
// process) and, as the baseline in the same run, copies the same bytes over a
// plain loopback TCP connection. It also times `data add` against the
// sha256sum command on the same file.
func BenchmarkTransfer(b *testing.B) {
	size := benchSize()
	dir := b.TempDir()
	file := filepath.Join(dir, "payload")
	f, _ := os.Create(file)
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	ctx := context.Background()
	node := func(name string, boot []peer.AddrInfo) (*p2p.Node, *Store) {
		pn, err := p2p.New(ctx, p2p.Config{Network: "bench", NoNAT: true, DHTRefresh: -1, Bootstrap: boot})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { pn.Close() })
		pn.Bootstrap(ctx)
		d, err := OpenDatastore(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Close() })
		s, err := New(ctx, pn.Host, Config{Datastore: d, Routing: pn.DHT})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return pn, s
	}
	pa, a := node("a", nil)
	_, c := node("b", []peer.AddrInfo{{ID: pa.Host.ID(), Addrs: pa.Host.Addrs()}})
	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }

	for range b.N {
		start := time.Now()
		if out, err := exec.Command("sha256sum", file).CombinedOutput(); err != nil {
			b.Fatalf("sha256sum: %v %s", err, out)
		}
		shaT := time.Since(start)

		start = time.Now()
		root, err := a.Add(ctx, file, AddOptions{Pin: true})
		if err != nil {
			b.Fatal(err)
		}
		addT := time.Since(start)

		start = time.Now()
		if _, err := c.Fetch(ctx, root, nil); err != nil {
			b.Fatal(err)
		}
		fetchT := time.Since(start)
		if _, err := c.Get(ctx, root, filepath.Join(dir, "out"), nil); err != nil {
			b.Fatal(err)
		}
		getT := time.Since(start)
		os.Remove(filepath.Join(dir, "out"))
		c.GC(ctx) // the next round fetches again

		tcpT := tcpCopy(b, file)

		b.ReportMetric(mbps(shaT), "sha256sum-MiB/s")
		b.ReportMetric(mbps(addT), "add-MiB/s")
		b.ReportMetric(shaT.Seconds()/addT.Seconds(), "add/sha256sum")
		b.ReportMetric(mbps(tcpT), "tcp-MiB/s")
		b.ReportMetric(mbps(fetchT), "bitswap-MiB/s")
		b.ReportMetric(tcpT.Seconds()/fetchT.Seconds(), "bitswap/tcp")
		b.ReportMetric(mbps(getT), "get-to-file-MiB/s")
	}
}

// tcpCopy sends the file over one loopback TCP connection and times it
// until the receiver has read every byte.
func tcpCopy(b *testing.B, file string) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		_, err = io.Copy(io.Discard, conn)
		done <- err
	}()
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(conn, f); err != nil {
		b.Fatal(err)
	}
	conn.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
