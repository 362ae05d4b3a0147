package content

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"golang.org/x/sys/unix"
)

// A Get of a single file writes each block where it belongs as the fetch
// delivers it, in whatever order bitswap brings blocks, instead of a
// second walk that asks for them in file order. The offsets come from the
// parents' UnixFS block sizes, which are checked as each node arrives: a
// node's inline data and its children's declared sizes must add up to
// what its parent declared for it, and a raw leaf must be exactly as long
// as declared. So every write lands inside the root's declared size, which
// was charged against the limit before the file was created, and when the
// fetch ends every byte of the file has been written exactly once (or the
// file is removed).
//
// Each node is placed once: a node that a second link reaches (a leaf
// repeated in a file of zeros, or a hostile fan-out of one child linked
// many times) switches the placer to writing the whole file in order
// once the fetch is done (inOrder), through tree's walk, which charges
// LinkCost for every link on every path before it writes. So the placer
// holds one span per unique link, each charged LinkCost as it is planned,
// and never more than the limit allows.
//
// Leaves go straight from the buffer bitswap decoded into the file,
// through the page cache; with Config.DirectIO, those that are aligned
// (1 MiB chunks at 1 MiB offsets are; the file's last leaf is padded and
// the file truncated back at the end) go with O_DIRECT on a second
// descriptor of the same file, the rest, e.g. after inline data in a
// node, through the page cache.

// span is where one block's bytes go in the output file.
type span struct {
	off, size int64
	depth     int
}

// placer writes one UnixFS file from the blocks a fetch visits.
type placer struct {
	s        *Store
	root     cid.Cid
	out      string
	lim      limit
	maxDepth int

	// isFile says the root came and is a file, which the placer writes.
	// The fetch's walk has ended (its walkers too) when Get reads it.
	isFile bool

	mu   sync.Mutex
	want map[cid.Cid]span // blocks not yet here and where they go
	seen map[cid.Cid]bool // blocks already placed
	// inOrder says a node was reached twice: placing stopped, and finish
	// writes the file in order from the blockstore.
	inOrder bool
	links   int64 // links planned, each charged LinkCost
	size    int64
	placed  int64
	fd      int      // O_DIRECT descriptor (Config.DirectIO), or -1
	f       *os.File // page-cache descriptor
	created bool
	tail    atomic.Bool // a padded write went past the end
}

func newPlacer(s *Store, out string, lim limit) *placer {
	return &placer{s: s, out: out, lim: lim, maxDepth: s.cfg.MaxDepth,
		want: map[cid.Cid]span{}, seen: map[cid.Cid]bool{}, fd: -1}
}

// put takes a block the fetch just made local. The first is the root:
// when it is not a file, the placer steps aside (a directory is written by
// tree after the fetch) and every later put is a no-op.
func (p *placer) put(ctx context.Context, nd ipld.Node, isRoot bool) error {
	if !isRoot && !p.isFile {
		return nil
	}
	n, err := decode(nd) // once, whatever links it
	if err != nil {
		return err
	}
	if isRoot {
		if n.kind != kindFile {
			return nil
		}
		// What tree's plan would charge a file: its entry and its bytes.
		size := n.size()
		t := &tree{root: nd.Cid(), lim: p.lim}
		if err := t.charge(EntryCost); err != nil {
			return err
		}
		if err := t.charge(size); err != nil { // refuses a negative one too
			return err
		}
		if err := p.create(fileMode(n), size); err != nil {
			return err
		}
		p.isFile = true
		p.root = nd.Cid()
		p.want[nd.Cid()] = span{0, size, 0}
	}
	p.mu.Lock()
	if p.inOrder {
		p.mu.Unlock()
		return nil
	}
	sp, ok := p.want[nd.Cid()]
	delete(p.want, nd.Cid())
	p.seen[nd.Cid()] = true
	var w []pendingWrite
	if ok {
		if err := p.place(n, sp, &w); err != nil {
			p.mu.Unlock()
			return err
		}
	}
	p.mu.Unlock()
	// Outside the lock, so that walkers write in parallel.
	for _, pw := range w {
		if err := p.writeAt(pw.b, pw.off); err != nil {
			return err
		}
	}
	return nil
}

type pendingWrite struct {
	b   []byte
	off int64
}

// place plans n's bytes at sp and records where its children go; called
// with p.mu held. A child already wanted or placed ends placing (see
// inOrder).
func (p *placer) place(n node, sp span, w *[]pendingWrite) error {
	nd := n.nd
	if sp.depth > p.maxDepth {
		return fmt.Errorf("%s: %w (%d levels)", nd.Cid(), ErrTooDeep, p.maxDepth)
	}
	if n.kind != kindFile {
		return fmt.Errorf("%s: a file links a UnixFS %s", nd.Cid(), n.fs.Type())
	}
	if n.fs == nil { // a raw leaf
		data := nd.RawData()
		if int64(len(data)) != sp.size {
			return fmt.Errorf("%s: leaf of %d bytes, not the declared size %d its parent gives", nd.Cid(), len(data), sp.size)
		}
		return p.plan(w, data, sp.off)
	}
	data, sizes, links := n.fs.Data(), n.fs.BlockSizes(), nd.Links()
	if len(sizes) != len(links) {
		return fmt.Errorf("%s: %d block sizes for %d links", nd.Cid(), len(sizes), len(links))
	}
	total := int64(len(data))
	for i, bs := range sizes {
		if bs == 0 {
			return fmt.Errorf("%s: %w (link %d of %d, to %s)", nd.Cid(), ErrZeroSizeLink, i+1, len(links), links[i].Cid)
		}
		total += int64(bs)
		if int64(bs) < 0 || total < 0 {
			return fmt.Errorf("%s: block sizes overflow", nd.Cid())
		}
	}
	if total != sp.size || int64(n.fs.FileSize()) != sp.size {
		return fmt.Errorf("%s: holds %d bytes and declares %d, not the declared size %d its parent gives", nd.Cid(), total, n.fs.FileSize(), sp.size)
	}
	// What tree's plan would charge: LinkCost a link. With no node
	// reached twice, the links are each followed once.
	p.links += int64(len(links))
	if p.links > (p.lim.max-EntryCost-p.size)/LinkCost {
		return overLimit(p.root, p.lim, fmt.Sprintf("writing it follows more than %d links (%s has %d), %d bytes each",
			(p.lim.max-EntryCost-p.size)/LinkCost, nd.Cid(), len(links), LinkCost))
	}
	if err := p.plan(w, data, sp.off); err != nil {
		return err
	}
	off := sp.off + int64(len(data))
	for i, l := range links {
		if _, wanted := p.want[l.Cid]; wanted || p.seen[l.Cid] {
			// Reached twice: write it all in order after the fetch.
			p.inOrder = true
			p.want, p.seen = nil, nil
			return nil
		}
		p.want[l.Cid] = span{off, int64(sizes[i]), sp.depth + 1}
		off += int64(sizes[i])
	}
	return nil
}

// plan counts a write against the declared size; with p.mu held.
func (p *placer) plan(w *[]pendingWrite, b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	p.placed += int64(len(b))
	if p.placed > p.size || off < 0 || off+int64(len(b)) > p.size {
		return fmt.Errorf("%s: more bytes than the file's declared size %d", p.out, p.size)
	}
	*w = append(*w, pendingWrite{b, off})
	return nil
}

// create makes the output file, exclusively and without following a
// symlink, and a second descriptor for direct writes where the filesystem
// has them.
func (p *placer) create(mode uint32, size int64) error {
	parent, err := os.Open(filepath.Dir(p.out))
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	defer parent.Close()
	name := filepath.Base(p.out)
	fd, err := unix.Openat(int(parent.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", p.out, err)
	}
	p.created = true
	p.f = os.NewFile(uintptr(fd), p.out)
	p.size = size
	if !p.s.cfg.DirectIO {
		return nil
	}
	// Reopening through /proc/self/fd names this very file, not whatever
	// the path points at by now.
	if dfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		if setDirect(dfd) {
			p.fd = dfd
		} else {
			unix.Close(dfd)
		}
	}
	return nil
}

// writeAt writes b at off: directly when b, off and its length are
// aligned (or b ends the file, padded past the end), else through the
// page cache.
func (p *placer) writeAt(b []byte, off int64) error {
	end := off+int64(len(b)) == p.size
	if p.fd >= 0 && off%dioAlign == 0 && (len(b)%dioAlign == 0 || end) {
		if len(b)%dioAlign == 0 && isAligned(b) {
			return pwriteFull(p.fd, p.out, b, off)
		}
		// Unaligned buffer, or the padded tail.
		buf := alignedBuf(len(b))
		copy(buf, b)
		if len(b)%dioAlign != 0 {
			p.tail.Store(true)
		}
		return pwriteFull(p.fd, p.out, buf, off)
	}
	if _, err := p.f.WriteAt(b, off); err != nil {
		return err
	}
	return nil
}

func pwriteFull(fd int, path string, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "write", Path: path, Err: err}
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// finish closes the file; it must hold every declared byte, else it is
// removed and the error says why. A file whose nodes repeat is written
// here, in order, from the blockstore.
func (p *placer) finish(ctx context.Context, fetchErr error) (err error) {
	defer func() {
		if err != nil && p.created {
			os.Remove(p.out)
		}
	}()
	err = fetchErr
	if err == nil && p.inOrder {
		err = p.writeInOrder(ctx)
	} else if err == nil && (len(p.want) > 0 || p.placed != p.size) {
		err = fmt.Errorf("%s: %d of %d bytes written when the fetch ended", p.out, p.placed, p.size)
	}
	if err == nil && p.tail.Load() {
		if terr := p.f.Truncate(p.size); terr != nil {
			err = terr
		}
	}
	if p.fd >= 0 {
		if cerr := unix.Close(p.fd); err == nil && cerr != nil {
			err = &fs.PathError{Op: "close", Path: p.out, Err: cerr}
		}
	}
	if p.f != nil {
		if cerr := p.f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	return err
}

// writeInOrder writes the whole file from offset 0 as Cat does, after
// tree's plan has checked every unique node and charged every link on
// every path; what placing wrote before it stopped is written over with
// the same bytes.
func (p *placer) writeInOrder(ctx context.Context) error {
	t := &tree{dag: p.s.local, bs: p.s.bs, root: p.root, lim: p.lim, maxDepth: p.maxDepth}
	n, err := t.get(ctx, p.root)
	if err != nil {
		return err
	}
	if err := t.plan(ctx, n, 0); err != nil {
		return err
	}
	buf := bufio.NewWriterSize(io.NewOffsetWriter(p.f, 0), 256<<10)
	fw := &fileWriter{f: buf, left: p.size}
	if err := t.writeFile(ctx, fw, n, 0); err != nil {
		return err
	}
	if err := fw.done(); err != nil {
		return err
	}
	if err := buf.Flush(); err != nil {
		return err
	}
	p.tail.Store(true) // a padded direct write may have gone past the end
	return nil
}
