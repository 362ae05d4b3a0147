package content

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	pin "github.com/ipfs/boxo/pinning/pinner"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
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
	if err := s.pins.Flush(ctx); err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	// An expiring pin (a job's result) becomes a pin for good.
	return s.clearExpiry(ctx, root)
}

// Unpin removes a recursive pin; gc then frees its blocks.
func (s *Store) Unpin(ctx context.Context, root cid.Cid) error {
	if err := s.pins.Unpin(ctx, root, true); err != nil {
		return fmt.Errorf("unpin %s: %w", root, err)
	}
	if err := s.pins.Flush(ctx); err != nil {
		return fmt.Errorf("unpin %s: %w", root, err)
	}
	return s.clearExpiry(ctx, root)
}

// expiryPrefix keys the expiry time of each expiring pin, beside the pins.
var expiryPrefix = ds.NewKey("/aixblock/pin-expiry")

func expiryKey(c cid.Cid) ds.Key { return expiryPrefix.ChildString(c.String()) }

// pinAdded pins what Add stored: for good, or, for a result, until
// ResultTTL from now. A root pinned for good already is left so; an
// expiring one is extended.
func (s *Store) pinAdded(ctx context.Context, nd ipld.Node, result bool) error {
	root := nd.Cid()
	_, wasPinned, err := s.pins.IsPinnedWithType(ctx, root, pin.Recursive)
	if err != nil {
		return err
	}
	_, expiring, err := s.expiry(ctx, root)
	if err != nil {
		return err
	}
	if err := s.pins.Pin(ctx, nd, true, ""); err != nil {
		return err
	}
	if err := s.pins.Flush(ctx); err != nil {
		return err
	}
	switch {
	case !result:
		return s.clearExpiry(ctx, root)
	case s.cfg.ResultTTL < 0 || (wasPinned && !expiring):
		return nil
	}
	at := s.cfg.Now().Add(s.cfg.ResultTTL)
	return s.cfg.Datastore.Put(ctx, expiryKey(root), []byte(strconv.FormatInt(at.UnixNano(), 10)))
}

// expiry says when root's pin expires, if it does.
func (s *Store) expiry(ctx context.Context, root cid.Cid) (time.Time, bool, error) {
	b, err := s.cfg.Datastore.Get(ctx, expiryKey(root))
	if errors.Is(err, ds.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("pin expiry of %s: %w", root, err)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("pin expiry of %s: %q: %w", root, b, err)
	}
	return time.Unix(0, n), true, nil
}

// PinExpiry says when root's pin expires; ok is false for a pin for good
// or no pin.
func (s *Store) PinExpiry(ctx context.Context, root cid.Cid) (at time.Time, ok bool, err error) {
	return s.expiry(ctx, root)
}

func (s *Store) clearExpiry(ctx context.Context, root cid.Cid) error {
	if err := s.cfg.Datastore.Delete(ctx, expiryKey(root)); err != nil && !errors.Is(err, ds.ErrNotFound) {
		return fmt.Errorf("pin expiry of %s: %w", root, err)
	}
	return nil
}

// SweepExpired unpins every expiring pin whose time has come and, if any
// went, collects garbage so their blocks are freed. It returns the roots
// it unpinned.
func (s *Store) SweepExpired(ctx context.Context) ([]cid.Cid, error) {
	res, err := s.cfg.Datastore.Query(ctx, query.Query{Prefix: expiryPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("pin expiry: %w", err)
	}
	entries, err := res.Rest()
	if err != nil {
		return nil, fmt.Errorf("pin expiry: %w", err)
	}
	now := s.cfg.Now()
	var gone []cid.Cid
	for _, e := range entries {
		c, err := cid.Parse(ds.RawKey(e.Key).BaseNamespace())
		if err != nil {
			s.log.Warn("pin expiry: dropping a bad record", "key", e.Key, "err", err)
			_ = s.cfg.Datastore.Delete(ctx, ds.RawKey(e.Key))
			continue
		}
		at, ok, err := s.expiry(ctx, c)
		if err != nil || !ok || at.After(now) {
			continue
		}
		if err := s.pins.Unpin(ctx, c, true); err != nil && !errors.Is(err, pin.ErrNotPinned) {
			return gone, fmt.Errorf("unpin expired %s: %w", c, err)
		}
		if err := s.clearExpiry(ctx, c); err != nil {
			return gone, err
		}
		gone = append(gone, c)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	if err := s.pins.Flush(ctx); err != nil {
		return gone, fmt.Errorf("unpin expired: %w", err)
	}
	res2, err := s.GC(ctx)
	if err != nil {
		return gone, err
	}
	s.log.Info("expired results unpinned and collected", "roots", len(gone), "bytes_freed", res2.Bytes)
	return gone, nil
}

func (s *Store) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if _, err := s.SweepExpired(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep expired pins", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(s.links), root, cid.NewSet().Visit)
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
		if err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(s.links), p, keep.Visit); err != nil {
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
