package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// A service job through the market on a testnet: `job run -d -p` serves
// HTTP on the requester's machine from a container on a provider that
// publishes nothing; many requests at once work; the job is paid while it
// runs; a peer that is not the job's requester cannot open its port; and
// job cancel closes the local port.
func TestServiceThroughTheMarket(t *testing.T) {
	if testing.Short() {
		t.Skip("a testnet and a market service")
	}
	jobDocker(t)
	dir := testnetUp(t, "--nodes", "2")
	req := filepath.Join(dir, "node0")
	started := runService(t, req, "--ready-http", "/healthz", "--gpus", "1", "--max-price", "5", jobImage, "--", "serve", ":8080")
	waitServiceReady(t, req, started.ID)
	serveManyAtOnce(t, "http://"+started.Local)
	prov, cost := serviceProvider(t, dir, req, started.ID)
	strangerRefused(t, prov, started.ID)
	if cost.Cost == "" || cost.Cost == "0" {
		t.Fatalf("a running service costs nothing: %+v", cost)
	}
	cancelService(t, req, started)
}

// waitServiceReady waits until the provider's check reached the port
// inside the container.
func waitServiceReady(t *testing.T, req, id string) {
	t.Helper()
	var ready struct {
		State string `json:"state"`
		Ready bool   `json:"ready"`
	}
	p2ptest.WaitFor(t, 60*time.Second, func() bool {
		runJSON(t, req, &ready, "job", "status", id)
		if terminal(ready.State) {
			t.Fatalf("service ended before it was ready: %+v", ready)
		}
		return ready.State == "running" && ready.Ready
	}, "service never ready: %+v", &ready)
}

// serveManyAtOnce: the service answers on base, and 32 requests at once
// each get their own answer.
func serveManyAtOnce(t *testing.T, base string) {
	t.Helper()
	get := func(path string) (string, error) {
		c := &http.Client{Timeout: 10 * time.Second}
		r, err := c.Get(base + path)
		if err != nil {
			return "", err
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		return string(b), err
	}
	if body, err := get("/"); err != nil || !strings.Contains(body, "hello from jobprog") {
		t.Fatalf("GET %s/: %q, %v", base, body, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			want := fmt.Sprintf("request %d %s", i, strings.Repeat("x", i*1000))
			r, err := http.Post(base+"/echo", "text/plain", strings.NewReader(want))
			if err != nil {
				errs <- err
				return
			}
			defer r.Body.Close()
			if b, _ := io.ReadAll(r.Body); string(b) != want {
				errs <- fmt.Errorf("echo %d: %d bytes back of %d", i, len(b), len(want))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// serviceCost is a market job's cost so far, from job status --json.
type serviceCost struct {
	Cost string `json:"cost"`
}

// serviceProvider is the testnet node that provides the job, and what
// the job has cost so far.
func serviceProvider(t *testing.T, dir, req, id string) (idInfo, serviceCost) {
	t.Helper()
	var st struct {
		Provider string      `json:"provider"`
		Cost     serviceCost `json:"cost"`
	}
	runJSON(t, req, &st, "job", "status", id)
	var prov idInfo
	for _, n := range []string{"node0", "node1"} {
		var id idInfo
		runJSON(t, filepath.Join(dir, n), &id, "id")
		if id.PeerID == st.Provider {
			prov = id
		}
	}
	if prov.PeerID == "" {
		t.Fatalf("provider %s is no node of the testnet", st.Provider)
	}
	return prov, st.Cost
}

// strangerRefused: a stranger's peer asks the provider for the job's
// port itself, and is refused.
func strangerRefused(t *testing.T, prov idInfo, jobID string) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	// A member of the network, as any peer can claim to be: it speaks the
	// network's marker protocol.
	h.SetStreamHandler(protocol.ID("/aixblock/"+prov.Network+"/member/1"), func(s network.Stream) { s.Reset() })
	pid, _ := peer.Decode(prov.PeerID)
	a, _ := ma.NewMultiaddr(prov.Addrs[0])
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	if err := h.Connect(ctx, peer.AddrInfo{ID: pid, Addrs: []ma.Multiaddr{a}}); err != nil {
		t.Fatal(err)
	}
	evil, err := overlay.Forward(ctx, h, pid, jobID, 8080, "127.0.0.1:0", overlay.ForwardOptions{Network: prov.Network})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { evil.Close() })
	c, err := net.Dial("tcp", evil.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if len(b) != 0 {
		t.Fatalf("a stranger reached the job's port: %q", b)
	}
	// The refusal is counted as the forward closes the connection.
	p2ptest.WaitFor(t, 10*time.Second, func() bool { return evil.Stats().LastError != "" }, "the stranger's forward counted no refusal")
	if e := evil.Stats().LastError; !strings.Contains(e, "no job") {
		t.Fatalf("the stranger's refusal: %q", e)
	}
	t.Logf("stranger refused: %s", evil.Stats().LastError)
}

// service is a service job started with job run -d -p: its ID and the
// local address its port 8080 is published on.
type service struct {
	ID, Local string
}

// runService starts args (job run's flags, the image, -- and its args) as
// a service through the market with its port 8080 published on a free
// local port, and returns where.
func runService(t *testing.T, repo string, args ...string) service {
	t.Helper()
	var started struct {
		ID       string `json:"id"`
		Forwards []struct {
			Local string `json:"local"`
			Port  int    `json:"port"`
		} `json:"forwards"`
	}
	// --json before the image: after -- it would go to the job.
	argv := append([]string{"job", "run", "--json", "-d", "-p", "127.0.0.1:0:8080"}, args...)
	r := run(t, repo, argv...)
	if r.code != 0 && strings.Contains(r.stdout+r.stderr, "job already finished") {
		// The job ended before its port could be published: say why (a
		// provider can refuse a start), and try once more.
		var last []struct {
			ID, State, Reason string
		}
		runJSON(t, repo, &last, "job", "list")
		if len(last) > 0 {
			t.Logf("service %s ended %s before its port was published: %s; starting it again", last[0].ID, last[0].State, last[0].Reason)
		}
		r = run(t, repo, argv...)
	}
	if r.code != 0 {
		t.Fatalf("aixblock %v: exit %d: %s%s", argv, r.code, r.stdout, r.stderr)
	}
	out := r.stdout
	if err := json.Unmarshal([]byte(out), &started); err != nil {
		t.Fatalf("job run -d -p --json: %v\n%s", err, out)
	}
	if len(started.Forwards) != 1 || started.Forwards[0].Port != 8080 {
		t.Fatalf("job run -d -p: %+v", started)
	}
	return service{started.ID, started.Forwards[0].Local}
}

// cancelService cancels a service with job cancel and waits until its
// local port closes with it.
func cancelService(t *testing.T, repo string, svc service) {
	t.Helper()
	mustRun(t, repo, "job", "cancel", svc.ID)
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", svc.Local, time.Second)
		if err != nil {
			return true // the local port closed with the job
		}
		c.Close()
		return false
	}, "%s still accepts after job cancel", svc.Local)
}
