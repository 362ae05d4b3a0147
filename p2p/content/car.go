package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
)

// ExportCAR writes the DAG under root as a CARv1, fetching what is missing.
// Each block goes once, however many links reach it; the links the walk
// looks at cost LinkCost each against the limit, as in the fetch before it.
func (s *Store) ExportCAR(ctx context.Context, root cid.Cid, w io.Writer) error {
	if _, err := s.Fetch(ctx, root, nil); err != nil {
		return err
	}
	car, err := storage.NewWritable(w, []cid.Cid{root}, carv2.WriteAsCarV1(true), carv2.AllowDuplicatePuts(false))
	if err != nil {
		return fmt.Errorf("car: %w", err)
	}
	lim := s.limit(GetOptions{})
	var cost int64
	err = merkledag.Walk(ctx, func(ctx context.Context, c cid.Cid) ([]*ipld.Link, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := s.bs.Get(ctx, c)
		if err != nil {
			return nil, err
		}
		if err := car.Put(ctx, c.KeyString(), b.RawData()); err != nil {
			return nil, err
		}
		var nd ipld.Node
		switch c.Type() {
		case cid.Raw:
			return nil, nil
		case cid.DagProtobuf: // decoded once, from the block just read
			nd, err = merkledag.DecodeProtobufBlock(b)
		default:
			nd, err = s.local.Get(ctx, c)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		if cost += int64(len(b.RawData())) + int64(len(nd.Links()))*LinkCost; cost > lim.max {
			return nil, overLimit(root, lim, fmt.Sprintf("its blocks and links cost more than %d MiB", lim.max>>20))
		}
		return nd.Links(), nil
	}, root, cid.NewSet().Visit)
	if err != nil {
		return fmt.Errorf("car export %s: %w", root, err)
	}
	return car.Finalize()
}

// ImportResult says what a CAR brought.
type ImportResult struct {
	Roots  []cid.Cid `json:"roots"`
	Blocks int       `json:"blocks"`
}

// ImportCAR reads a CAR (v1 or v2), checks every block's hash, and pins its
// roots only when each root's DAG is complete: a truncated or corrupted CAR
// leaves nothing pinned (its blocks go at the next gc).
func (s *Store) ImportCAR(ctx context.Context, r io.Reader) (ImportResult, error) {
	unlock := s.bs.PinLock(ctx)
	defer unlock.Unlock(ctx)
	br, err := carv2.NewBlockReader(r)
	if err != nil {
		return ImportResult{}, fmt.Errorf("car header: %w", err)
	}
	res := ImportResult{Roots: br.Roots}
	if len(br.Roots) == 0 {
		return res, errors.New("car: no roots")
	}
	for _, root := range br.Roots {
		if err := checkCodec(root); err != nil {
			return res, fmt.Errorf("car root: %w", err)
		}
	}
	batch := make([]blocks.Block, 0, 64)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.bs.PutMany(ctx, batch)
		batch = batch[:0]
		return err
	}
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("car block %d: %w (truncated or corrupted)", res.Blocks+1, err)
		}
		sum, err := b.Cid().Prefix().Sum(b.RawData())
		if err != nil || !sum.Equals(b.Cid()) {
			return res, fmt.Errorf("car block %d: data does not match %s (corrupted)", res.Blocks+1, b.Cid())
		}
		batch = append(batch, b)
		res.Blocks++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	for _, root := range br.Roots {
		if err := s.complete(ctx, root); err != nil {
			return res, fmt.Errorf("car: root %w", err)
		}
	}
	for _, root := range br.Roots {
		nd, err := s.local.Get(ctx, root)
		if err != nil {
			return res, err
		}
		if err := s.pins.Pin(ctx, nd, true, ""); err != nil {
			return res, fmt.Errorf("pin %s: %w", root, err)
		}
		if err := s.clearExpiry(ctx, root); err != nil {
			return res, err
		}
		s.provide(ctx, root)
	}
	return res, s.pins.Flush(ctx)
}
