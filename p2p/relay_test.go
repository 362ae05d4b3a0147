package p2p_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
)

// The job relay from the side of peers it does not serve. Every node here
// is on loopback; the relay's clients have libp2p's relay transport (the
// test nodes' NoNAT leaves it out), as a node behind NAT has.

const relayNet = "relaytest"

const bulkProto = "/relaytest/bulk/1"

// relayClient is a node of the network whose host can reserve a slot on
// a relay and dial through one. It listens on loopback but, as a node
// behind NAT, announces no address of its own (only announce, if given),
// so its peers reach it through the relay or not at all. Its handler for
// bulkProto counts what it reads into got and answers with one byte.
func relayClient(t *testing.T, got *atomic.Int64, announce ...ma.Multiaddr) *p2p.Node {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }),
		libp2p.EnableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cfg := p2ptest.Config(relayNet)
	cfg.Host = h
	nd := p2ptest.New(t, cfg)
	h.SetStreamHandler(bulkProto, func(s network.Stream) {
		var w io.Writer = io.Discard
		if got != nil {
			w = counter{got}
		}
		io.Copy(w, s)
		s.Write([]byte{1})
		s.Close()
	})
	return nd
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return len(b), nil
}

func jobRelay(t *testing.T) *p2p.Node {
	t.Helper()
	cfg := p2ptest.Config(relayNet)
	cfg.JobRelay = true
	return p2ptest.New(t, cfg)
}

// reserve gives b a slot on relay.
func reserve(t *testing.T, b, relay *p2p.Node) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Reserve(ctx, b.Host, p2ptest.AddrInfo(relay))
	return err
}

// dialVia connects a to b through relay's circuit, and nothing else. A
// refused dial is not held against the next one (the swarm's backoff).
// A connection a already has to b makes it succeed: callers wait for the
// last one to close first.
func dialVia(a, b, relay *p2p.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if sw, ok := a.Host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(b.Host.ID())
	}
	a.Host.Peerstore().ClearAddrs(b.Host.ID())
	circuit := relay.Host.Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + relay.Host.ID().String() + "/p2p-circuit"))
	return a.Host.Connect(network.WithAllowLimitedConn(ctx, "test"), peer.AddrInfo{ID: b.Host.ID(), Addrs: []ma.Multiaddr{circuit}})
}

// bulk sends size bytes from a to b over a stream (on whatever connection
// a has to b, relayed included) and reports what went through.
func bulk(a, b *p2p.Node, size int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	s, err := a.Host.NewStream(network.WithAllowLimitedConn(ctx, "test"), b.Host.ID(), bulkProto)
	if err != nil {
		return 0, err
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 1<<20)
	for sent := 0; sent < size; sent += len(buf) {
		if _, err := s.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	var ack [1]byte
	if _, err := io.ReadFull(s, ack[:]); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func relayed(a, b *p2p.Node) bool {
	for _, c := range a.Host.Network().ConnsToPeer(b.Host.ID()) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT); err == nil {
			return true
		}
	}
	return false
}

// Two nodes of the network that share no job on the relay (strangers to
// it) get no circuit through it, whatever they would carry.
func TestJobRelayRefusesStrangers(t *testing.T) {
	relay := jobRelay(t)
	a, b := relayClient(t, nil), relayClient(t, nil)
	meet(t, relay, a, b)
	err := dialVia(a, b, relay)
	if err == nil {
		took, err := bulk(a, b, 64<<20)
		if err == nil {
			t.Fatalf("two peers in no job moved 64 MiB through the job relay in %s (relayed: %v)", took.Round(time.Millisecond), relayed(a, b))
		}
		t.Fatalf("two peers in no job got a circuit through the job relay (the bulk copy: %v)", err)
	}
	t.Logf("refused: %v", err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the refusal took the whole dial timeout: %v", err)
	}
}

// meet connects a and b to the relay (not to each other) and gives b a
// slot on it.
func meet(t *testing.T, relay, a, b *p2p.Node) {
	t.Helper()
	p2ptest.Connect(t, a, relay)
	p2ptest.Connect(t, b, relay)
	if len(a.Host.Network().ConnsToPeer(b.Host.ID())) > 0 {
		t.Fatal("a and b met directly")
	}
	if err := reserve(t, b, relay); err != nil {
		t.Fatalf("b, a node of the network, got no slot on the job relay: %v", err)
	}
}

func ids(nodes ...*p2p.Node) []peer.ID {
	var out []peer.ID
	for _, n := range nodes {
		out = append(out, n.Host.ID())
	}
	return out
}

// The peers of a job network the relay serves get a limited circuit; what
// it carries for them stops at their byte budget, and a spent budget gets
// no new circuit.
func TestJobRelayServesJobWithinBudget(t *testing.T) {
	relay := jobRelay(t)
	var got atomic.Int64
	a, b := relayClient(t, nil), relayClient(t, &got)
	meet(t, relay, a, b)
	const budget = 8 << 20
	if err := relay.AllowRelay("job-1", ids(a, b), p2p.RelayBudget{Bytes: budget}); err != nil {
		t.Fatal(err)
	}
	if err := dialVia(a, b, relay); err != nil {
		t.Fatalf("a peer of a served job network got no circuit: %v", err)
	}
	if !relayed(a, b) {
		t.Fatal("a and b are not on a relayed connection")
	}
	for _, c := range a.Host.Network().ConnsToPeer(b.Host.ID()) {
		if !c.Stat().Limited {
			t.Errorf("the circuit is not a limited connection: protocols that do not opt in would use it")
		}
	}
	if _, err := bulk(a, b, 1<<20); err != nil {
		t.Fatalf("1 MiB within the budget: %v", err)
	}
	if _, err := bulk(a, b, 32<<20); err == nil {
		t.Fatalf("32 MiB went through on a budget of %d MiB", budget>>20)
	} else {
		t.Logf("32 MiB on a budget of %d MiB: %v", budget>>20, err)
	}
	p2ptest.WaitFor(t, 30*time.Second, func() bool { return !relayed(a, b) }, "the spent circuit stayed open")
	if n := got.Load(); n > budget {
		t.Fatalf("%d bytes arrived through the relay on a budget of %d", n, budget)
	} else {
		t.Logf("%.1f MiB arrived on a budget of %d MiB", float64(n)/(1<<20), budget>>20)
	}
	if err := dialVia(a, b, relay); err == nil {
		t.Fatal("a peer with its budget spent got a new circuit")
	}
}

// A job network's circuits end when the daemon says the job ended, or
// when its grant's duration is over; two peers that each have a job here,
// but not the same one, get no circuit.
func TestJobRelayGrantEnds(t *testing.T) {
	relay := jobRelay(t)
	a, b, c := relayClient(t, nil), relayClient(t, nil), relayClient(t, nil)
	meet(t, relay, a, b)

	relay.AllowRelay("job-a", ids(a, c), p2p.RelayBudget{})
	relay.AllowRelay("job-b", ids(b, c), p2p.RelayBudget{})
	if err := dialVia(a, b, relay); err == nil {
		t.Fatal("two peers of different job networks got a circuit")
	}

	relay.AllowRelay("job-1", ids(a, b), p2p.RelayBudget{})
	if err := dialVia(a, b, relay); err != nil {
		t.Fatal(err)
	}
	relay.DisallowRelay("job-1")
	p2ptest.WaitFor(t, 30*time.Second, func() bool { return !relayed(a, b) }, "the circuit outlived its job network")
	if err := dialVia(a, b, relay); err == nil {
		t.Fatal("a circuit after the job network ended")
	}

	relay.AllowRelay("job-2", ids(a, b), p2p.RelayBudget{})
	if err := dialVia(a, b, relay); err != nil {
		t.Fatal(err)
	}
	// The same job again, with a grant that is over at once.
	relay.AllowRelay("job-2", ids(a, b), p2p.RelayBudget{Duration: time.Nanosecond})
	p2ptest.WaitFor(t, 30*time.Second, func() bool { return !relayed(a, b) }, "the circuit outlived its grant's duration")
	if err := dialVia(a, b, relay); err == nil {
		t.Fatal("a circuit after the grant's duration")
	}
}

// A live job network's grant cannot be taken over by another set of
// peers: a member dropped from an elastic gang, showing the old deals
// under the new generation's ID, would cut the new members off.
func TestJobRelayGrantKeepsItsPeers(t *testing.T) {
	relay := jobRelay(t)
	a, b, c := relayClient(t, nil), relayClient(t, nil), relayClient(t, nil)
	meet(t, relay, a, b)
	if err := relay.AllowRelay("job-1", ids(a, b), p2p.RelayBudget{}); err != nil {
		t.Fatal(err)
	}
	if err := dialVia(a, b, relay); err != nil {
		t.Fatal(err)
	}
	if err := relay.AllowRelay("job-1", ids(a, c), p2p.RelayBudget{}); err == nil || !strings.Contains(err.Error(), "other peers") {
		t.Fatalf("another set of peers took over a live grant: %v", err)
	}
	if !relayed(a, b) {
		t.Fatal("the members' circuit was cut by a refused grant")
	}
	if err := relay.AllowRelay("job-1", ids(b, a), p2p.RelayBudget{}); err != nil {
		t.Fatalf("the same members again, in another order: %v", err)
	}
}

// A member asks the relay to serve its job network with a proof; the
// relay's verifier decides. Without a verifier, or with a proof it does
// not take, nothing is served.
func TestJobRelayRequest(t *testing.T) {
	relay := jobRelay(t)
	circuit := ma.StringCast("/ip4/127.0.0.1/tcp/1/p2p/" + relay.Host.ID().String() + "/p2p-circuit")
	a := relayClient(t, nil)
	b := relayClient(t, nil, circuit)
	meet(t, relay, a, b)
	if got := b.ReservedRelays(); len(got) != 1 || got[0] != relay.Host.ID() {
		t.Fatalf("b's reserved relays: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.RequestRelay(ctx, relay.Host.ID(), []byte("the deals of job-1")); err == nil {
		t.Fatal("a relay with no verifier granted a request")
	}
	relay.SetRelayVerifier(func(ctx context.Context, from peer.ID, proof []byte) (string, []peer.ID, p2p.RelayBudget, error) {
		switch string(proof) {
		case "the deals of job-1":
			return "job-1", ids(a, b), p2p.RelayBudget{}, nil
		case "someone else's job":
			return "job-2", ids(a, relay), p2p.RelayBudget{}, nil
		}
		return "", nil, p2p.RelayBudget{}, errors.New("no such deals")
	})
	for _, proof := range []string{"forged deals", "someone else's job"} {
		if _, err := b.RequestRelay(ctx, relay.Host.ID(), []byte(proof)); err == nil {
			t.Fatalf("%q was granted", proof)
		} else if re := (*p2p.RemoteError)(nil); !errors.As(err, &re) {
			t.Fatalf("%q: %v, want the relay's refusal", proof, err)
		}
	}
	if err := dialVia(a, b, relay); err == nil {
		t.Fatal("a circuit for a refused request")
	}
	id, err := b.RequestRelay(ctx, relay.Host.ID(), []byte("the deals of job-1"))
	if err != nil || id != "job-1" {
		t.Fatalf("request: %q, %v", id, err)
	}
	if err := dialVia(a, b, relay); err != nil {
		t.Fatalf("no circuit for a granted job network: %v", err)
	}
}

// A host of no network of ours gets no slot.
func TestJobRelayRefusesForeignReservation(t *testing.T) {
	relay := jobRelay(t)
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.EnableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, p2ptest.AddrInfo(relay)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, h, p2ptest.AddrInfo(relay)); err == nil {
		t.Fatal("a host of no network of ours got a slot on the job relay")
	}
}
