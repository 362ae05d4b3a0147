package chain

import (
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
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

// A provider relies only on deposits at its confirmation depth: a deposit
// one block old is not there for a client that wants three.
func TestConfirmedChannel(t *testing.T) {
	e := newSim(t)
	deep := e.client(e.payeeK, Config{Escrow: e.escrow, Token: e.token, Poll: time.Millisecond, Confirmations: 3}, nil)
	payee := crypto.PubkeyToAddress(e.payeeK.PublicKey)
	if _, err := e.payer.Deposit(t.Context(), payee, e.token, big.NewInt(500)); err != nil {
		t.Fatal(err)
	}
	read := func() *big.Int {
		t.Helper()
		ch, err := deep.ConfirmedChannel(t.Context(), e.payer.Address(), payee, e.token)
		if err != nil {
			t.Fatal(err)
		}
		return ch.Deposited.Big()
	}
	if got := read(); got.Sign() != 0 {
		t.Fatalf("a deposit in the newest block, read at 3 confirmations: %s", got)
	}
	e.sim.Commit()
	if got := read(); got.Sign() != 0 {
		t.Fatalf("at 2 confirmations: %s", got)
	}
	e.sim.Commit()
	if got := read(); got.Cmp(big.NewInt(500)) != 0 {
		t.Fatalf("at 3 confirmations: %s, want the 500 deposited", got)
	}
}
