package content

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Two peers hold the same file; a third fetches it from both at once (a
// bitswap session spreads its wants over every peer that answers HAVE) and
// says so in its stats.
func TestGetFromTwoSources(t *testing.T) {
	nodes := line(t, 3, Config{FirstBlockTimeout: 20 * time.Second})
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "f")
	want := writeRandom(t, path, 32<<20)
	opts := AddOptions{Chunker: "size-262144", Pin: true}
	root, err := a.store.Add(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.store.Add(ctx, path, opts); err != nil || again != root {
		t.Fatalf("b: %s %v", again, err)
	}
	// c is connected to b by the line; connect it to a as well.
	if err := c.p2p.Host.Connect(ctx, peer.AddrInfo{ID: a.p2p.Host.ID(), Addrs: a.p2p.Host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "f")
	var (
		mu   sync.Mutex
		last FetchStats
	)
	st, err := c.store.Get(ctx, root, out, func(s FetchStats) { mu.Lock(); last = s; mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("the file differs")
	}
	if st.Peers != 2 {
		t.Fatalf("fetched from %d peers, want both (%+v)", st.Peers, st)
	}
	if len(st.From) != 2 || st.From[0] == st.From[1] || st.Elapsed <= 0 {
		t.Fatalf("sources %v over %s: want a's and b's IDs and the time taken", st.From, st.Elapsed)
	}
	for _, p := range st.From {
		if p != a.p2p.Host.ID() && p != b.p2p.Host.ID() {
			t.Fatalf("a block from %s, neither a nor b", p)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if last.Total == 0 || st.Total < int64(len(want)) || st.Bytes != st.Total {
		t.Fatalf("total %d, bytes %d: want the root's declared size, reached", st.Total, st.Bytes)
	}
}
