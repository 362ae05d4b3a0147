package content

import (
	"context"
	"fmt"
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
	out      string
	lim      limit
	maxDepth int

	// isFile says the root came and is a file, which the placer writes.
	// The fetch's walk has ended (its walkers too) when Get reads it.
	isFile bool

	mu      sync.Mutex
	want    map[cid.Cid][]span // blocks not yet here and where they go
	seen    map[cid.Cid]bool   // blocks already placed once
	size    int64
	placed  int64
	fd      int      // O_DIRECT descriptor (Config.DirectIO), or -1
	f       *os.File // page-cache descriptor
	created bool
	tail    atomic.Bool // a padded write went past the end
}

func newPlacer(s *Store, out string, lim limit) *placer {
	return &placer{s: s, out: out, lim: lim, maxDepth: s.cfg.MaxDepth,
		want: map[cid.Cid][]span{}, seen: map[cid.Cid]bool{}, fd: -1}
}

// put takes a block the fetch just made local. The first is the root:
// when it is not a file, the placer steps aside (a directory is written by
// tree after the fetch) and every later put is a no-op.
func (p *placer) put(ctx context.Context, nd ipld.Node, isRoot bool) error {
	if isRoot {
		n, err := decode(nd)
		if err != nil {
			return err
		}
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
		p.want[nd.Cid()] = []span{{0, size, 0}}
	}
	if !p.isFile {
		return nil
	}
	p.mu.Lock()
	spans := p.want[nd.Cid()]
	delete(p.want, nd.Cid())
	p.seen[nd.Cid()] = true
	var w placement
	for _, sp := range spans {
		if err := p.place(nd, sp, &w); err != nil {
			p.mu.Unlock()
			return err
		}
	}
	p.mu.Unlock()
	return p.apply(ctx, w)
}

// placement is what one block's arrival leads to: writes (done outside
// the lock, so that walkers write in parallel) and blocks to read back.
type placement struct {
	writes []pendingWrite
	late   []lateSpan
}

type pendingWrite struct {
	b   []byte
	off int64
}

// lateSpan is a block that was placed before another parent also named it.
type lateSpan struct {
	c  cid.Cid
	sp span
}

// place plans nd's bytes at sp and records where its children go; called
// with p.mu held. Children already seen go to w.late, to be read back from
// the blockstore, since the fetch will not visit them again.
func (p *placer) place(nd ipld.Node, sp span, w *placement) error {
	if sp.depth > p.maxDepth {
		return fmt.Errorf("%s: %w (%d levels)", nd.Cid(), ErrTooDeep, p.maxDepth)
	}
	n, err := decode(nd)
	if err != nil {
		return err
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
	for _, bs := range sizes {
		total += int64(bs)
		if int64(bs) < 0 || total < 0 {
			return fmt.Errorf("%s: block sizes overflow", nd.Cid())
		}
	}
	if total != sp.size || int64(n.fs.FileSize()) != sp.size {
		return fmt.Errorf("%s: holds %d bytes and declares %d, not the declared size %d its parent gives", nd.Cid(), total, n.fs.FileSize(), sp.size)
	}
	if err := p.plan(w, data, sp.off); err != nil {
		return err
	}
	off := sp.off + int64(len(data))
	for i, l := range links {
		child := span{off, int64(sizes[i]), sp.depth + 1}
		off += child.size
		if p.seen[l.Cid] {
			w.late = append(w.late, lateSpan{l.Cid, child})
			continue
		}
		p.want[l.Cid] = append(p.want[l.Cid], child)
	}
	return nil
}

// plan counts a write against the declared size; with p.mu held.
func (p *placer) plan(w *placement, b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	p.placed += int64(len(b))
	if p.placed > p.size || off < 0 || off+int64(len(b)) > p.size {
		return fmt.Errorf("%s: more bytes than the file's declared size %d", p.out, p.size)
	}
	w.writes = append(w.writes, pendingWrite{b, off})
	return nil
}

// apply does a placement's writes, then reads back and places its late
// blocks (whose own children may be late too).
func (p *placer) apply(ctx context.Context, w placement) error {
	for {
		for _, pw := range w.writes {
			if err := p.writeAt(pw.b, pw.off); err != nil {
				return err
			}
		}
		if len(w.late) == 0 {
			return nil
		}
		late := w.late
		w = placement{}
		for _, ls := range late {
			nd, err := p.s.local.Get(ctx, ls.c)
			if err != nil {
				return fmt.Errorf("%s: read back: %w", ls.c, err)
			}
			p.mu.Lock()
			err = p.place(nd, ls.sp, &w)
			p.mu.Unlock()
			if err != nil {
				return err
			}
		}
	}
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
// removed and the error says why.
func (p *placer) finish(fetchErr error) (err error) {
	defer func() {
		if err != nil && p.created {
			os.Remove(p.out)
		}
	}()
	err = fetchErr
	if err == nil && (len(p.want) > 0 || p.placed != p.size) {
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
