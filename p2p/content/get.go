package content

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multicodec"
)

// Errors a fetch ends with; each names the timeout or limit that fired.
var (
	ErrNoProviders      = errors.New("no providers found (find timeout)")
	ErrFirstBlock       = errors.New("first block not received (first-block timeout)")
	ErrStalled          = errors.New("transfer stalled (stall timeout)")
	ErrTooBig           = errors.New("DAG over the size limit")
	ErrTooDeep          = errors.New("DAG over the depth limit")
	ErrUnsupportedCodec = errors.New("unsupported codec")
)

// FetchStats is what a fetch did.
type FetchStats struct {
	Blocks  int   `json:"blocks"`
	Bytes   int64 `json:"bytes"`
	Fetched int   `json:"fetched"` // blocks that came from the network
	// Total is the DAG's size as its root declares it (the blocks' bytes,
	// comparable with Bytes); zero until the root is here.
	Total int64 `json:"total,omitempty"`
	// Peers is how many peers sent blocks so far.
	Peers int `json:"peers,omitempty"`
	// From is those peers, in the order their first block came (shared
	// between calls: read it, do not change it).
	From []peer.ID `json:"from,omitempty"`
	// Elapsed is the time since the fetch began; Bytes/Elapsed is its rate.
	Elapsed time.Duration `json:"elapsed_ns,omitempty"`
}

// checkCodec accepts the codecs UnixFS is made of.
func checkCodec(c cid.Cid) error {
	switch multicodec.Code(c.Type()) {
	case multicodec.DagPb, multicodec.Raw:
		return nil
	}
	return fmt.Errorf("%s: codec %s: %w (want dag-pb or raw)", c, multicodec.Code(c.Type()), ErrUnsupportedCodec)
}

// Fetch makes every block of the DAG under root local, fetching what is
// missing. Blocks already here are never fetched again, so an interrupted
// fetch resumes where it stopped. progress, when set, gets the running
// stats, possibly from several goroutines at once.
func (s *Store) Fetch(ctx context.Context, root cid.Cid, progress func(FetchStats)) (FetchStats, error) {
	return s.fetch(ctx, root, progress, s.limit(GetOptions{}), nil)
}

// sink takes each block a fetch has made local, the root first, from
// many goroutines at once; an error ends the fetch.
type sink interface {
	put(ctx context.Context, nd ipld.Node, isRoot bool) error
}

// fetch is Fetch with a limit; blocks it walks are also given to to, when
// set.
func (s *Store) fetch(ctx context.Context, root cid.Cid, progress func(FetchStats), lim limit, to sink) (FetchStats, error) {
	if err := checkCodec(root); err != nil {
		return FetchStats{}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	f := &fetchRun{s: s, root: root, lim: lim, to: to, progress: progress, cancel: cancel, began: time.Now(),
		depth: map[cid.Cid]int{root: 0}, from: map[peer.ID]bool{}}
	f.lastNano.Store(f.began.UnixNano())
	if has, _ := s.bs.Has(ctx, root); !has {
		s.watchProviders(ctx, cancel, root, &f.gotFirst)
	}
	go f.watchdog(ctx)
	f.sess = merkledag.NewSession(ctx, s.dag)
	// 64 walkers keep a bitswap session's 64 live wants busy.
	err := merkledag.Walk(ctx, f.visit, root, cid.NewSet().Visit, merkledag.Concurrency(64))
	stats := f.snapshot()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return stats, cause
	}
	if err != nil {
		return stats, fmt.Errorf("fetch %s: %w", root, err)
	}
	return stats, nil
}

// fetchRun is one fetch: what its walkers, its watchdog and its progress
// share.
type fetchRun struct {
	s        *Store
	root     cid.Cid
	lim      limit
	to       sink
	progress func(FetchStats)
	cancel   context.CancelCauseFunc
	began    time.Time
	sess     ipld.NodeGetter
	lastNano atomic.Int64 // when the last block came
	gotFirst atomic.Bool

	mu    sync.Mutex
	stats FetchStats
	depth map[cid.Cid]int
	links int64 // in the blocks fetched, each costs LinkCost
	from  map[peer.ID]bool
}

func (f *fetchRun) snapshot() FetchStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// watchdog is one for the first block and for stalls afterwards; it also
// heals the swarm when blocks stop coming for HealAfter.
func (f *fetchRun) watchdog(ctx context.Context) {
	cfg := f.s.cfg
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	nextHeal := start.Add(cfg.HealAfter)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := time.Now(); cfg.HealAfter > 0 && now.After(nextHeal) && now.Sub(time.Unix(0, f.lastNano.Load())) > cfg.HealAfter {
			nextHeal = now.Add(5 * time.Second)
			go f.s.heal(ctx)
		}
		if !f.gotFirst.Load() {
			if time.Since(start) > cfg.FirstBlockTimeout {
				f.cancel(fmt.Errorf("%s: %w after %s", f.root, ErrFirstBlock, cfg.FirstBlockTimeout))
				return
			}
			continue
		}
		if since := time.Since(time.Unix(0, f.lastNano.Load())); since > cfg.StallTimeout {
			n := f.snapshot().Blocks
			f.cancel(fmt.Errorf("%s: %w: no block for %s after %d blocks", f.root, ErrStalled, cfg.StallTimeout, n))
			return
		}
	}
}

// visit is the walk's step: it gets block c, counts it against the
// limits, hands it on and returns its links.
func (f *fetchRun) visit(ctx context.Context, c cid.Cid) ([]*ipld.Link, error) {
	if err := checkCodec(c); err != nil {
		return nil, err
	}
	local, _ := f.s.bs.Has(ctx, c)
	nd, err := f.sess.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	f.gotFirst.Store(true)
	f.lastNano.Store(time.Now().UnixNano())
	st, err := f.count(c, nd, local)
	if err != nil {
		return nil, err
	}
	if f.to != nil {
		if err := f.to.put(ctx, nd, c == f.root); err != nil {
			return nil, err
		}
	}
	if f.progress != nil {
		f.progress(st)
	}
	return nd.Links(), nil
}

// count adds block c to the stats and checks the size and depth limits;
// it returns the stats with c counted.
func (f *fetchRun) count(c cid.Cid, nd ipld.Node, local bool) (FetchStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stats := &f.stats
	stats.Blocks++
	stats.Bytes += int64(len(nd.RawData()))
	if c == f.root {
		if size, err := nd.Size(); err == nil {
			stats.Total = int64(size)
		}
	}
	if !local {
		stats.Fetched++
		if p, ok := f.s.senders.take(c); ok && !f.from[p] {
			f.from[p] = true
			stats.Peers = len(f.from)
			stats.From = append(stats.From, p)
		}
	}
	stats.Elapsed = time.Since(f.began)
	d := f.depth[c]
	f.links += int64(len(nd.Links()))
	if stats.Bytes > f.lim.max || f.links > (f.lim.max-stats.Bytes)/LinkCost {
		return *stats, overLimit(f.root, f.lim, fmt.Sprintf("its blocks hold more than %d MiB (%d bytes, and %d links at %d bytes each)", f.lim.max>>20, stats.Bytes, f.links, LinkCost))
	}
	if len(nd.Links()) > 0 && d+1 > f.s.cfg.MaxDepth {
		return *stats, fmt.Errorf("%s: %w (%d levels)", f.root, ErrTooDeep, f.s.cfg.MaxDepth)
	}
	for _, l := range nd.Links() {
		f.depth[l.Cid] = d + 1
	}
	return *stats, nil
}

// watchProviders searches the DHT while bitswap asks connected peers; if the
// search ends empty-handed and no block came, the fetch fails with
// ErrNoProviders rather than waiting for the first-block timeout.
func (s *Store) watchProviders(ctx context.Context, cancel context.CancelCauseFunc, root cid.Cid, gotFirst *atomic.Bool) {
	if s.routing == nil {
		return
	}
	go func() {
		fctx, fcancel := context.WithTimeout(ctx, s.cfg.FindTimeout)
		defer fcancel()
		found := 0
		for ai := range s.routing.FindProvidersAsync(fctx, root, 3) {
			found++
			// Bitswap sends its wants to every peer it connects to; its own
			// provider search may have run before this record existed.
			if ai.ID != s.host.ID() && len(ai.Addrs) > 0 {
				go s.host.Connect(ctx, ai)
			}
		}
		if found == 0 && ctx.Err() == nil && !gotFirst.Load() {
			// Connected peers may still answer; give them a moment.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if !gotFirst.Load() {
				cancel(fmt.Errorf("%s: %w: the DHT search (up to %s) and connected peers found none", root, ErrNoProviders, s.cfg.FindTimeout))
			}
		}
	}()
}

// GetOptions shape one Get or Cat. The zero value uses the Store's limits.
type GetOptions struct {
	// MaxBytes caps what the call fetches (unique blocks) and writes (every
	// file's bytes, each repeated link again, plus EntryCost per entry);
	// zero means the Store's MaxDAGBytes. A job passes its disk budget.
	MaxBytes int64
	// LimitName names MaxBytes in errors, e.g. "resources.disk_mib"; empty
	// means the Store's limit, "content.max_dag_mib".
	LimitName string
	// Progress, when set, gets the running fetch stats.
	Progress func(FetchStats)
}

func (s *Store) limit(opts GetOptions) limit {
	if opts.MaxBytes > 0 {
		name := opts.LimitName
		if name == "" {
			name = "the caller's limit"
		}
		return limit{opts.MaxBytes, name}
	}
	return limit{s.cfg.MaxDAGBytes, MaxDAGSetting}
}

// MaxDAGSetting is the node's config key for Config.MaxDAGBytes, named in
// the errors that limit gives.
const MaxDAGSetting = "content.max_dag_mib"

// Get fetches root and writes it to out: a file, or a directory tree.
func (s *Store) Get(ctx context.Context, root cid.Cid, out string, progress func(FetchStats)) (FetchStats, error) {
	return s.GetWith(ctx, root, out, GetOptions{Progress: progress})
}

// GetWith is Get with per-call options. Nothing is written when the DAG
// would write more than the limit; out must not exist.
//
// A file is written while the DAG is fetched, each block at its offset as
// it arrives (see placer); a directory is written from the blockstore once
// the fetch has made all of it local.
func (s *Store) GetWith(ctx context.Context, root cid.Cid, out string, opts GetOptions) (FetchStats, error) {
	if _, err := os.Lstat(out); err == nil {
		return FetchStats{}, fmt.Errorf("output %s exists; not overwriting it (remove it or give another -o)", out)
	}
	lim := s.limit(opts)
	pl := newPlacer(s, out, lim)
	st, err := s.fetch(ctx, root, opts.Progress, lim, pl)
	if pl.isFile { // the root came, and the placer has been writing it
		if ferr := pl.finish(ctx, err); err == nil && ferr != nil {
			return st, fmt.Errorf("get %s: %w", root, ferr)
		}
		return st, err
	}
	if err != nil {
		return st, err
	}
	t := &tree{dag: s.local, bs: s.bs, root: root, lim: lim, maxDepth: s.cfg.MaxDepth, direct: s.cfg.DirectIO}
	if err := t.write(ctx, out); err != nil {
		return st, fmt.Errorf("get %s: %w", root, err)
	}
	return st, nil
}

// Cat fetches a file and copies its bytes to w.
func (s *Store) Cat(ctx context.Context, root cid.Cid, w io.Writer) error {
	return s.CatWith(ctx, root, w, GetOptions{})
}

// CatWith is Cat with per-call options; the file's declared size is
// checked against the limit before the first byte.
func (s *Store) CatWith(ctx context.Context, root cid.Cid, w io.Writer, opts GetOptions) error {
	lim := s.limit(opts)
	if _, err := s.fetch(ctx, root, opts.Progress, lim, nil); err != nil {
		return err
	}
	t := &tree{dag: s.local, bs: s.bs, root: root, lim: lim, maxDepth: s.cfg.MaxDepth}
	n, err := t.get(ctx, root)
	if err != nil {
		return err
	}
	if n.kind != kindFile {
		return fmt.Errorf("%s is a directory or symlink: use get", root)
	}
	if err := t.plan(ctx, n, 0); err != nil {
		return err
	}
	// Small leaves and inline data go out together.
	buf := bufio.NewWriterSize(w, 64<<10)
	fw := &fileWriter{f: buf, left: n.size()}
	if err := t.writeFile(ctx, fw, n, 0); err != nil {
		return err
	}
	if err := fw.done(); err != nil {
		return fmt.Errorf("cat %s: %w", root, err)
	}
	return buf.Flush()
}
