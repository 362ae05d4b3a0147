package overlay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// newNetns makes a network namespace with loopback up, removed at cleanup.
func newNetns(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		p2ptest.SkipNetns(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		p2ptest.SkipNetns(t, "no ip command (iproute2)")
	}
	var b [4]byte
	rand.Read(b[:])
	name := "aixov-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return name
}

// listenIn listens on addr inside the namespace at path; the listener
// stays in the namespace.
func listenIn(t testing.TB, path, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(t, path, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ln
}

func answer(ln net.Listener, text string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, text)
		c.Close()
	}
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The dialer reaches the namespace's own loopback, not the host's, on the
// same port number; by path and by the PID of a process in it.
func TestDialNetns(t *testing.T) {
	name := newNetns(t)
	path := "/run/netns/" + name
	host, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	port := host.Addr().(*net.TCPAddr).Port
	go answer(host, "the host's loopback")
	inside := listenIn(t, path, host.Addr().String())
	defer inside.Close()
	go answer(inside, "inside the namespace")

	c, err := DialNetns(context.Background(), path, port)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "inside the namespace" {
		t.Fatalf("DialNetns reached %q", got)
	}
	// The dialing thread went back: a plain dial reaches the host.
	c, err = net.Dial("tcp4", host.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "the host's loopback" {
		t.Fatalf("plain dial reached %q", got)
	}

	sleeper := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	// ip netns exec enters the namespace before it execs sleep: wait.
	want, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, 5*time.Second, func() bool {
		got, err := os.Stat("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/ns/net")
		return err == nil && os.SameFile(got, want) && strings.Contains(cmdline(sleeper.Process.Pid), "sleep")
	}, "the helper process never entered the namespace")
	c, err = DialPID(context.Background(), sleeper.Process.Pid, port)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "inside the namespace" {
		t.Fatalf("DialPID reached %q", got)
	}
	// A port nothing listens on in the namespace is refused, even though
	// the host has one open under another number.
	if c, err := DialNetns(context.Background(), path, port+1); err == nil {
		c.Close()
		t.Fatal("dialed a port nobody listens on in the namespace")
	}
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return string(b)
}
