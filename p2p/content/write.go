package content

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"golang.org/x/sys/unix"
)

// EntryCost is what each file, directory and symlink costs against a write
// limit on top of its bytes: an inode and a directory entry are not free, and
// without it a directory of a million links to one empty file would write
// "nothing".
const EntryCost = 4 << 10

// ErrBadEntry is a directory entry that cannot be written safely: an empty,
// ".", ".." or duplicate name, or one with a slash or a NUL byte.
var ErrBadEntry = errors.New("unsafe directory entry")

// limit is a write budget and the name of the setting that gave it, so that
// a refusal tells the user what to raise.
type limit struct {
	max  int64
	name string
}

// tree reads a UnixFS DAG from the local blockstore and writes it out, never
// following a symlink and never leaving the target: every path component is
// created relative to its parent's descriptor (openat, mkdirat, symlinkat),
// files with O_EXCL|O_NOFOLLOW. Bytes are counted as UnixFS declares them,
// every repeated link again, since that is what lands on disk.
//
// A file costs its bytes and LinkCost for every link followed in writing
// it (see walk.go), all charged by plan before anything is written.
type tree struct {
	dag      ipld.DAGService
	bs       sizer // nil: raw leaves are read for their size
	root     cid.Cid
	lim      limit
	maxDepth int
	direct   bool  // write files with O_DIRECT (Config.DirectIO)
	used     int64 // charged so far, by the plan
	// files is each file node checkFile has seen, and what it costs.
	files map[cid.Cid]fileMeta
	// follow is how many links writeFile may still follow: what plan
	// charged for.
	follow int64
}

// sizer gives a block's size without reading it (the blockstore).
type sizer interface {
	GetSize(context.Context, cid.Cid) (int, error)
}

// node is one decoded UnixFS node.
type node struct {
	nd   ipld.Node
	fs   *ft.FSNode // nil for a raw block
	kind int
}

const (
	kindFile = iota
	kindDir
	kindSymlink
)

func (t *tree) get(ctx context.Context, c cid.Cid) (node, error) {
	if err := checkCodec(c); err != nil {
		return node{}, err
	}
	nd, err := t.dag.Get(ctx, c)
	if err != nil {
		return node{}, fmt.Errorf("%s: %w", c, err)
	}
	return decode(nd)
}

// decode classifies a block as a UnixFS file, directory or symlink.
func decode(nd ipld.Node) (node, error) {
	pn, ok := nd.(*merkledag.ProtoNode)
	if !ok {
		if _, raw := nd.(*merkledag.RawNode); raw {
			return node{nd: nd, kind: kindFile}, nil
		}
		return node{}, fmt.Errorf("%s: not a UnixFS node", nd.Cid())
	}
	fsn, err := ft.FSNodeFromBytes(pn.Data())
	if err != nil {
		return node{}, fmt.Errorf("%s: bad UnixFS data: %w", nd.Cid(), err)
	}
	n := node{nd: nd, fs: fsn}
	switch fsn.Type() {
	case ft.TFile, ft.TRaw:
		n.kind = kindFile
	case ft.TDirectory, ft.THAMTShard:
		n.kind = kindDir
	case ft.TSymlink:
		n.kind = kindSymlink
	default:
		return node{}, fmt.Errorf("%s: UnixFS type %s cannot be written", nd.Cid(), fsn.Type())
	}
	return n, nil
}

func (n node) size() int64 {
	if n.fs == nil {
		return int64(len(n.nd.RawData()))
	}
	return int64(n.fs.FileSize())
}

// charge spends n bytes of the budget or says which limit it crosses.
func (t *tree) charge(n int64) error {
	if n < 0 || t.used+n > t.lim.max || t.used+n < t.used {
		return overLimit(t.root, t.lim, fmt.Sprintf("writing it takes more than %d MiB", t.lim.max>>20))
	}
	t.used += n
	return nil
}

// entry is a child of a directory.
type entry struct {
	name string
	c    cid.Cid
}

// entries lists a directory's children, refusing names that could not be
// written as one plain entry in that directory, and duplicates (a symlink
// "a" followed by a directory "a" would otherwise have its files written
// through the link).
func (t *tree) entries(ctx context.Context, n node) ([]entry, error) {
	dir, err := uio.NewDirectoryFromNode(t.dag, n.nd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.nd.Cid(), err)
	}
	var out []entry
	seen := map[string]bool{}
	err = dir.ForEachLink(ctx, func(l *ipld.Link) error {
		if err := checkName(l.Name); err != nil {
			return fmt.Errorf("directory %s: %w", n.nd.Cid(), err)
		}
		if seen[l.Name] {
			return fmt.Errorf("directory %s: %w: %q appears twice", n.nd.Cid(), ErrBadEntry, l.Name)
		}
		seen[l.Name] = true
		out = append(out, entry{l.Name, l.Cid})
		return nil
	})
	return out, err
}

// checkName accepts a single path component.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: name %q", ErrBadEntry, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: name %q has a slash or a NUL byte", ErrBadEntry, name)
	case len(name) > 255:
		return fmt.Errorf("%w: name of %d bytes (the limit is 255)", ErrBadEntry, len(name))
	}
	return nil
}

func symlinkTarget(n node) (string, error) {
	target := string(n.fs.Data())
	if target == "" || strings.ContainsRune(target, 0) {
		return "", fmt.Errorf("%s: %w: symlink target %q", n.nd.Cid(), ErrBadEntry, target)
	}
	return target, nil
}

// plan walks the whole tree before anything is written: names are checked
// and every entry is charged its bytes plus EntryCost, every file also
// LinkCost for each link writing it follows (its nodes checked once each
// by checkFile), so a DAG over the limit is refused with nothing on disk.
// The budget also bounds the walk itself: each visit costs at least
// EntryCost, each link followed inside a file LinkCost.
func (t *tree) plan(ctx context.Context, n node, depth int) error {
	if depth > t.maxDepth {
		return fmt.Errorf("%s: %w (%d levels)", t.root, ErrTooDeep, t.maxDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.charge(EntryCost); err != nil {
		return err
	}
	switch n.kind {
	case kindFile:
		m, err := t.checkFile(ctx, n, 0)
		if err != nil {
			return err
		}
		if err := t.charge(m.size); err != nil {
			return err
		}
		if m.links > t.linkBudget() {
			return t.tooManyLinks(n.nd.Cid())
		}
		t.used += m.links * LinkCost
		t.follow += m.links
		return nil
	case kindSymlink:
		_, err := symlinkTarget(n)
		return err
	}
	es, err := t.entries(ctx, n)
	if err != nil {
		return err
	}
	for _, e := range es {
		child, err := t.get(ctx, e.c)
		if err != nil {
			return err
		}
		if err := t.plan(ctx, child, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// write materialises root at out, which must not exist. On an error after
// out was created, out is removed again.
func (t *tree) write(ctx context.Context, out string) (err error) {
	rootNode, err := t.get(ctx, t.root)
	if err != nil {
		return err
	}
	if err := t.plan(ctx, rootNode, 0); err != nil {
		return err
	}
	parent, err := os.Open(filepath.Dir(out))
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	defer parent.Close()
	name := filepath.Base(out)
	created := false
	defer func() {
		if err != nil && created {
			os.RemoveAll(out)
		}
	}()
	return t.writeAt(ctx, int(parent.Fd()), name, rootNode, &created)
}

func (t *tree) writeAt(ctx context.Context, dirfd int, name string, n node, created *bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch n.kind {
	case kindSymlink:
		target, err := symlinkTarget(n)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dirfd, name); err != nil {
			return fmt.Errorf("symlink %s: %w", name, err)
		}
		*created = true
		return nil
	case kindFile:
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode(n))
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		*created = true
		// Straight to the disk when asked and the filesystem allows (see
		// direct.go).
		var f io.WriteCloser
		var buf *bufio.Writer // small leaves and inline data go out together
		if t.direct && setDirect(fd) {
			f = &directFile{fd: fd, path: name} // buffers itself
		} else {
			f = os.NewFile(uintptr(fd), name)
			buf = bufio.NewWriterSize(f, 256<<10)
		}
		w := &fileWriter{f: f, left: n.size()}
		if buf != nil {
			w.f = buf
		}
		err = t.writeFile(ctx, w, n, 0)
		if err == nil {
			err = w.done()
		}
		if err == nil && buf != nil {
			err = buf.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	if err := unix.Mkdirat(dirfd, name, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", name, err)
	}
	*created = true
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(fd)
	es, err := t.entries(ctx, n)
	if err != nil {
		return err
	}
	for _, e := range es {
		child, err := t.get(ctx, e.c)
		if err != nil {
			return err
		}
		if err := t.writeAt(ctx, fd, e.name, child, created); err != nil {
			return fmt.Errorf("%s/%w", name, err)
		}
	}
	return nil
}

// fileMode keeps UnixFS's executable bit; everything else is 0644, readable
// by a job that runs as nobody.
func fileMode(n node) uint32 {
	if n.fs != nil && n.fs.Mode()&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// fileWriter refuses bytes beyond the file's declared size, which plan
// charged: a DAG whose leaves hold more than its root declares cannot write
// past the budget.
type fileWriter struct {
	f    io.Writer
	left int64
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errors.New("file data longer than its declared size")
	}
	w.left -= int64(len(p))
	return w.f.Write(p)
}

// done says whether every declared byte came.
func (w *fileWriter) done() error {
	if w.left != 0 {
		return fmt.Errorf("file data %d bytes shorter than its declared size", w.left)
	}
	return nil
}

// writeFile writes a file DAG's leaves in order, following no more links
// than plan charged for, and stops when ctx ends. A child linked again
// right after itself (a file of zeros repeats one leaf) is not read again.
func (t *tree) writeFile(ctx context.Context, w io.Writer, n node, depth int) error {
	if depth > t.maxDepth {
		return fmt.Errorf("%s: %w (%d levels)", t.root, ErrTooDeep, t.maxDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.fs == nil {
		_, err := w.Write(n.nd.RawData())
		return err
	}
	if n.kind != kindFile {
		return fmt.Errorf("%s: a file links a UnixFS %s", n.nd.Cid(), n.fs.Type())
	}
	if d := n.fs.Data(); len(d) > 0 {
		if _, err := w.Write(d); err != nil {
			return err
		}
	}
	var prev node
	for _, l := range n.nd.Links() {
		if t.follow <= 0 {
			return fmt.Errorf("%s: %w: more links than were charged for", t.root, ErrTooBig)
		}
		t.follow--
		child := prev
		if prev.nd == nil || !prev.nd.Cid().Equals(l.Cid) {
			var err error
			if child, err = t.get(ctx, l.Cid); err != nil {
				return err
			}
			prev = child
		}
		if err := t.writeFile(ctx, w, child, depth+1); err != nil {
			return err
		}
	}
	return nil
}
