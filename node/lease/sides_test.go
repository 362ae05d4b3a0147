package lease

import (
	"io"
	"log/slog"
	"testing"
)

// testBase is what one side runs on in a unit test: cfg with a temporary
// repo and a silent log unless given; no p2p, no Docker.
func testBase(t testing.TB, cfg Config) *base {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b := newBase(cfg)
	t.Cleanup(func() {
		b.stop()
		b.wg.Wait() // nothing of the side outlives its test
	})
	return b
}

// testRequester is a requester alone, its records loaded from cfg.Dir.
func testRequester(t testing.TB, cfg Config) *Requester {
	t.Helper()
	rq := makeRequester(testBase(t, cfg))
	if err := rq.loadRecords(); err != nil {
		t.Fatal(err)
	}
	return rq
}

// testProvider is a provider alone, its deals loaded from cfg.Dir, with
// no protocol registered.
func testProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	pv := makeProvider(testBase(t, cfg))
	if err := pv.loadStarted(); err != nil {
		t.Fatal(err)
	}
	if err := pv.loadProvided(); err != nil {
		t.Fatal(err)
	}
	return pv
}
