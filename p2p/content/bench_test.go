package content

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
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
// process) and, in the same run, the baselines it is judged against: a plain
// loopback TCP copy, a libp2p stream copy over the same host pair (TCP,
// noise, yamux: the ceiling for bitswap), for `data add` Go reading and
// SHA-256 hashing the same file, and writing a file of that size once
// through the page cache and once with O_DIRECT (what a get to a file
// cannot beat on this disk).
func BenchmarkTransfer(b *testing.B) {
	x := newTransferBench(b)
	for range b.N {
		x.report(x.round())
	}
}

// transferBench is BenchmarkTransfer's payload and its two nodes, a
// adding and c fetching.
type transferBench struct {
	b         *testing.B
	ctx       context.Context
	size      int64
	dir, file string
	want      [32]byte
	pa, pc    *p2p.Node
	a, c      *Store
	// AIXBLOCK_BENCH_PROFILE=DIR writes one CPU profile per phase
	// (add.cpu, bitswap.cpu, get.cpu) there, so that each phase's profile
	// holds only that phase; run it without -cpuprofile.
	profDir string
}

func newTransferBench(b *testing.B) *transferBench {
	x := &transferBench{b: b, ctx: context.Background(), size: benchSize(), dir: b.TempDir(),
		profDir: os.Getenv("AIXBLOCK_BENCH_PROFILE")}
	x.file = filepath.Join(x.dir, "payload")
	f, _ := os.Create(x.file)
	if _, err := io.CopyN(f, rand.Reader, x.size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	x.pa, x.a = x.node("a", nil)
	x.pc, x.c = x.node("b", []peer.AddrInfo{{ID: x.pa.Host.ID(), Addrs: x.pa.Host.Addrs()}})
	x.want = fileHash(b, x.file)
	return x
}

// node starts a node whose store keeps its datastore in dir/name.
func (x *transferBench) node(name string, boot []peer.AddrInfo) (*p2p.Node, *Store) {
	b, ctx := x.b, x.ctx
	pn, err := p2p.New(ctx, p2p.Config{Network: "bench", NoNAT: true, DHTRefresh: -1, Bootstrap: boot})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pn.Close() })
	pn.Bootstrap(ctx)
	d, err := OpenDatastore(filepath.Join(x.dir, name))
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

// transferTimes are one round's figures: wall times, and the CPU per MiB
// of the add, bitswap and get phases.
type transferTimes struct {
	sha, add, fetch, get, tcp, stream, cached, direct time.Duration
	addCPU, fetchCPU, getCPU                          float64
}

func (x *transferBench) round() transferTimes {
	b, ctx, c := x.b, x.ctx, x.c
	var tt transferTimes
	start := time.Now()
	if sum := fileHash(b, x.file); sum != x.want {
		b.Fatal("payload changed")
	}
	tt.sha = time.Since(start)
	var root cid.Cid
	tt.add, tt.addCPU = x.timed("add", func() {
		var err error
		if root, err = x.a.Add(ctx, x.file, AddOptions{Pin: true}); err != nil {
			b.Fatal(err)
		}
	})
	tt.fetch, tt.fetchCPU = x.timed("bitswap", func() {
		if _, err := c.Fetch(ctx, root, nil); err != nil {
			b.Fatal(err)
		}
	})
	c.GC(ctx)
	out := filepath.Join(x.dir, "out")
	tt.get, tt.getCPU = x.timed("get", func() {
		if _, err := c.Get(ctx, root, out, nil); err != nil {
			b.Fatal(err)
		}
	})
	if fileHash(b, out) != x.want {
		b.Fatal("the file got differs")
	}
	os.Remove(out)
	c.GC(ctx) // the next round fetches again

	tt.tcp = tcpCopy(b, x.file)
	tt.stream = streamCopy(b, x.pa, x.pc, x.file)
	// What writing the file alone costs, once through the page cache
	// and once with O_DIRECT: the floor under any get to a file here.
	tt.cached = writeOnce(b, filepath.Join(x.dir, "w"), x.size, false)
	tt.direct = writeOnce(b, filepath.Join(x.dir, "w"), x.size, true)
	return tt
}

// timed runs one phase, profiled as name, and returns its wall time and
// its CPU per MiB. CPU per MiB (both nodes are this process) says what a
// phase costs even when other programs share the cores and the wall-clock
// rates mostly measure them.
func (x *transferBench) timed(name string, phase func()) (time.Duration, float64) {
	stop := x.profile(name)
	start, cpu := time.Now(), cpuTime(x.b)
	phase()
	wall := time.Since(start)
	stop()
	return wall, float64((cpuTime(x.b) - cpu).Milliseconds()) / float64(x.size>>20)
}

func (x *transferBench) profile(name string) func() {
	if x.profDir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(x.profDir, name+".cpu"))
	if err != nil {
		x.b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		x.b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func (x *transferBench) report(tt transferTimes) {
	b := x.b
	mbps := func(d time.Duration) float64 { return float64(x.size) / d.Seconds() / (1 << 20) }
	b.ReportMetric(mbps(tt.tcp), "tcp-MiB/s")
	b.ReportMetric(mbps(tt.stream), "libp2p-stream-MiB/s")
	b.ReportMetric(mbps(tt.fetch), "bitswap-MiB/s")
	b.ReportMetric(mbps(tt.get), "get-to-file-MiB/s")
	b.ReportMetric(tt.tcp.Seconds()/tt.stream.Seconds(), "stream/tcp")
	b.ReportMetric(tt.tcp.Seconds()/tt.fetch.Seconds(), "bitswap/tcp")
	b.ReportMetric(tt.tcp.Seconds()/tt.get.Seconds(), "get/tcp")
	b.ReportMetric(mbps(tt.cached), "write-cached-MiB/s")
	if tt.direct > 0 {
		b.ReportMetric(mbps(tt.direct), "write-direct-MiB/s")
	}
	b.ReportMetric(mbps(tt.sha), "go-sha256-MiB/s")
	b.ReportMetric(mbps(tt.add), "add-MiB/s")
	b.ReportMetric(tt.sha.Seconds()/tt.add.Seconds(), "add/sha256")
	b.ReportMetric(tt.addCPU, "add-cpu-ms/MiB")
	b.ReportMetric(tt.fetchCPU, "bitswap-cpu-ms/MiB")
	b.ReportMetric(tt.getCPU, "get-cpu-ms/MiB")
}

// cpuTime is the user and system CPU this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fileHash reads and SHA-256 hashes a file, the rate `data add` is held to.
func fileHash(b *testing.B, path string) [32]byte {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// writeOnce times writing size bytes to a new file at path, 1 MiB at a
// time, 8 writes in flight (Go's page-cache write, or O_DIRECT; 0 when
// the filesystem has no direct I/O), and removes it.
func writeOnce(b *testing.B, path string, size int64, direct bool) time.Duration {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	defer f.Close()
	if direct && !setDirect(int(f.Fd())) {
		return 0
	}
	buf := alignedBuf(1 << 20)
	rand.Read(buf)
	start := time.Now()
	var wg sync.WaitGroup
	offs := make(chan int64)
	var mu sync.Mutex
	var first error
	for range 8 {
		wg.Go(func() {
			for off := range offs { // keeps taking offsets after an error, so the feeder never blocks
				if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		offs <- off
	}
	close(offs)
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
	return time.Since(start)
}

// streamCopy sends the file from a to c over one libp2p stream on their
// existing connection and times it until c has read every byte.
func streamCopy(b *testing.B, a, c *p2p.Node, file string) time.Duration {
	const proto = "/aixblock/bench/copy/1"
	a.Host.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		f, err := os.Open(file)
		if err != nil {
			s.Reset()
			return
		}
		defer f.Close()
		io.CopyBuffer(s, f, make([]byte, 1<<20))
	})
	defer a.Host.RemoveStreamHandler(proto)
	start := time.Now()
	s, err := c.Host.NewStream(context.Background(), a.Host.ID(), proto)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n, err := io.CopyBuffer(io.Discard, s, make([]byte, 1<<20))
	if err != nil || n != benchSize() {
		b.Fatalf("stream copy: %d bytes, %v", n, err)
	}
	return time.Since(start)
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
