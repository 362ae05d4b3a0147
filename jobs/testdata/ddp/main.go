// Command ddp is the distributed test workload: synchronous data-parallel
// SGD for a linear regression, over plain TCP, from the launcher contract
// alone (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK). Each rank reads its
// shard from $SHARD or /inputs/shard.csv (x1,x2,x3,y per line) or, without one,
// makes a deterministic shard of its own; every step the gradients are
// all-reduced through rank 0 (sum, then the average back to all); rank 0
// writes the model to $OUTPUT_DIR/model.json (default /outputs). With the
// argument "tfcheck" it checks TF_CONFIG instead. PROBE lists HOST:PORTs
// it tries after meeting the others (what a rank must not reach). With a
// /checkpoints directory it resumes from /checkpoints/ckpt.json when
// there is one, and rank 0 writes it every CKPT_STEPS steps (default 10),
// under a dot name renamed into place.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

const dim = 3 // weights, plus a bias

var trueW = []float64{2, -3, 0.5, 1} // last: bias

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func atoi(k string, def int) int {
	n, err := strconv.Atoi(env(k, strconv.Itoa(def)))
	if err != nil {
		fail("%s=%q is not a number", k, os.Getenv(k))
	}
	return n
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "ddp: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tfcheck" {
		tfcheck()
		return
	}
	world, rank := atoi("WORLD_SIZE", 1), atoi("RANK", 0)
	steps, lr := atoi("STEPS", 300), 0.1
	delay := time.Duration(atoi("STEP_DELAY_MS", 0)) * time.Millisecond
	addr := net.JoinHostPort(env("MASTER_ADDR", "127.0.0.1"), env("MASTER_PORT", "29500"))
	xs, ys := shard(rank)
	fmt.Printf("rank %d of %d: %d samples, master %s\n", rank, world, len(ys), addr)
	probe()

	var peers []net.Conn // rank 0: the others, by rank-1; others: [master]
	if rank == 0 {
		peers = make([]net.Conn, world-1)
		ln, err := net.Listen("tcp", ":"+env("MASTER_PORT", "29500"))
		if err != nil {
			fail("listen: %v", err)
		}
		for got := 0; got < world-1; got++ {
			c, err := ln.Accept()
			if err != nil {
				fail("accept: %v", err)
			}
			var r uint32
			if err := binary.Read(c, binary.LittleEndian, &r); err != nil || r == 0 || int(r) >= world || peers[r-1] != nil {
				fail("bad hello from %s", c.RemoteAddr())
			}
			peers[r-1] = c
		}
		ln.Close()
	} else {
		var c net.Conn
		var err error
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fail("rank %d cannot reach the master %s: %v", rank, addr, err)
		}
		binary.Write(c, binary.LittleEndian, uint32(rank))
		peers = []net.Conn{c}
	}

	// PAD extra zero parameters ride along in every all-reduce, to size it
	// like a bigger model's gradients (for throughput figures).
	n := dim + 1 + atoi("PAD", 0)
	w := make([]float64, dim+1)
	first := resume(w)
	ar := newAllReduce(peers, rank, world, n)
	g := make([]float64, n)
	start := time.Now()
	for step := first; step < steps; step++ {
		copy(g, gradient(w, xs, ys))
		clear(g[dim+1:])
		if err := ar.run(g); err != nil {
			fail("step %d: %v", step, err)
		}
		for k := range w {
			w[k] -= lr * g[k]
		}
		if rank == 0 && (step+1)%atoi("CKPT_STEPS", 10) == 0 {
			save(step+1, w, loss(w, xs, ys))
		}
		time.Sleep(delay)
	}
	elapsed := time.Since(start).Seconds()
	out, _ := json.Marshal(map[string]any{"rank": rank, "weights": w, "steps": steps, "resumed_from": first, "world": world,
		"allreduce_per_s":     float64(steps) / elapsed,
		"allreduce_mib_per_s": float64(steps*n*8) / elapsed / (1 << 20)})
	fmt.Printf("final %s\n", out)
	if rank == 0 {
		dir := env("OUTPUT_DIR", "/outputs")
		if err := os.WriteFile(filepath.Join(dir, "model.json"), out, 0o644); err != nil {
			fail("write model: %v", err)
		}
	}
}

// shard reads $SHARD ("{rank}" in it becomes the rank; it must exist
// when set), else /inputs/shard.csv, else makes rank's own deterministic
// data.
func shard(rank int) ([][]float64, []float64) {
	var xs [][]float64
	var ys []float64
	path, must := os.Getenv("SHARD"), true
	if path == "" {
		path, must = "/inputs/shard.csv", false
	}
	path = strings.ReplaceAll(path, "{rank}", strconv.Itoa(rank))
	f, err := os.Open(path)
	if err != nil && must {
		fail("shard: %v", err)
	}
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Split(strings.TrimSpace(sc.Text()), ",")
			if len(parts) != dim+1 {
				continue
			}
			row := make([]float64, dim+1)
			for i, p := range parts {
				if row[i], err = strconv.ParseFloat(p, 64); err != nil {
					fail("shard %s: %v", path, err)
				}
			}
			xs, ys = append(xs, row[:dim]), append(ys, row[dim])
		}
		return xs, ys
	}
	rng := rand.New(rand.NewSource(int64(rank) + 1))
	for i := 0; i < 200; i++ {
		x := []float64{rng.Float64()*2 - 1, rng.Float64()*2 - 1, rng.Float64()*2 - 1}
		y := trueW[dim]
		for k := range x {
			y += trueW[k] * x[k]
		}
		xs, ys = append(xs, x), append(ys, y+rng.NormFloat64()*0.01)
	}
	return xs, ys
}

// gradient of the mean squared error over the shard.
func gradient(w []float64, xs [][]float64, ys []float64) []float64 {
	g := make([]float64, dim+1)
	for i, x := range xs {
		pred := w[dim]
		for k := range x {
			pred += w[k] * x[k]
		}
		e := pred - ys[i]
		for k := range x {
			g[k] += 2 * e * x[k]
		}
		g[dim] += 2 * e
	}
	for k := range g {
		g[k] /= math.Max(1, float64(len(xs)))
	}
	return g
}

// tfcheck: every worker in TF_CONFIG is reachable and every index unique.
func tfcheck() {
	var tf struct {
		Cluster struct{ Worker []string }
		Task    struct {
			Type  string
			Index int
		}
	}
	if err := json.Unmarshal([]byte(os.Getenv("TF_CONFIG")), &tf); err != nil {
		fail("TF_CONFIG: %v", err)
	}
	me := tf.Task.Index
	if tf.Task.Type != "worker" || me < 0 || me >= len(tf.Cluster.Worker) {
		fail("TF_CONFIG task %+v", tf.Task)
	}
	_, port, _ := net.SplitHostPort(tf.Cluster.Worker[me])
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fail("listen: %v", err)
	}
	seen := map[int]bool{me: true}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			binary.Write(c, binary.LittleEndian, uint32(me))
			c.Close()
		}
	}()
	for i, a := range tf.Cluster.Worker {
		if i == me {
			continue
		}
		var c net.Conn
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if c, err = net.DialTimeout("tcp", a, time.Second); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fail("worker %d at %s unreachable: %v", i, a, err)
		}
		var idx uint32
		if err := binary.Read(c, binary.LittleEndian, &idx); err != nil && err != io.EOF {
			fail("worker %d: %v", i, err)
		}
		c.Close()
		if int(idx) != i || seen[int(idx)] {
			fail("worker at %s says index %d, want %d (unique)", a, idx, i)
		}
		seen[int(idx)] = true
	}
	time.Sleep(time.Second) // let the others finish dialing us
	fmt.Printf("tfcheck ok: worker %d of %d reached every other\n", me, len(tf.Cluster.Worker))
}

// allReduce averages a vector over the ranks through rank 0, pipelined
// in chunks: the others send their whole vector while they read the
// averages back; rank 0 sums each chunk as it arrives from every rank and
// sends that chunk's average back at once, so both directions of every
// connection stay busy. Values travel as the host's float64 bytes
// (little-endian on every platform this runs on), without copying.
type allReduce struct {
	peers       []net.Conn // rank 0: the others, by rank-1; others: [master]
	rank, world int
	tmp         []float64
}

const chunk = 1 << 17 // float64s: 1 MiB

func newAllReduce(peers []net.Conn, rank, world, n int) *allReduce {
	return &allReduce{peers: peers, rank: rank, world: world, tmp: make([]float64, n)}
}

func bytesOf(v []float64) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 8*len(v))
}

func (a *allReduce) run(g []float64) error {
	if a.rank != 0 {
		sent := make(chan error, 1)
		go func() {
			_, err := a.peers[0].Write(bytesOf(g))
			sent <- err
		}()
		_, err := io.ReadFull(a.peers[0], bytesOf(a.tmp))
		if werr := <-sent; err == nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("master lost: %w", err)
		}
		copy(g, a.tmp)
		return nil
	}
	for lo := 0; lo < len(g); lo += chunk {
		hi := min(lo+chunk, len(g))
		part, buf := g[lo:hi], a.tmp[lo:hi]
		for i, c := range a.peers {
			if _, err := io.ReadFull(c, bytesOf(buf)); err != nil {
				return fmt.Errorf("rank %d lost: %w", i+1, err)
			}
			for k, x := range buf {
				part[k] += x
			}
		}
		for k := range part {
			part[k] /= float64(a.world)
		}
		for i, c := range a.peers {
			if _, err := c.Write(bytesOf(part)); err != nil {
				return fmt.Errorf("rank %d lost: %w", i+1, err)
			}
		}
	}
	return nil
}

// probe prints the rank's interfaces and tries each HOST:PORT in PROBE (a
// rank's view of what it can reach: the job network's test).
func probe() {
	if os.Getenv("PROBE") == "" {
		return
	}
	ifs, _ := net.Interfaces()
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	fmt.Printf("interfaces: %s\n", strings.Join(names, ","))
	for _, a := range strings.Split(os.Getenv("PROBE"), ",") {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err == nil {
			c.Close()
			fmt.Printf("probe %s: reached\n", a)
			continue
		}
		fmt.Printf("probe %s: not reached (%v)\n", a, err)
	}
}

// ckpt is what /checkpoints/ckpt.json holds.
type ckpt struct {
	Step    int       `json:"step"`
	Weights []float64 `json:"weights"`
	Loss    float64   `json:"loss"`
}

const ckptDir = "/checkpoints"

// resume loads the checkpoint into w, if there is one, and returns its
// step (0 without one).
func resume(w []float64) int {
	b, err := os.ReadFile(filepath.Join(ckptDir, "ckpt.json"))
	if err != nil {
		return 0
	}
	var c ckpt
	if err := json.Unmarshal(b, &c); err != nil || len(c.Weights) != len(w) {
		fail("checkpoint: %v", err)
	}
	copy(w, c.Weights)
	fmt.Printf("resumed from step %d, loss %g\n", c.Step, c.Loss)
	return c.Step
}

// save writes the checkpoint when /checkpoints exists: under a dot name
// (which the daemon leaves out), then renamed into place.
func save(step int, w []float64, l float64) {
	if st, err := os.Stat(ckptDir); err != nil || !st.IsDir() {
		return
	}
	b, _ := json.Marshal(ckpt{Step: step, Weights: w, Loss: l})
	tmp := filepath.Join(ckptDir, ".ckpt.json")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		fail("checkpoint: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(ckptDir, "ckpt.json")); err != nil {
		fail("checkpoint: %v", err)
	}
	fmt.Printf("step %d loss %g\n", step, l)
}

// loss is the mean squared error over the shard.
func loss(w []float64, xs [][]float64, ys []float64) float64 {
	var sum float64
	for i, x := range xs {
		pred := w[dim]
		for k := range x {
			pred += w[k] * x[k]
		}
		sum += (pred - ys[i]) * (pred - ys[i])
	}
	return sum / math.Max(1, float64(len(xs)))
}
