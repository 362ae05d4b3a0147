package content

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	ihelper "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// DefaultChunker is 1 MiB fixed-size chunks.
const DefaultChunker = "size-1048576"

// AddOptions shape the DAG. The zero value is this project's default:
// CIDv1, raw leaves, 1 MiB chunks. CIDVersion 0 with RawLeaves false and
// Chunker "size-262144" reproduces Kubo's `ipfs add` defaults.
type AddOptions struct {
	// CIDVersion is 0 or 1; a nil pointer means 1.
	CIDVersion *int
	// RawLeaves stores file data as raw blocks; nil means true for CIDv1
	// and false for CIDv0, as Kubo does.
	RawLeaves *bool
	// Chunker is a boxo chunker spec (size-N, rabin-...); empty means DefaultChunker.
	Chunker string
	// Hidden includes files and directories whose names start with a dot.
	Hidden bool
	// Pin pins the root recursively once the whole DAG is stored.
	Pin bool
	// Result makes that pin expire after Config.ResultTTL (a job's
	// outputs), unless the root is pinned for good by then (Pin, `data
	// pin add`). A root already pinned for good stays so.
	Result bool
	// Progress, when set, is called with the bytes read so far.
	Progress func(bytes int64)
}

type adder struct {
	s        *Store
	batch    *batcher
	opts     AddOptions
	prefix   cid.Prefix
	raw      bool
	done     int64
	progress func(int64)
}

// Add imports a file or directory tree and returns its root CID.
func (s *Store) Add(ctx context.Context, path string, opts AddOptions) (cid.Cid, error) {
	version := 1
	if opts.CIDVersion != nil {
		version = *opts.CIDVersion
	}
	if version != 0 && version != 1 {
		return cid.Undef, fmt.Errorf("cid-version %d: want 0 or 1", version)
	}
	raw := version == 1
	if opts.RawLeaves != nil {
		raw = *opts.RawLeaves
	}
	if version == 0 && raw {
		return cid.Undef, fmt.Errorf("raw-leaves needs cid-version 1 (CIDv0 can only name dag-pb)")
	}
	if opts.Chunker == "" {
		opts.Chunker = DefaultChunker
	}
	if _, err := chunker.FromString(strings.NewReader(""), opts.Chunker); err != nil {
		return cid.Undef, fmt.Errorf("chunker %q: %w", opts.Chunker, err)
	}
	prefix, err := merkledag.PrefixForCidVersion(version)
	if err != nil {
		return cid.Undef, err
	}
	prefix.MhType = mh.SHA2_256
	a := &adder{s: s, opts: opts, prefix: prefix, raw: raw, progress: opts.Progress,
		batch: newBatcher(ctx, s.local)}

	// Hold off garbage collection until the root is pinned (or returned).
	unlock := s.bs.PinLock(ctx)
	defer unlock.Unlock(ctx)

	st, err := os.Lstat(path)
	if err != nil {
		return cid.Undef, fmt.Errorf("add: %w", err)
	}
	nd, err := a.add(ctx, path, st)
	if cerr := a.batch.Commit(); err == nil && cerr != nil {
		err = fmt.Errorf("add: store blocks: %w", cerr)
	}
	if err != nil {
		return cid.Undef, err
	}
	root := nd.Cid()
	if opts.Pin {
		if err := s.pinAdded(ctx, nd, opts.Result); err != nil {
			return cid.Undef, fmt.Errorf("pin %s: %w", root, err)
		}
	}
	s.provide(ctx, root)
	return root, nil
}

func (a *adder) add(ctx context.Context, path string, st os.FileInfo) (ipld.Node, error) {
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", path, err)
		}
		data, err := ft.SymlinkData(target)
		if err != nil {
			return nil, err
		}
		nd := merkledag.NodeWithData(data)
		nd.SetCidBuilder(a.prefix)
		return nd, a.s.local.Add(ctx, nd)
	case st.IsDir():
		return a.addDir(ctx, path)
	case st.Mode().IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		defer f.Close()
		return a.addFile(ctx, f)
	}
	return nil, fmt.Errorf("add %s: not a file, directory or symlink", path)
}

func (a *adder) addFile(ctx context.Context, r io.Reader) (ipld.Node, error) {
	if a.progress != nil {
		r = &countingReader{r: r, add: func(n int) { a.done += int64(n); a.progress(a.done) }}
	}
	spl, err := chunker.FromString(r, a.opts.Chunker)
	if err != nil {
		return nil, err
	}
	params := ihelper.DagBuilderParams{
		Dagserv:    batched{a.s.local, a.batch},
		RawLeaves:  a.raw,
		Maxlinks:   ihelper.DefaultLinksPerBlock,
		CidBuilder: a.prefix,
	}
	db, err := params.New(spl)
	if err != nil {
		return nil, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return nd, ctx.Err()
}

func (a *adder) addDir(ctx context.Context, path string) (ipld.Node, error) {
	dir, err := uio.NewDirectory(a.s.local, uio.WithCidBuilder(a.prefix))
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	for _, e := range entries {
		if !a.opts.Hidden && strings.HasPrefix(e.Name(), ".") {
			continue
		}
		child := filepath.Join(path, e.Name())
		st, err := os.Lstat(child)
		if err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		nd, err := a.add(ctx, child, st)
		if err != nil {
			return nil, err
		}
		if err := dir.AddChild(ctx, e.Name(), nd); err != nil {
			return nil, fmt.Errorf("add %s: %w", child, err)
		}
	}
	nd, err := dir.GetNode()
	if err != nil {
		return nil, err
	}
	return nd, a.s.local.Add(ctx, nd)
}

// batchBytes is one datastore batch of file blocks: over pebble's
// large-batch threshold (half of OpenDatastore's 64 MiB memtable), so
// pebble queues it for flushing as it is instead of copying each block
// into the memtable.
const batchBytes = 36 << 20

// batcher buffers an add's blocks into batches of batchBytes and commits
// each in the background while the next is hashed; at most two batches
// are in memory.
type batcher struct {
	ctx  context.Context
	dag  ipld.DAGService
	buf  []ipld.Node
	size int
	work chan []ipld.Node
	done chan error
	err  error
}

func newBatcher(ctx context.Context, dag ipld.DAGService) *batcher {
	work := make(chan []ipld.Node)
	b := &batcher{ctx: ctx, dag: dag, work: work, done: make(chan error, 1)}
	go func() {
		var err error
		for nds := range work {
			if err == nil {
				err = dag.AddMany(ctx, nds)
			}
		}
		b.done <- err
	}()
	return b
}

func (b *batcher) add(nds ...ipld.Node) error {
	for _, nd := range nds {
		b.buf = append(b.buf, nd)
		b.size += len(nd.RawData())
	}
	if b.size >= batchBytes {
		b.send()
	}
	return nil
}

func (b *batcher) send() {
	if len(b.buf) == 0 {
		return
	}
	select {
	case b.work <- b.buf:
	case <-b.ctx.Done():
	}
	b.buf, b.size = nil, 0
}

// Commit stores what is buffered and waits for every batch.
func (b *batcher) Commit() error {
	if b.work == nil {
		return b.err
	}
	b.send()
	close(b.work)
	b.work = nil
	b.err = <-b.done
	if b.err == nil {
		b.err = b.ctx.Err()
	}
	return b.err
}

// batched is a DAG service whose writes go through a batcher.
type batched struct {
	ipld.DAGService
	b *batcher
}

func (d batched) Add(ctx context.Context, nd ipld.Node) error        { return d.b.add(nd) }
func (d batched) AddMany(ctx context.Context, nds []ipld.Node) error { return d.b.add(nds...) }

type countingReader struct {
	r   io.Reader
	add func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(n)
	}
	return n, err
}

// Entry is one link of a directory.
type Entry struct {
	Name string `json:"name"`
	CID  string `json:"cid"`
	Size uint64 `json:"size"`
}

// Ls lists a directory's entries, fetching only the directory node.
func (s *Store) Ls(ctx context.Context, c cid.Cid) ([]Entry, error) {
	if err := checkCodec(c); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FirstBlockTimeout)
	defer cancel()
	nd, err := s.dag.Get(fctx, c)
	if err != nil {
		return nil, fmt.Errorf("ls %s: %w", c, err)
	}
	dir, err := uio.NewDirectoryFromNode(s.dag, nd)
	if err != nil {
		return nil, fmt.Errorf("ls %s: not a directory", c)
	}
	// A name seen twice ends the listing: a HAMT whose shard links one
	// child shard many times repeats its names on every path, and would
	// otherwise be listed once per path.
	out := []Entry{}
	seen := map[string]bool{}
	err = dir.ForEachLink(fctx, func(l *ipld.Link) error {
		if seen[l.Name] {
			return fmt.Errorf("%w: %q appears twice", ErrBadEntry, l.Name)
		}
		seen[l.Name] = true
		out = append(out, Entry{Name: l.Name, CID: l.Cid.String(), Size: l.Size})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ls %s: %w", c, err)
	}
	return out, nil
}
