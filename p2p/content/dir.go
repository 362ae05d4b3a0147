package content

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// Directory stores a UnixFS directory (CIDv1) whose entries link the
// given roots by name, without fetching them: they stay wherever they
// are, and a later Get of the directory pulls them. Each entry's size is
// read from its root block when that comes within a few seconds (else 0,
// which only makes listings show no size).
func (s *Store) Directory(ctx context.Context, entries map[string]cid.Cid) (cid.Cid, error) {
	names := make([]string, 0, len(entries))
	for name, c := range entries {
		if name == "" || !c.Defined() {
			return cid.Undef, fmt.Errorf("directory entry %q: want a name and a CID", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	prefix, err := merkledag.PrefixForCidVersion(1)
	if err != nil {
		return cid.Undef, err
	}
	prefix.MhType = mh.SHA2_256
	dir := ft.EmptyDirNode()
	dir.SetCidBuilder(prefix)
	for _, name := range names {
		c := entries[name]
		var size uint64
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if nd, err := s.dag.Get(gctx, c); err == nil {
			size, _ = nd.Size()
		}
		cancel()
		if err := dir.AddRawLink(name, &ipld.Link{Name: name, Size: size, Cid: c}); err != nil {
			return cid.Undef, fmt.Errorf("directory entry %q: %w", name, err)
		}
	}
	if err := s.local.Add(ctx, dir); err != nil {
		return cid.Undef, fmt.Errorf("store directory: %w", err)
	}
	s.provide(ctx, dir.Cid())
	return dir.Cid(), nil
}
