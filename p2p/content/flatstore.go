package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/datastore/dshelp"
	bl "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	mh "github.com/multiformats/go-multihash"
	"golang.org/x/sys/unix"
)

// flatMin is the size from which a block is a file of its own: file data
// (1 MiB raw leaves, Kubo's 256 KiB chunks). Smaller blocks (directory and
// file nodes) stay in the datastore with the pins.
const flatMin = 64 << 10

// flatSyncInterval is how often blocks written since the last sync are
// made durable in the background.
const flatSyncInterval = 5 * time.Second

// recoverySlack widens, after a crash, the window of files checked
// against their hashes, for a clock that stepped back.
const recoverySlack = 2 * time.Minute

// markerName is the file that says blocks were written and not yet synced.
const markerName = "unsynced"

// flatStore keeps blocks of flatMin bytes or more as one file each, written
// once, and the rest in the datastore's blockstore (which also still holds
// any large block an older version stored there: reads fall back to it).
//
// Why: pebble wrote every large block twice (its write-ahead log, then a
// blob file at flush), copied it into a batch and a memtable on the way,
// and that was most of bitswap's and add's CPU. A file costs one write
// (the copy into the page cache) and a rename.
//
// Block files go through the page cache, or, with Config.DirectIO and
// where the filesystem allows, are written and read with O_DIRECT (see
// direct.go), so that a block's bytes are on the device when its write
// returns and the background sync below makes only the metadata (the
// file's size and its name) durable.
//
// Crash safety, and what it trades: a block is written to a temporary
// file and renamed into place, so a reader never sees a partial block and
// a daemon that is killed loses nothing the kernel already holds. Blocks
// are not fsynced one by one (as Kubo's pebble, unlike its flatfs, does
// not sync each write); instead a marker file is made durable before the
// first unsynced write, and a background sync (every flatSyncInterval,
// and on Close) fsyncs what was written and then removes the marker. After
// a power cut or kernel crash the marker is still there: on open, every
// block file modified since the marker (less recoverySlack) is hashed
// again and removed if it does not match its name, so a block lost in the
// crash is simply missing and is fetched again when wanted. A pin made in
// the last seconds before such a crash may then point at a missing
// block; Store checks every pin after a recovery that removed blocks, logs
// each incomplete one and fetches it again in the background, and Verify
// reports them at any time (GC refuses to run while a pin is incomplete,
// rather than collect blocks below a missing node). The alternative, an
// fsync of every block before Add or a fetch returns, costs the disk's
// write time on every add (this machine's disk writes 600 MB/s, slower
// than the rest of add); pebble's write-ahead log, which gave pins and
// blocks one order, cost a second write of every block.
type flatStore struct {
	dir   string
	small blocks.Blockstore
	log   *slog.Logger

	mu       sync.Mutex
	dirty    bool            // the marker exists
	pending  []string        // block files written since the last sync
	inflight int             // writes between marking dirty and pending
	shards   map[string]bool // shard directories known to exist
	syncDirs map[string]bool // shard directories with new entries

	buffered atomic.Bool   // no direct I/O: asked for none, or the filesystem refused it
	tmpSeq   atomic.Uint64 // names temporary files

	syncMu    sync.Mutex // one sync at a time
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// openFlatStore opens (creating) dir, recovering from an unclean shutdown
// first; removed is how many corrupt or partial blocks it deleted.
func openFlatStore(dir string, small blocks.Blockstore, direct bool, log *slog.Logger) (*flatStore, int, error) {
	if err := os.MkdirAll(filepath.Join(dir, ".tmp"), 0o755); err != nil {
		return nil, 0, fmt.Errorf("block files: %w", err)
	}
	f := &flatStore{dir: dir, small: small, log: log, shards: map[string]bool{}, syncDirs: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	f.buffered.Store(!direct)
	removed, err := f.recover()
	if err != nil {
		return nil, 0, fmt.Errorf("block files: recover: %w", err)
	}
	go f.syncLoop()
	return f, removed, nil
}

// recover removes temporary files left by a killed daemon and, when the
// marker says blocks were written but not synced, hashes every block file
// modified since then and removes those that do not match.
func (f *flatStore) recover() (int, error) {
	tmps, err := os.ReadDir(filepath.Join(f.dir, ".tmp"))
	if err != nil {
		return 0, err
	}
	for _, e := range tmps {
		os.Remove(filepath.Join(f.dir, ".tmp", e.Name()))
	}
	marker := filepath.Join(f.dir, markerName)
	st, err := os.Stat(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	since := st.ModTime().Add(-recoverySlack)
	removed, checked := 0, 0
	shards, err := os.ReadDir(f.dir)
	if err != nil {
		return 0, err
	}
	for _, sh := range shards {
		if !sh.IsDir() || strings.HasPrefix(sh.Name(), ".") {
			continue
		}
		sdir := filepath.Join(f.dir, sh.Name())
		files, err := os.ReadDir(sdir)
		if err != nil {
			return removed, err
		}
		for _, e := range files {
			info, err := e.Info()
			if err != nil || info.ModTime().Before(since) {
				continue
			}
			checked++
			path := filepath.Join(sdir, e.Name())
			if ok, _ := verifyFile(path, e.Name()); !ok {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return removed, err
				}
				removed++
			}
		}
		if err := syncDir(sdir); err != nil {
			return removed, err
		}
	}
	if err := os.Remove(marker); err != nil {
		return removed, err
	}
	if err := syncDir(f.dir); err != nil {
		return removed, err
	}
	f.log.Warn("block files were not synced when the daemon stopped; checked the recent ones",
		"checked", checked, "removed", removed)
	return removed, nil
}

// verifyFile says whether the file holds the block its name says.
func verifyFile(path, name string) (bool, error) {
	h, ok := nameHash(name)
	if !ok {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	dec, err := mh.Decode(h)
	if err != nil {
		return false, nil
	}
	sum, err := mh.Sum(data, dec.Code, dec.Length)
	if err != nil {
		return false, nil
	}
	return bytes.Equal(sum, h), nil
}

// fileName is a block's file name: the datastore key's base32 of its
// multihash, as flatfs names them.
func fileName(h mh.Multihash) string {
	return dshelp.MultihashToDsKey(h).String()[1:] + ".data"
}

func nameHash(name string) (mh.Multihash, bool) {
	key, ok := strings.CutSuffix(name, ".data")
	if !ok {
		return nil, false
	}
	h, err := dshelp.DsKeyToMultihash(ds.RawKey("/" + key))
	return h, err == nil
}

// shardOf is the next-to-last two characters of the key, flatfs's default.
func shardOf(name string) string {
	key := strings.TrimSuffix(name, ".data")
	if len(key) < 3 {
		return "__"
	}
	return key[len(key)-3 : len(key)-1]
}

func (f *flatStore) path(h mh.Multihash) (string, string) {
	name := fileName(h)
	return filepath.Join(f.dir, shardOf(name), name), name
}

func exists(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil
}

func (f *flatStore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if p, _ := f.path(c.Hash()); exists(p) {
		return true, nil
	}
	return f.small.Has(ctx, c)
}

func (f *flatStore) Get(ctx context.Context, c cid.Cid) (bl.Block, error) {
	p, _ := f.path(c.Hash())
	data, err := f.read(p)
	if errors.Is(err, fs.ErrNotExist) {
		return f.small.Get(ctx, c)
	}
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", c, err)
	}
	return bl.NewBlockWithCid(data, c)
}

func (f *flatStore) read(path string) ([]byte, error) {
	if f.buffered.Load() {
		return os.ReadFile(path)
	}
	return readFile(path)
}

func (f *flatStore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	p, _ := f.path(c.Hash())
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err == nil {
		return int(st.Size), nil
	}
	return f.small.GetSize(ctx, c)
}

func (f *flatStore) Put(ctx context.Context, b bl.Block) error {
	if len(b.RawData()) < flatMin {
		return f.small.Put(ctx, b)
	}
	return f.put(ctx, b)
}

// putWorkers is how many block files PutMany writes at once: a direct
// write waits for the device, which takes several at a time.
const putWorkers = 8

func (f *flatStore) PutMany(ctx context.Context, bs []bl.Block) error {
	var small, large []bl.Block
	for _, b := range bs {
		if len(b.RawData()) < flatMin {
			small = append(small, b)
		} else {
			large = append(large, b)
		}
	}
	work := make(chan bl.Block)
	errs := make(chan error, putWorkers)
	var wg sync.WaitGroup
	for range min(putWorkers, len(large)) {
		wg.Go(func() {
			var first error
			for b := range work {
				if first == nil {
					first = f.put(ctx, b)
				}
			}
			errs <- first
		})
	}
	for _, b := range large {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	if len(small) > 0 {
		return f.small.PutMany(ctx, small)
	}
	return nil
}

func (f *flatStore) put(ctx context.Context, b bl.Block) error {
	path, name := f.path(b.Cid().Hash())
	if exists(path) {
		return nil
	}
	if has, err := f.small.Has(ctx, b.Cid()); err == nil && has {
		return nil // stored by an older version
	}
	if err := f.begin(); err != nil {
		return err
	}
	err := f.write(path, name, b.RawData())
	f.mu.Lock()
	f.inflight--
	if err == nil {
		f.pending = append(f.pending, path)
		f.syncDirs[filepath.Dir(path)] = true
	}
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store block %s: %w", b.Cid(), err)
	}
	return nil
}

// begin makes the marker durable before the first write since a sync.
func (f *flatStore) begin() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirty {
		if err := writeSynced(filepath.Join(f.dir, markerName), []byte(strconv.FormatInt(time.Now().Unix(), 10)+"\n")); err != nil {
			return fmt.Errorf("block files: marker: %w", err)
		}
		if err := syncDir(f.dir); err != nil {
			return fmt.Errorf("block files: marker: %w", err)
		}
		f.dirty = true
	}
	f.inflight++
	return nil
}

// write stores data at path through a temporary file and a rename, so
// that path holds the whole block or nothing.
func (f *flatStore) write(path, name string, data []byte) error {
	// The temporary sits beside its block: creating and renaming it then
	// lock only that shard's directory, not one that every write shares.
	// A killed daemon's temporaries are recent files whose names are no
	// block's, which recovery removes (a write sets the marker first).
	shard := filepath.Dir(path)
	if err := f.shard(shard); err != nil {
		return err
	}
	tmp := filepath.Join(shard, ".tmp-"+name+"."+strconv.FormatUint(f.tmpSeq.Add(1), 10))
	direct, err := writeNew(tmp, data, !f.buffered.Load())
	if !direct {
		f.buffered.Store(true) // no direct I/O on this filesystem
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// shard makes sure a shard directory exists. The new entry in the
// parent is made durable by the next Sync, with the blocks in it: synced
// here, each new shard held up every create behind it, and with 1024
// shards nearly every block of a fresh repo's first transfer made one
// (that cost more CPU than writing the data).
func (f *flatStore) shard(dir string) error {
	f.mu.Lock()
	known := f.shards[dir]
	f.mu.Unlock()
	if known {
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	f.mu.Lock()
	f.shards[dir] = true
	f.syncDirs[f.dir] = true
	f.mu.Unlock()
	return nil
}

func (f *flatStore) DeleteBlock(ctx context.Context, c cid.Cid) error {
	p, _ := f.path(c.Hash())
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete block %s: %w", c, err)
	}
	return f.small.DeleteBlock(ctx, c)
}

// AllKeysChan lists the datastore's blocks, then the block files, as raw
// CIDs (the store is keyed by multihash).
func (f *flatStore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	smallKeys, err := f.small.AllKeysChan(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan cid.Cid, 256)
	go func() {
		defer close(out)
		for c := range smallKeys {
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
		shards, err := os.ReadDir(f.dir)
		if err != nil {
			f.log.Error("list block files", "err", err)
			return
		}
		for _, sh := range shards {
			if !sh.IsDir() || strings.HasPrefix(sh.Name(), ".") {
				continue
			}
			files, err := os.ReadDir(filepath.Join(f.dir, sh.Name()))
			if err != nil {
				f.log.Error("list block files", "err", err)
				return
			}
			for _, e := range files {
				h, ok := nameHash(e.Name())
				if !ok {
					continue
				}
				select {
				case out <- cid.NewCidV1(cid.Raw, h):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Sync makes every block written so far durable and, when no write is
// under way, removes the marker.
func (f *flatStore) Sync() error {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	f.mu.Lock()
	if !f.dirty {
		f.mu.Unlock()
		return nil
	}
	pending, dirs := f.pending, f.syncDirs
	f.pending, f.syncDirs = nil, map[string]bool{}
	start := time.Now()
	f.mu.Unlock()

	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	// A few at a time: each fdatasync waits for the disk.
	work := make(chan string)
	var wg sync.WaitGroup
	var emu sync.Mutex
	for range 4 {
		wg.Go(func() {
			for p := range work {
				if err := syncFile(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					emu.Lock()
					keep(err)
					emu.Unlock()
				}
			}
		})
	}
	for _, p := range pending {
		work <- p
	}
	close(work)
	wg.Wait()
	for d := range dirs {
		keep(syncDir(d))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if firstErr != nil {
		// Try these again next time.
		f.pending = append(f.pending, pending...)
		for d := range dirs {
			f.syncDirs[d] = true
		}
		return fmt.Errorf("block files: sync: %w", firstErr)
	}
	marker := filepath.Join(f.dir, markerName)
	if len(f.pending) > 0 || f.inflight > 0 {
		// Writes came in meanwhile: what is older than start is safe, so
		// a recovery need only check from there.
		if err := os.Chtimes(marker, start, start); err != nil {
			return fmt.Errorf("block files: marker: %w", err)
		}
		return syncFile(marker)
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("block files: marker: %w", err)
	}
	f.dirty = false
	return syncDir(f.dir)
}

func (f *flatStore) syncLoop() {
	defer close(f.done)
	t := time.NewTicker(flatSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		if err := f.Sync(); err != nil {
			f.log.Error("sync block files", "err", err)
		}
	}
}

// Close stops the background sync and syncs what is left.
func (f *flatStore) Close() error {
	f.closeOnce.Do(func() { close(f.stop) })
	<-f.done
	return f.Sync()
}

func syncFile(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fdatasync(fd); err != nil {
		return &fs.PathError{Op: "fdatasync", Path: path, Err: err}
	}
	return nil
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}
