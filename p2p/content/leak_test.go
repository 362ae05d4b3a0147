package content

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/aixblock/aixblock/internal/leakcheck"
)

// Closing the stores and their nodes after a fetch between them leaves
// nothing of theirs running: bitswap, the reprovider, the sweep and the
// block files' sync all stop with Close.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	leakcheck.Check(t)
	nodes := line(t, 2, Config{FindTimeout: 5 * time.Second, FirstBlockTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "f")
	writeRandom(t, src, 3<<20)
	c, err := nodes[0].store.Add(ctx, src, AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := nodes[1].store.Get(ctx, c, filepath.Join(t.TempDir(), "f"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fetched == 0 {
		t.Fatal("fetched nothing")
	}
}
