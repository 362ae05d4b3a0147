package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ipfs/boxo/gateway"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/go-cid"
)

// GatewayHandler serves the trustless gateway (GET /ipfs/{cid} with
// ?format=raw or ?format=car, or the matching Accept headers) from this
// node's blocks only: it never fetches on a caller's behalf, so it cannot be
// used to make the node download arbitrary content.
//
// A CAR that follows every path rather than every block (dups=y, or
// dag-scope=entity, which reads a file's bytes through its DAG) is first
// costed from the unique nodes, each read once: a file as Cat plans it,
// and any DAG its blocks' bytes once per path plus gatewayLinkCost a
// link, within content.max_dag_mib. It is refused with 413 when it would
// cost more, 422 when its file nodes are malformed (a link of size 0).
func (s *Store) GatewayHandler() (http.Handler, error) {
	backend, err := gateway.NewBlocksBackend(s.offline)
	if err != nil {
		return nil, fmt.Errorf("gateway backend: %w", err)
	}
	h := gateway.NewHandler(gateway.Config{
		DeserializedResponses: false, // trustless: blocks and CARs, verifiable by the client
		NoDNSLink:             true,
	}, &boundedBackend{backend, s})
	mux := http.NewServeMux()
	mux.Handle("/ipfs/", h)
	return mux, nil
}

// boundedBackend is the blocks backend with GetCAR's walks costed first.
type boundedBackend struct {
	*gateway.BlocksBackend
	s *Store
}

func (b *boundedBackend) GetCAR(ctx context.Context, p path.ImmutablePath, params gateway.CarParams) (gateway.ContentPathMetadata, io.ReadCloser, error) {
	entity := params.Scope == gateway.DagScopeEntity
	allPaths := params.Scope == gateway.DagScopeAll && params.Duplicates.Bool()
	if entity || allPaths {
		// An unresolvable path is left to the backend, which answers it.
		if md, err := b.ResolvePath(ctx, p); err == nil {
			if err := b.s.costPaths(ctx, md.LastSegment.RootCid(), allPaths); err != nil {
				code := http.StatusUnprocessableEntity
				if errors.Is(err, ErrTooBig) {
					code = http.StatusRequestEntityTooLarge
				}
				if ctx.Err() != nil {
					return gateway.ContentPathMetadata{}, nil, ctx.Err()
				}
				return gateway.ContentPathMetadata{}, nil, gateway.NewErrorStatusCode(err, code)
			}
		}
	}
	return b.BlocksBackend.GetCAR(ctx, p, params)
}

// gatewayLinkCost is what each link costs a gateway walk of every path:
// boxo's traversal spends 20-40 µs a path (measured: 262,144 paths of a
// few KB of blocks took 5-11 s), some 50 times what Cat spends, so a path
// costs 64 KiB and the default 64 GiB allows a million.
const gatewayLinkCost = 64 * LinkCost

// costPaths checks, from local blocks, what a walk of every path under c
// costs, within content.max_dag_mib: a UnixFS file as Cat plans it (no
// link of size 0, sizes that add up, its bytes and LinkCost per link
// followed), and a file, or with allPaths any DAG, its blocks' bytes once
// per path and gatewayLinkCost per link. (An entity that is not a file is
// its own block, or a HAMT's shards, which boxo reads once each.)
func (s *Store) costPaths(ctx context.Context, c cid.Cid, allPaths bool) error {
	lim := s.limit(GetOptions{})
	if checkCodec(c) == nil {
		t := &tree{dag: s.local, bs: s.bs, root: c, lim: lim, maxDepth: s.cfg.MaxDepth}
		if n, err := t.get(ctx, c); err == nil && n.kind == kindFile {
			if err := t.plan(ctx, n, 0); err != nil {
				return err
			}
			allPaths = true
		}
	}
	if !allPaths {
		return nil
	}
	_, err := pathCost(ctx, s.links, s.bs, c, gatewayLinkCost, lim.max, s.cfg.MaxDepth, map[cid.Cid]int64{}, 0)
	return err
}
