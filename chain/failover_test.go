package chain

import (
	"net"
	"testing"
	"time"
)

// One RPC URL was all a daemon took, and its outage was the daemon's. A
// Failover goes on to the next endpoint when one cannot be reached, says
// so in Health, and an endpoint's answer (a revert) is not a failover.
func TestFailover(t *testing.T) {
	dev, err := StartDevChain(t.Context(), DevChainConfig{HTTP: "127.0.0.1:0", IdleBlock: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	// A port with nothing listening: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	f, err := DialFailover([]string{dead, dev.Info.RPCURL}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := f.ChainID(t.Context())
	if err != nil {
		t.Fatalf("with one endpoint down and one up: %v", err)
	}
	if id.Uint64() != dev.Info.ChainID {
		t.Fatalf("chain id %s, want %d", id, dev.Info.ChainID)
	}
	if ok, _, url, _ := f.Health(); !ok || url != dev.Info.RPCURL {
		t.Fatalf("health after failing over: ok=%v on %s", ok, url)
	}

	only, err := DialFailover([]string{dead}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	if _, err := only.BlockNumber(t.Context()); err == nil {
		t.Fatal("a read with every endpoint down succeeded")
	}
	if ok, since, _, lastErr := only.Health(); ok || since.IsZero() || lastErr == nil {
		t.Fatalf("health with every endpoint down: ok=%v since=%v err=%v", ok, since, lastErr)
	}
}
