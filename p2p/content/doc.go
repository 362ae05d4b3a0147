// Package content is the node's IPFS block service: a blockstore, bitswap on
// the node's libp2p host (standard protocol IDs, so Kubo and other IPFS
// implementations can trade blocks with us), UnixFS import and export,
// recursive pins, garbage collection, CAR import and export, provider
// records in the DHT, and a trustless gateway.
//
// Storage: one pebble datastore in the repo holds pins (/pins) and small
// blocks (/blocks: directory and file nodes), as Kubo lays them out (the DHT
// keeps its records in memory); blocks of 64 KiB and more (file data) are
// files of their own under the datastore's blocks/ directory, named and
// sharded as Kubo's flatfs names them. Pebble, because Kubo itself ships it
// (go-ds-pebble), it is pure Go (no cgo), and its write-ahead log means a
// daemon crash loses nothing already written. It wrote every large block
// twice, though (the log, then a blob file), and copied it into a batch
// and a memtable first, which was most of what bitswap and add cost; a
// block file is written once, through a temporary file and a rename, and
// through the page cache, or with O_DIRECT when Config.DirectIO says so
// (as are then the files a Get writes; see direct.go for when each is
// faster). Block files are synced in the background and on Close, and a marker says when
// some are not: after a power cut the recent ones are checked against
// their hashes, a lost one is fetched again when wanted, and a pin that
// lost a block is reported and fetched again (see flatStore for the
// trade-off). Large blocks an older version kept in pebble stay readable
// there.
//
// A Get of one file writes each block at its offset as bitswap delivers
// it, in arrival order, straight from the buffer bitswap decoded (see
// placer); a file in which some node is reached twice (a file of zeros
// repeats its leaf) is written in order once the fetch is done, and a
// directory from the blockstore once all of it is here.
//
// What peers send is not trusted: every block is verified against its CID
// once, as bitswap decodes it; a file's offsets come from its nodes' block
// sizes, each node checked against what its parent declares for it, so no
// write lands outside the declared size; a link in a file node that
// declares 0 bytes is refused (ErrZeroSizeLink), so every path through a
// file writes at least a byte. A Get or Cat counts what it would write
// (every repeated link again, EntryCost per entry, and LinkCost for every
// link followed on every path, worked out once per unique node) against
// content.max_dag_mib or the caller's GetOptions.MaxBytes and refuses
// before writing anything (a Get placing blocks as they come refuses as
// soon as it sees the limit crossed, and removes what it wrote); so a DAG
// of a few blocks and many paths costs what its paths cost, its walk
// holds one entry per unique node or link, never one per path, and each
// walk checks its context as it goes. The fetch and the CAR export visit
// each block once and charge its bytes and LinkCost a link; the gateway
// costs a CAR that follows every path (dups=y, dag-scope=entity) before
// serving it (see walk.go). It writes directories relative to their
// descriptors (openat, mkdirat, symlinkat, O_EXCL|O_NOFOLLOW), refuses
// duplicate and unsafe names, keeps symlinks as symlinks and never
// follows one. A job's result is pinned with an expiry
// (Config.ResultTTL), swept and collected unless someone pins it for
// good.
//
// Imports: p2p (the host and DHT come in through small interfaces) and boxo.
package content
