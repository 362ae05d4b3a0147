// Command jobprog is the test workload: a static binary in a FROM-scratch
// image. Its first argument picks what it does.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: jobprog echo|exit|sleep|write|read|serve|sandbox|env|meet ...")
		os.Exit(2)
	}
	a := os.Args[2:]
	switch os.Args[1] {
	case "echo":
		for _, s := range a {
			fmt.Println(s)
		}
		fmt.Fprintln(os.Stderr, "to stderr")
	case "exit":
		n, _ := strconv.Atoi(a[0])
		fmt.Println("exiting with", n)
		os.Exit(n)
	case "sleep":
		d, _ := time.ParseDuration(a[0])
		fmt.Println("sleeping", d)
		time.Sleep(d)
		fmt.Println("woke up")
	case "write": // write PATH CONTENT
		if err := os.WriteFile(a[0], []byte(a[1]), 0o644); err != nil {
			fmt.Println("write failed:", err)
			os.Exit(1)
		}
	case "read": // read PATH: print it, then try to write next to it
		b, err := os.ReadFile(a[0])
		if err != nil {
			fmt.Println("read failed:", err)
			os.Exit(1)
		}
		fmt.Printf("content: %s\n", b)
		if err := os.WriteFile(a[0], []byte("x"), 0o644); err != nil {
			fmt.Println("input write refused:", err)
		} else {
			fmt.Println("input write ALLOWED")
		}
	case "greet": // greet TEXT: print it, and write it to /outputs/hello.txt
		fmt.Println(a[0])
		fmt.Println("GPUs given:", os.Getenv("NVIDIA_VISIBLE_DEVICES"))
		if err := os.WriteFile("/outputs/hello.txt", []byte(a[0]), 0o644); err != nil {
			fmt.Println("write failed:", err)
			os.Exit(1)
		}
	case "env":
		fmt.Println("NVIDIA_VISIBLE_DEVICES=" + os.Getenv("NVIDIA_VISIBLE_DEVICES"))
	case "cat": // cat PATH...: print each file's content or why not
		for _, p := range a {
			if b, err := os.ReadFile(p); err != nil {
				fmt.Printf("%s: unreadable: %v\n", p, err)
			} else {
				fmt.Printf("%s: %s\n", p, b)
			}
		}
	case "getenv": // getenv KEY...: print KEY=VALUE for each
		for _, k := range a {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
	case "symlink": // symlink TARGET LINK
		if err := os.Symlink(a[0], a[1]); err != nil {
			fmt.Println("symlink failed:", err)
			os.Exit(1)
		}
	case "mkfifo": // mkfifo PATH
		if err := syscall.Mkfifo(a[0], 0o644); err != nil {
			fmt.Println("mkfifo failed:", err)
			os.Exit(1)
		}
	case "fill": // fill PATH MIB: write up to MIB MiB to PATH, 1 MiB at a time
		fill(a[0], a[1])
	case "sleepwrite": // sleepwrite DURATION PATH CONTENT
		d, _ := time.ParseDuration(a[0])
		time.Sleep(d)
		if err := os.WriteFile(a[1], []byte(a[2]), 0o644); err != nil {
			fmt.Println("write failed:", err)
			os.Exit(1)
		}
	case "serve": // serve ADDR [READY_AFTER]: a tiny HTTP service
		serve(a)
	case "sandbox":
		sandbox()
	case "forkchild":
		time.Sleep(30 * time.Second)
	case "meet": // meet [PROBE...]: a distributed rank meets rank 0 at MASTER_ADDR, then tries each HOST:PORT
		meet(a)
	case "noisy": // noisy PATH: write {"loss": 0.123456789DDDDDD}, DDDDDD from the job's ID (differs per run below 1e-9)
		noisy(a[0])
	case "near": // near EPS A B: exit 0 when the JSON files A and B differ by at most EPS in each number, 1 when not
		os.Exit(near(a[0], a[1], a[2]))
	}
}

func noisy(path string) {
	id := os.Getenv("AIXBLOCK_JOB_ID")
	// Six digits from the ID, so two runs' results differ (one digit
	// summed from it was the same for one pair of runs in ten).
	d := uint32(2166136261)
	for _, c := range []byte(id) {
		d = (d ^ uint32(c)) * 16777619
	}
	s := fmt.Sprintf(`{"loss": 0.123456789%06d}`, d%1000000)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		fmt.Println("write failed:", err)
		os.Exit(1)
	}
	fmt.Println(s)
}

// near compares two JSON documents: the same shape, and numbers within
// eps of each other; 2 when either does not read.
func near(eps, a, b string) int {
	e, err := strconv.ParseFloat(eps, 64)
	if err != nil {
		fmt.Println("eps:", err)
		return 2
	}
	var va, vb any
	for _, f := range []struct {
		path string
		v    *any
	}{{a, &va}, {b, &vb}} {
		raw, err := os.ReadFile(f.path)
		if err == nil {
			err = json.Unmarshal(raw, f.v)
		}
		if err != nil {
			fmt.Println("read:", err)
			return 2
		}
	}
	if !within(va, vb, e) {
		fmt.Println("different")
		return 1
	}
	fmt.Println("equivalent within", e)
	return 0
}

func within(a, b any, eps float64) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && math.Abs(x-y) <= eps
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !within(v, y[k], eps) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !within(x[i], y[i], eps) {
				return false
			}
		}
		return true
	}
	return a == b
}

// meet is a distributed rank's first step: rank 0 listens on MASTER_PORT
// and answers every other rank; the others dial MASTER_ADDR. Then it
// tries each probe (what a rank must not reach) and says what happened.
func meet(probes []string) {
	world, _ := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	rank, _ := strconv.Atoi(os.Getenv("RANK"))
	master := net.JoinHostPort(os.Getenv("MASTER_ADDR"), os.Getenv("MASTER_PORT"))
	ifs, _ := net.Interfaces()
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	fmt.Printf("rank %d of %d, interfaces %v\n", rank, world, names)
	if rank == 0 {
		ln, err := net.Listen("tcp", ":"+os.Getenv("MASTER_PORT"))
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		for n := 1; n < world; n++ {
			c, err := ln.Accept()
			if err != nil {
				fmt.Println("accept:", err)
				os.Exit(1)
			}
			buf := make([]byte, 64)
			k, _ := c.Read(buf)
			fmt.Printf("rank 0 met %s from %s\n", buf[:k], c.RemoteAddr())
			c.Write([]byte("rank 0"))
			c.Close()
		}
	} else {
		var c net.Conn
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if c, err = net.DialTimeout("tcp", master, time.Second); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Println("dial the master:", err)
			os.Exit(1)
		}
		fmt.Fprintf(c, "rank %d", rank)
		buf := make([]byte, 64)
		k, _ := c.Read(buf)
		fmt.Printf("rank %d met %s at %s\n", rank, buf[:k], master)
		c.Close()
	}
	for _, p := range probes {
		c, err := net.DialTimeout("tcp", p, time.Second)
		if err == nil {
			c.Close()
			fmt.Printf("probe %s: reached\n", p)
			continue
		}
		fmt.Printf("probe %s: not reached (%v)\n", p, err)
	}
}

// fill writes until it has written mib MiB or the disk refuses; it says
// how much went in and exits 1 on a refusal.
func fill(path, mib string) {
	n, _ := strconv.Atoi(mib)
	f, err := os.Create(path)
	if err != nil {
		fmt.Println("create failed:", err)
		os.Exit(1)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zeros: nothing may store it sparsely
	}
	var wrote int64
	for i := 0; i < n; i++ {
		w, err := f.Write(buf)
		wrote += int64(w)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			fmt.Printf("wrote %d bytes, then: %v\n", wrote, err)
			os.Exit(1)
		}
	}
	if err := f.Close(); err != nil {
		fmt.Printf("wrote %d bytes, then: %v\n", wrote, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %d bytes\n", wrote)
}

// sandbox tries what a job must not be able to do and reports each.
func sandbox() {
	report := func(what string, err error) {
		if err != nil {
			fmt.Printf("blocked %s: %v\n", what, err)
		} else {
			fmt.Printf("ALLOWED %s\n", what)
		}
	}
	report("mount", syscall.Mount("tmpfs", "/mnt", "tmpfs", 0, ""))
	report("write /", os.WriteFile("/owned", []byte("x"), 0o644))
	_, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
	report("raw socket", err)
	_, err = os.Stat("/var/run/docker.sock")
	report("docker socket", err)
	// No network: nothing but the loopback interface (the check dials no
	// address).
	ifs, err := net.Interfaces()
	if err == nil {
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 {
				err = nil
				break
			}
			err = fmt.Errorf("only %s", i.Name)
		}
		if len(ifs) == 0 {
			err = fmt.Errorf("no interfaces")
		}
	}
	report("network", err)
	// Fork bomb: keep starting children until the pids limit stops us.
	var procs []*exec.Cmd
	var ferr error
	for i := 0; i < 2000; i++ {
		cmd := exec.Command("/jobprog", "forkchild")
		if ferr = cmd.Start(); ferr != nil {
			break
		}
		procs = append(procs, cmd)
	}
	report(fmt.Sprintf("fork bomb (%d children started)", len(procs)), ferr)
	for _, p := range procs {
		p.Process.Kill()
	}
}

// serve answers HTTP on addr: /healthz is 503 until readyAfter has passed,
// /echo returns the request body, /crash answers and exits 2, anything
// else says hello.
func serve(a []string) {
	start := time.Now()
	var readyAfter time.Duration
	if len(a) > 1 {
		readyAfter, _ = time.ParseDuration(a[1])
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start) < readyAfter {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read all first: an HTTP/1 server stops reading a body once the
		// answer has begun.
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "crashing")
		w.(http.Flusher).Flush()
		fmt.Println("crash requested")
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(2) }()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello from jobprog") })
	fmt.Println("serving on", a[0])
	if err := http.ListenAndServe(a[0], mux); err != nil {
		fmt.Println("serve:", err)
		os.Exit(1)
	}
}
