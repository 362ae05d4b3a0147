package content

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
)

// Pin pins root recursively; every block must be local (fetch first).
func (s *Store) Pin(ctx context.Context, root cid.Cid) error {
	unlock := s.bs.PinLock(ctx)
	defer unlock.Unlock(ctx)
	if err := s.complete(ctx, root); err != nil {
		return err
	}
	nd, err := s.local.Get(ctx, root)
	if err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	if err := s.pins.Pin(ctx, nd, true, ""); err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	return s.pins.Flush(ctx)
}

// Unpin removes a recursive pin; gc then frees its blocks.
func (s *Store) Unpin(ctx context.Context, root cid.Cid) error {
	if err := s.pins.Unpin(ctx, root, true); err != nil {
		return fmt.Errorf("unpin %s: %w", root, err)
	}
	return s.pins.Flush(ctx)
}

// Pins lists the recursive pins.
func (s *Store) Pins(ctx context.Context) ([]cid.Cid, error) {
	var out []cid.Cid
	for p := range s.pins.RecursiveKeys(ctx, false) {
		if p.Err != nil {
			return nil, p.Err
		}
		out = append(out, p.Pin.Key)
	}
	return out, nil
}

// complete checks, offline, that every block under root is here.
func (s *Store) complete(ctx context.Context, root cid.Cid) error {
	err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(s.local), root, cid.NewSet().Visit)
	if err != nil {
		return fmt.Errorf("%s is incomplete here (%w); fetch it first", root, err)
	}
	return nil
}

// GCResult is what a collection removed.
type GCResult struct {
	Removed int   `json:"removed"`
	Kept    int   `json:"kept"`
	Bytes   int64 `json:"bytes_freed"`
}

// GC deletes every block not reachable from a pin.
func (s *Store) GC(ctx context.Context) (GCResult, error) {
	unlock := s.bs.GCLock(ctx)
	defer unlock.Unlock(ctx)
	keep := cid.NewSet()
	pins, err := s.Pins(ctx)
	if err != nil {
		return GCResult{}, err
	}
	for _, p := range pins {
		if err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(s.local), p, keep.Visit); err != nil {
			return GCResult{}, fmt.Errorf("gc: walk pin %s: %w", p, err)
		}
	}
	keys, err := s.bs.AllKeysChan(ctx)
	if err != nil {
		return GCResult{}, err
	}
	var res GCResult
	// The blockstore is keyed by multihash and lists raw CIDs: compare hashes.
	keepHash := make(map[string]bool, keep.Len())
	keep.ForEach(func(c cid.Cid) error { keepHash[string(c.Hash())] = true; return nil })
	for c := range keys {
		if keepHash[string(c.Hash())] {
			res.Kept++
			continue
		}
		if size, err := s.bs.GetSize(ctx, c); err == nil {
			res.Bytes += int64(size)
		}
		if err := s.bs.DeleteBlock(ctx, c); err != nil {
			return res, fmt.Errorf("gc: delete %s: %w", c, err)
		}
		res.Removed++
	}
	return res, nil
}

// provide announces root in the DHT, in the background.
func (s *Store) provide(ctx context.Context, root cid.Cid) {
	if s.routing == nil {
		return
	}
	go func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.routing.Provide(pctx, root, true); err != nil {
			s.log.Debug("provide", "cid", root, "err", err)
		}
	}()
}

// reprovide re-announces pinned roots on a timer, as provider records expire.
func (s *Store) reprovide(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pins, err := s.Pins(ctx)
		if err != nil {
			s.log.Warn("reprovide: list pins", "err", err)
			continue
		}
		for _, p := range pins {
			s.provide(ctx, p)
		}
	}
}
