package content

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// Walks over a stranger's DAG are bounded by what they follow, not only by
// the bytes the DAG declares: a file whose nodes each link one child many
// times reaches that child once per path, and the paths grow as
// fan-out^depth while the unique blocks stay a few KB. So:
//
//   - a link in a file node must declare at least one byte (ErrZeroSizeLink):
//     a link of size 0 writes nothing and would cost nothing to follow;
//   - every link a walk follows, on every path, costs LinkCost against the
//     same limit as the bytes (content.max_dag_mib or the caller's), so
//     the paths a walk may take are at most the limit over LinkCost;
//   - the cost is worked out per unique node, each decoded once
//     (fileMeta), before the first byte is written, and the walks that
//     then follow every path check their context as they go.

// LinkCost is what each link a walk follows costs against a limit on top
// of the bytes it writes: 1 KiB, so an honest file (1 MiB chunks, or
// Kubo's 256 KiB) pays at most 0.4% more, while a DAG of few blocks and
// many paths pays for each path.
const LinkCost = 1 << 10

// ErrZeroSizeLink is a file node's link that declares 0 bytes: no encoder
// makes one (an empty file has no links), and following it writes nothing.
var ErrZeroSizeLink = errors.New("a file node's link declares 0 bytes")

// fileMeta is what writing one file node costs, over every path below it.
type fileMeta struct {
	size   int64 // bytes, as declared and checked against the children
	links  int64 // links followed, each repeated link again
	height int   // levels below it
}

// overLimit is the refusal of a walk that would cost more than lim.
func overLimit(root cid.Cid, lim limit, what string) error {
	return fmt.Errorf("%s: %w: %s, over %s (%d MiB); raise %s, or fetch a smaller DAG",
		root, ErrTooBig, what, lim.name, lim.max>>20, lim.name)
}

// linkBudget is how many more links the tree's limit lets a walk follow.
func (t *tree) linkBudget() int64 {
	left := t.lim.max - t.used
	if left < 0 {
		return 0
	}
	return left / LinkCost
}

// tooManyLinks refuses a file at node c whose paths cross the limit.
func (t *tree) tooManyLinks(c cid.Cid) error {
	return overLimit(t.root, t.lim, fmt.Sprintf("writing it follows more than %d links through %s, %d bytes each", t.linkBudget(), c, LinkCost))
}

// checkFile checks a file node and everything below it, each unique node
// once: every link declares at least one byte and exactly what its child
// holds, every node holds what it declares, no path is deeper than
// maxDepth, and the links over all paths stay within the tree's limit.
func (t *tree) checkFile(ctx context.Context, n node, depth int) (fileMeta, error) {
	c := n.nd.Cid()
	if m, ok := t.files[c]; ok {
		return m, t.checkHeight(depth, m)
	}
	if err := ctx.Err(); err != nil {
		return fileMeta{}, err
	}
	if depth > t.maxDepth {
		return fileMeta{}, fmt.Errorf("%s: %w (%d levels)", t.root, ErrTooDeep, t.maxDepth)
	}
	if n.kind != kindFile {
		return fileMeta{}, fmt.Errorf("%s: a file links a UnixFS %s", c, n.fs.Type())
	}
	var m fileMeta
	if n.fs == nil { // a raw leaf
		m.size = int64(len(n.nd.RawData()))
	} else {
		data, sizes, links := n.fs.Data(), n.fs.BlockSizes(), n.nd.Links()
		if len(sizes) != len(links) {
			return fileMeta{}, fmt.Errorf("%s: %d block sizes for %d links", c, len(sizes), len(links))
		}
		m.size = int64(len(data))
		budget := t.linkBudget()
		for i, l := range links {
			bs := int64(sizes[i])
			if sizes[i] == 0 {
				return fileMeta{}, fmt.Errorf("%s: %w (link %d of %d, to %s)", c, ErrZeroSizeLink, i+1, len(links), l.Cid)
			}
			if m.size += bs; bs < 0 || m.size < 0 {
				return fileMeta{}, fmt.Errorf("%s: block sizes overflow", c)
			}
			cm, err := t.childMeta(ctx, l.Cid, depth+1)
			if err != nil {
				return fileMeta{}, err
			}
			if cm.size != bs {
				return fileMeta{}, fmt.Errorf("%s: holds %d bytes, not the declared size %d its parent %s gives", l.Cid, cm.size, bs, c)
			}
			// Both terms are at most budget+1, so this cannot overflow.
			if m.links += 1 + cm.links; m.links > budget {
				return fileMeta{}, t.tooManyLinks(c)
			}
			m.height = max(m.height, cm.height+1)
		}
		if m.size != int64(n.fs.FileSize()) {
			return fileMeta{}, fmt.Errorf("%s: holds %d bytes and declares %d", c, m.size, n.fs.FileSize())
		}
	}
	if t.files == nil {
		t.files = map[cid.Cid]fileMeta{}
	}
	t.files[c] = m
	return m, t.checkHeight(depth, m)
}

func (t *tree) checkHeight(depth int, m fileMeta) error {
	if depth+m.height > t.maxDepth {
		return fmt.Errorf("%s: %w (%d levels)", t.root, ErrTooDeep, t.maxDepth)
	}
	return nil
}

// childMeta is checkFile for a linked child; a raw leaf is only looked up
// for its size, not read (its bytes are checked against it as they are
// written).
func (t *tree) childMeta(ctx context.Context, c cid.Cid, depth int) (fileMeta, error) {
	if m, ok := t.files[c]; ok {
		return m, t.checkHeight(depth, m)
	}
	if t.bs != nil && c.Type() == cid.Raw {
		size, err := t.bs.GetSize(ctx, c)
		if err != nil {
			return fileMeta{}, fmt.Errorf("%s: %w", c, err)
		}
		m := fileMeta{size: int64(size)}
		if t.files == nil {
			t.files = map[cid.Cid]fileMeta{}
		}
		t.files[c] = m
		return m, t.checkHeight(depth, m)
	}
	child, err := t.get(ctx, c)
	if err != nil {
		return fileMeta{}, err
	}
	return t.checkFile(ctx, child, depth)
}

// pathCost is what a walk that follows every path under c costs (the
// gateway's CAR with duplicates): each block's bytes once per path that
// reaches it, and linkCost per link; each unique node is read once, and a
// cost over budget is refused.
func pathCost(ctx context.Context, dag ipld.NodeGetter, bs sizer, c cid.Cid, linkCost, budget int64, maxDepth int, memo map[cid.Cid]int64, depth int) (int64, error) {
	if n, ok := memo[c]; ok {
		return n, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if depth > maxDepth {
		return 0, fmt.Errorf("%s: %w (%d levels)", c, ErrTooDeep, maxDepth)
	}
	var n int64
	if c.Type() == cid.Raw {
		size, err := bs.GetSize(ctx, c)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", c, err)
		}
		n = int64(size)
	} else {
		nd, err := dag.Get(ctx, c)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", c, err)
		}
		n = int64(len(nd.RawData()))
		for _, l := range nd.Links() {
			k, err := pathCost(ctx, dag, bs, l.Cid, linkCost, budget, maxDepth, memo, depth+1)
			if err != nil {
				return 0, err
			}
			// All terms are at most budget, so this cannot overflow.
			if n += linkCost + k; n > budget {
				return 0, fmt.Errorf("%s: %w: following every path under it costs more than %d MiB (its blocks once per path, %d bytes a link)", c, ErrTooBig, budget>>20, linkCost)
			}
		}
	}
	if n > budget {
		return 0, fmt.Errorf("%s: %w: a block over %d MiB", c, ErrTooBig, budget>>20)
	}
	memo[c] = n
	return n, nil
}
