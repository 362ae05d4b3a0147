package p2p_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestFiveHostsOnLoopback(t *testing.T) {
	nodes := p2ptest.Loopback(t, 5, quietConfig("alpha"))
	t.Run("every DHT reaches the others", func(t *testing.T) { testDHTReach(t, nodes) })
	t.Run("a record put on one is read from another", func(t *testing.T) { testRecordPutGet(t, nodes) })
	t.Run("records failing the validator are refused", func(t *testing.T) { testRecordValidator(t, nodes) })
	t.Run("a gossip message reaches all", func(t *testing.T) {
		topics, subs := joinAll(t, nodes, "hello/1")
		res := gossipRounds(t, nodes, topics, subs, 3, 10*time.Second)
		if want := 3 * (len(nodes) - 1); len(res) != want {
			t.Fatalf("%d deliveries, want %d", len(res), want)
		}
	})
	t.Run("a topic validator stops bad messages", func(t *testing.T) { testTopicValidator(t, nodes) })
	t.Run("a host of another network never joins", func(t *testing.T) { testIsolation(t, nodes) })
}

func testDHTReach(t *testing.T, nodes []*p2p.Node) {
	for i, n := range nodes {
		p2ptest.WaitFor(t, 20*time.Second, func() bool { return n.DHT.RoutingTable().Size() == len(nodes)-1 },
			"node %d routing table never held the %d others", i, len(nodes)-1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A lookup walks the DHT rather than reading the local table.
	last := nodes[len(nodes)-1]
	for _, target := range nodes[:len(nodes)-1] {
		ai, err := last.DHT.FindPeer(ctx, target.Host.ID())
		if err != nil || len(ai.Addrs) == 0 {
			t.Fatalf("FindPeer %s: %v (%d addrs)", target.Host.ID(), err, len(ai.Addrs))
		}
	}
}

func testRecordPutGet(t *testing.T, nodes []*p2p.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[1].DHT.PutValue(ctx, "/test/greeting", []byte("ok:hello")); err != nil {
		t.Fatalf("put: %v", err)
	}
	got, err := nodes[4].DHT.GetValue(ctx, "/test/greeting")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if string(got) != "ok:hello" {
		t.Fatalf("got %q, want ok:hello", got)
	}
}

func testRecordValidator(t *testing.T, nodes []*p2p.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, tc := range map[string]struct {
		key   string
		value []byte
		want  string
	}{
		"bad value":         {"/test/bad", []byte("nope"), "must start with ok:"},
		"oversized":         {"/test/big", []byte("ok:" + strings.Repeat("x", 2000)), "over the 1024 limit"},
		"unknown namespace": {"/other/x", []byte("ok:x"), "invalid record keytype"},
	} {
		err := nodes[0].DHT.PutValue(ctx, tc.key, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", name, err, tc.want)
		}
	}
}

func testTopicValidator(t *testing.T, nodes []*p2p.Node) {
	onlyGood := func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if string(msg.Data) == "good" {
			return pubsub.ValidationAccept
		}
		return pubsub.ValidationReject
	}
	// nodes[0] runs no validator, so it publishes what the others refuse.
	pub, err := nodes[0].Join("validated/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var subs []*pubsub.Subscription
	for _, n := range nodes[1:] {
		_, sub := subscribe(t, n, "validated/1", onlyGood)
		subs = append(subs, sub)
	}
	p2ptest.WaitFor(t, 10*time.Second, func() bool { return len(pub.ListPeers()) == len(nodes)-1 }, "publisher never saw the %d subscribers", len(nodes)-1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range []string{"bad", "good"} {
		if err := pub.Publish(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for i, sub := range subs {
		msg, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		if string(msg.Data) != "good" {
			t.Fatalf("node %d received %q past its validator", i+1, msg.Data)
		}
	}
}

// Every layer of the isolation is checked on its own, with Errorf where a
// later check still means something: a leak at one layer must not hide a
// leak at another.
func testIsolation(t *testing.T, nodes []*p2p.Node) {
	// alpha's own subscriber to the topic, so that beta's silence is
	// checked after a delivery that proves the message went out.
	alphaPub, err := nodes[0].Join("isolation/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, alphaSub := subscribe(t, nodes[1], "isolation/1", nil)
	other, topic, sub := betaOnAlphasTopic(t, nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The transport connects (same libp2p), identify shows no alpha
	// protocol, and both sides hang up: bootstrap says why.
	err = other.Bootstrap(ctx)
	if err == nil || !strings.Contains(err.Error(), `not a node of network "beta"`) {
		t.Errorf("bootstrap to another network: %v, want a not-a-node-of-network error", err)
	}
	// Beta tries again through the DHT's own connect: still cut off.
	_ = other.Host.Connect(ctx, p2ptest.AddrInfo(nodes[0]))
	_ = other.RefreshRoutingTable(ctx)
	p2ptest.WaitFor(t, 10*time.Second, func() bool { return slices.Contains(alphaPub.ListPeers(), nodes[1].Host.ID()) },
		"alpha's publisher never saw alpha's subscriber")
	if err := alphaPub.Publish(ctx, []byte("alpha only")); err != nil {
		t.Fatal(err)
	}
	if msg, err := alphaSub.Next(ctx); err != nil || string(msg.Data) != "alpha only" {
		t.Fatalf("alpha's own subscriber: %v %v", msg, err)
	}
	// Published to every subscribed peer at once (flood publish) and
	// gossiped again every 200 ms heartbeat: a second is five rounds.
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	defer rcancel()
	if msg, err := sub.Next(rctx); err == nil {
		t.Errorf("beta received %q from alpha", msg.Data)
	}
	if got := topic.ListPeers(); len(got) != 0 {
		t.Errorf("beta sees %d gossip peers on alpha's topic", len(got))
	}
	checkApart(t, rctx, nodes, other)
}

// betaOnAlphasTopic starts a node of network beta, bootstrapping from
// alpha, subscribed to alpha's exact topic name (the name alpha publishes
// on) before it dials: were the networks to meet, its subscription would
// reach alpha with the first connection.
func betaOnAlphasTopic(t *testing.T, alpha *p2p.Node) (*p2p.Node, *pubsub.Topic, *pubsub.Subscription) {
	cfg := quietConfig("beta")
	cfg.Bootstrap = []peer.AddrInfo{p2ptest.AddrInfo(alpha)}
	other := p2ptest.New(t, cfg)
	topic, err := other.PubSub.Join(p2p.TopicName("alpha", "isolation/1"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Cancel)
	return other, topic, sub
}

// checkApart checks that beta (other) and the alpha nodes share no DHT
// routing, no record, no membership and, in the end, no connection.
func checkApart(t *testing.T, ctx context.Context, nodes []*p2p.Node, other *p2p.Node) {
	if n := other.DHT.RoutingTable().Size(); n != 0 {
		t.Errorf("beta's routing table has %d peers, want 0", n)
	}
	for i, n := range nodes {
		if n.DHT.RoutingTable().Find(other.Host.ID()) != "" {
			t.Errorf("alpha node %d has beta in its routing table", i)
		}
	}
	if _, err := other.DHT.GetValue(ctx, "/test/greeting"); err == nil {
		t.Error("beta read alpha's record")
	}
	if nodes[0].IsMember(other.Host.ID()) || other.IsMember(nodes[0].Host.ID()) {
		t.Error("a node of another network counts as a member")
	}
	if !nodes[0].IsMember(nodes[1].Host.ID()) {
		t.Error("a node of the same network is not a member")
	}
	p2ptest.WaitFor(t, 5*time.Second, func() bool {
		return nodes[0].Host.Network().Connectedness(other.Host.ID()) != network.Connected &&
			other.Host.Network().Connectedness(nodes[0].Host.ID()) != network.Connected
	}, "alpha and beta still connected")
}

func TestNetworkNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"mainnet": true, "test-1": true, "a": true,
		"": false, "Main": false, "-x": false, "a/b": false, "has space": false,
		strings.Repeat("a", 33): false,
	} {
		err := p2p.ValidateNetwork(name)
		if (err == nil) != ok {
			t.Errorf("p2p.ValidateNetwork(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "network name") {
			t.Errorf("error %q does not name the field", err)
		}
	}
	if _, err := p2p.New(context.Background(), p2p.Config{Network: "Bad/Name"}); err == nil {
		t.Fatal("New accepted a bad network name")
	}
	if got := p2p.ProtocolID("testnet", "bid/1"); got != "/aixblock/testnet/bid/1" {
		t.Fatalf("ProtocolID = %s", got)
	}
}

func TestRequestResponse(t *testing.T) {
	nodes := p2ptest.Loopback(t, 2, quietConfig("rr"))
	server, client := nodes[0], nodes[1]
	echo := server.ProtocolID("echo/1")
	p2p.Handle(server.Host, echo, p2p.StreamLimits{MaxRequest: 64, MaxResponse: 128}, nil,
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			switch string(req) {
			case "fail":
				return nil, errors.New("no such thing")
			case "slow":
				<-ctx.Done()
				return nil, ctx.Err()
			case "big":
				return []byte(strings.Repeat("x", 1000)), nil
			}
			return append([]byte(from.String()+":"), req...), nil
		})
	ctx := context.Background()
	for name, tc := range map[string]struct {
		req     string
		lim     p2p.StreamLimits
		want    string
		wantErr string
	}{
		"echo":             {req: "hi", want: client.Host.ID().String() + ":hi"},
		"handler error":    {req: "fail", wantErr: "remote: no such thing"},
		"request too big":  {req: strings.Repeat("y", 100), lim: p2p.StreamLimits{MaxRequest: 1000}, wantErr: "remote: frame of 100 bytes over the 64 limit"},
		"local size check": {req: strings.Repeat("y", 100), lim: p2p.StreamLimits{MaxRequest: 10}, wantErr: "too large"},
		"response too big": {req: "big", lim: p2p.StreamLimits{MaxResponse: 100}, wantErr: "over the 100 limit"},
		"deadline":         {req: "slow", lim: p2p.StreamLimits{Timeout: 300 * time.Millisecond}, wantErr: "deadline"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := p2p.Request(ctx, client.Host, server.Host.ID(), echo, []byte(tc.req), tc.lim)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMocknet200Peers(t *testing.T) {
	if testing.Short() {
		t.Skip("200-peer mocknet in -short mode")
	}
	nodes := p2ptest.NewMocknet(t, 200, 4, 0, quietConfig("mock")).Nodes
	p2ptest.Bootstrap(t, nodes)

	topics, subs := joinAll(t, nodes, "scale/1")
	res := gossipRounds(t, nodes, topics, subs, 2, 30*time.Second)
	if want := 2 * (len(nodes) - 1); len(res) != want {
		t.Fatalf("%d deliveries, want %d", len(res), want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := nodes[7].DHT.PutValue(ctx, "/test/scale", []byte("ok:200")); err != nil {
		t.Fatalf("put: %v", err)
	}
	for _, i := range []int{0, 50, 123, 199} {
		got, err := nodes[i].DHT.GetValue(ctx, "/test/scale")
		if err != nil || string(got) != "ok:200" {
			t.Fatalf("node %d get: %q, %v", i, got, err)
		}
		target := nodes[(i+101)%len(nodes)].Host.ID()
		if _, err := nodes[i].DHT.FindPeer(ctx, target); err != nil {
			t.Fatalf("node %d FindPeer: %v", i, err)
		}
	}
}

// Each stream of a Handle protocol is in the protocol's resource-manager
// service, and the requests being served hold their bytes there: one that
// finds no room under the service's memory limit is answered with an
// error, and its room comes back when a request is answered.
func TestServiceMemoryLimit(t *testing.T) {
	nodes := p2ptest.Loopback(t, 2, quietConfig("svc"))
	server, client := nodes[0], nodes[1]
	id := server.ProtocolID("hold/1")
	held, release := make(chan struct{}), make(chan struct{})
	p2p.Handle(server.Host, id, p2p.StreamLimits{MaxRequest: 4096, Memory: 1000}, nil,
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			if strings.HasPrefix(string(req), "hold") {
				held <- struct{}{}
				<-release
			}
			return []byte("ok"), nil
		})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	request := func(req string) error {
		_, err := p2p.Request(ctx, client.Host, server.Host.ID(), id, []byte(req), p2p.StreamLimits{MaxRequest: 4096})
		return err
	}
	first := make(chan error, 1)
	go func() { first <- request("hold" + strings.Repeat("x", 596)) }()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the first request never reached its handler")
	}
	if st := p2ptest.ServiceStat(t, server.Host, id); st.NumStreamsInbound != 1 || st.Memory != 600 {
		t.Fatalf("service while a 600-byte request is served: %+v, want 1 inbound stream and 600 bytes", st)
	}
	if err := request(strings.Repeat("y", 600)); err == nil || !strings.Contains(err.Error(), "resource limit exceeded") {
		t.Fatalf("a second 600-byte request under a 1000-byte limit: %v, want the limit's error", err)
	}
	if err := request(strings.Repeat("y", 300)); err != nil {
		t.Fatalf("a 300-byte request beside the 600: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the held request: %v", err)
	}
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		st := p2ptest.ServiceStat(t, server.Host, id)
		return st.NumStreamsInbound == 0 && st.Memory == 0
	}, "the service still holds the answered requests")
	if err := request(strings.Repeat("y", 600)); err != nil {
		t.Fatalf("a 600-byte request once the first was answered: %v", err)
	}
}
