package gethtest

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
)

// A stopped geth refuses connections; restarted, it serves the same chain
// (contracts, balances, blocks) at the same URL, and blocks come again at
// the period asked for. It listens on loopback only.
func TestStopRestart(t *testing.T) {
	g := Start(t, Options{Period: 2 * time.Second, Accounts: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := g.Client()
	if g.Info.ChainID != 1337 || g.Info.Escrow == g.Info.Token || len(g.Info.Accounts) != 2 {
		t.Fatalf("info %+v", g.Info)
	}
	checkLoopbackOnly(t, g.cmd.Process.Pid)

	// Blocks every 2 s.
	h1, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WaitBlock(ctx, h1.Number.Uint64()+2); err != nil {
		t.Fatal(err)
	}
	h2, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if per := (h2.Time - h1.Time) / (h2.Number.Uint64() - h1.Number.Uint64()); per != 2 {
		t.Fatalf("blocks %d to %d took %d s each, want 2", h1.Number, h2.Number, per)
	}

	wallet := g.Wallet(t, 1)
	cl := g.NewClient(t, wallet, chain.Config{})
	tok, err := cl.Balance(ctx, g.Info.Token)
	if err != nil || tok.Cmp(chain.DevToken) != 0 {
		t.Fatalf("account 1 holds %v tokens (%v), want %s", tok, err, chain.DevToken)
	}

	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if g.Running() {
		t.Fatal("running after Stop")
	}
	if _, err := c.BlockNumber(ctx); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("a stopped geth answered: %v", err)
	}
	if err := g.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
	head, err := c.BlockNumber(ctx)
	if err != nil {
		t.Fatalf("the old client after the restart: %v", err)
	}
	if head < h2.Number.Uint64() {
		t.Fatalf("head %d after the restart, was %d", head, h2.Number)
	}
	if code, err := c.CodeAt(ctx, g.Info.Escrow, nil); err != nil || len(code) == 0 {
		t.Fatalf("escrow code after the restart: %d bytes, %v", len(code), err)
	}
	if tok, err := cl.Balance(ctx, g.Info.Token); err != nil || tok.Cmp(chain.DevToken) != 0 {
		t.Fatalf("account 1 holds %v tokens after the restart (%v)", tok, err)
	}
	if err := g.WaitBlock(ctx, head+1); err != nil {
		t.Fatalf("no block after the restart: %v", err)
	}
	checkLoopbackOnly(t, g.cmd.Process.Pid)
}

// checkLoopbackOnly fails if process pid has a listening TCP socket or a
// bound UDP socket on an address other than loopback.
func checkLoopbackOnly(t *testing.T, pid int) {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot read the process's sockets: %v", err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var listening []string
	for _, f := range []string{"tcp", "tcp6", "udp", "udp6"} {
		file, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			state := fields[3]
			if strings.HasPrefix(f, "tcp") && state != "0A" { // LISTEN
				continue
			}
			ip, port := procAddr(fields[1])
			listening = append(listening, fmt.Sprintf("%s %s", f, net.JoinHostPort(ip.String(), strconv.Itoa(port))))
			if !ip.IsLoopback() {
				t.Errorf("geth listens on %s %s", f, net.JoinHostPort(ip.String(), strconv.Itoa(port)))
			}
		}
		file.Close()
	}
	if len(listening) == 0 {
		t.Fatal("geth listens nowhere (not even its RPC)")
	}
	t.Logf("geth listens on %v", listening)
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90" (little-endian words).
func procAddr(s string) (net.IP, int) {
	hostHex, portHex, _ := strings.Cut(s, ":")
	b, _ := hex.DecodeString(hostHex)
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, _ := strconv.ParseInt(portHex, 16, 32)
	return net.IP(b), int(port)
}
