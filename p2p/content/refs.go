package content

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	blocks "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/datastore/dshelp"
	bl "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
	"golang.org/x/sys/unix"
)

// Leaves kept in the file a Get wrote. A Get of one file writes every
// leaf into that file; storing each again as a block file doubled what
// the getter wrote, and on a machine whose page cache or disk is the
// limit that second write cost as much as everything else a fetch does.
// So while a placer waits for a raw leaf, bitswap's copy of it is not
// stored (refStore.filter); once the placer has written it, the store
// keeps a reference instead: the file, the offset and the length.
//
// A reference is only a hint. Every read hashes the bytes against the
// CID, so a file that was changed, truncated, replaced or removed since
// serves nothing: the reference is dropped and the block is missing, as
// after a GC, and is fetched again when wanted. It is read without
// following a symlink at the file's own path. This is what Kubo's
// filestore (`add --nocopy`) does, for the files a get writes: the copy
// this node serves to others lives as long as the user keeps the file.
//
// What it trades: a leaf fetched for a Get that then fails (the file is
// removed) is gone with it, even if another fetch of the same leaf ran at
// the same moment; that fetch then finds it missing and fetches again.
type refStore struct {
	ds ds.Datastore

	mu     sync.Mutex
	expect map[string]int // multihash → placers waiting for that leaf
}

var refsPrefix = ds.NewKey("/refs")

func refKey(h mh.Multihash) ds.Key { return refsPrefix.Child(dshelp.MultihashToDsKey(h)) }

// waitFor notes that a placer will write the leaf h (and keep a
// reference), so that bitswap need not store it; done undoes it.
func (r *refStore) waitFor(h mh.Multihash) {
	r.mu.Lock()
	r.expect[string(h)]++
	r.mu.Unlock()
}

func (r *refStore) done(h mh.Multihash) {
	r.mu.Lock()
	if r.expect[string(h)]--; r.expect[string(h)] <= 0 {
		delete(r.expect, string(h))
	}
	r.mu.Unlock()
}

func (r *refStore) expected(h mh.Multihash) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expect[string(h)] > 0
}

// encodeRef is offset, length (uvarints) and the path.
func encodeRef(path string, off int64, n int) []byte {
	b := binary.AppendUvarint(nil, uint64(off))
	b = binary.AppendUvarint(b, uint64(n))
	return append(b, path...)
}

func decodeRef(b []byte) (path string, off int64, n int, err error) {
	o, k := binary.Uvarint(b)
	if k <= 0 || o > 1<<62 {
		return "", 0, 0, errors.New("bad offset")
	}
	b = b[k:]
	l, k := binary.Uvarint(b)
	if k <= 0 || l == 0 || l > 1<<30 {
		return "", 0, 0, errors.New("bad length")
	}
	if len(b[k:]) == 0 || b[k] != '/' {
		return "", 0, 0, errors.New("no absolute path")
	}
	return string(b[k:]), int64(o), int(l), nil
}

func (r *refStore) put(ctx context.Context, h mh.Multihash, path string, off int64, n int) error {
	return r.ds.Put(ctx, refKey(h), encodeRef(path, off, n))
}

func (r *refStore) lookup(ctx context.Context, h mh.Multihash) (string, int64, int, bool) {
	v, err := r.ds.Get(ctx, refKey(h))
	if err != nil {
		return "", 0, 0, false
	}
	path, off, n, err := decodeRef(v)
	if err != nil {
		r.ds.Delete(ctx, refKey(h))
		return "", 0, 0, false
	}
	return path, off, n, true
}

func (r *refStore) has(ctx context.Context, h mh.Multihash) bool {
	ok, err := r.ds.Has(ctx, refKey(h))
	return err == nil && ok
}

func (r *refStore) size(ctx context.Context, h mh.Multihash) (int, bool) {
	_, _, n, ok := r.lookup(ctx, h)
	return n, ok
}

// get reads the leaf c from where its reference says and checks it; a
// reference that no longer holds the leaf is dropped (ipld.ErrNotFound).
func (r *refStore) get(ctx context.Context, c cid.Cid) (bl.Block, error) {
	path, off, n, ok := r.lookup(ctx, c.Hash())
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	data, err := readRange(path, off, n)
	if err == nil {
		var sum cid.Cid
		if sum, err = c.Prefix().Sum(data); err == nil && !sum.Equals(c) {
			err = errors.New("the file's bytes changed")
		}
	}
	if err != nil {
		if derr := r.ds.Delete(ctx, refKey(c.Hash())); derr != nil {
			return nil, fmt.Errorf("block %s: drop its reference to %s: %w", c, path, derr)
		}
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return bl.NewBlockWithCid(data, c)
}

func readRange(path string, off int64, n int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	data := make([]byte, n)
	if _, err := f.ReadAt(data, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return data, nil
}

func (r *refStore) delete(ctx context.Context, h mh.Multihash) error {
	return r.ds.Delete(ctx, refKey(h))
}

// keys lists the leaves kept as references, as raw CIDs.
func (r *refStore) keys(ctx context.Context, out chan<- cid.Cid) error {
	res, err := r.ds.Query(ctx, query.Query{Prefix: refsPrefix.String(), KeysOnly: true})
	if err != nil {
		return err
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return e.Error
		}
		h, err := dshelp.DsKeyToMultihash(ds.NewKey(ds.RawKey(e.Key).BaseNamespace()))
		if err != nil {
			continue
		}
		select {
		case out <- cid.NewCidV1(cid.Raw, h):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// filter is the blockstore bitswap stores what it receives in: a leaf a
// placer is about to write (and keep a reference to) is not stored again.
type filter struct {
	blocks.Blockstore
	r *refStore
}

func (f filter) Put(ctx context.Context, b bl.Block) error {
	if f.r.expected(b.Cid().Hash()) {
		return nil
	}
	return f.Blockstore.Put(ctx, b)
}

func (f filter) PutMany(ctx context.Context, bs []bl.Block) error {
	keep := bs[:0:0]
	for _, b := range bs {
		if !f.r.expected(b.Cid().Hash()) {
			keep = append(keep, b)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return f.Blockstore.PutMany(ctx, keep)
}
