// Package content is the node's IPFS block service: a blockstore, bitswap on
// the node's libp2p host (standard protocol IDs, so Kubo and other IPFS
// implementations can trade blocks with us), UnixFS import and export,
// recursive pins, garbage collection, CAR import and export, provider
// records in the DHT, and a trustless gateway.
//
// Storage: one pebble datastore in the repo holds blocks (/blocks) and pins
// (/pins), as Kubo lays them out (the DHT keeps its records in memory). Pebble,
// because Kubo itself ships it (go-ds-pebble), it is pure Go (no cgo), its
// write-ahead log means a daemon crash loses nothing already written (like
// Kubo it does not fsync every write, so a power cut can lose the last
// moments), and one store for the node keeps a block and the pin that
// protects it in one place. flatfs, Kubo's other choice, costs a file and a
// rename per 1 MiB chunk. Pebble's defaults suit small values, though:
// OpenDatastore separates block values into blob files that compactions do
// not rewrite, which doubled bitswap's and add's throughput here.
//
// What peers send is not trusted: every block is verified against its CID
// once, as bitswap decodes it; a Get counts what it would write (every
// repeated link again, EntryCost per entry) against content.max_dag_mib or
// the caller's GetOptions.MaxBytes and refuses before writing anything; it
// writes directories relative to their descriptors (openat, mkdirat,
// symlinkat, O_EXCL|O_NOFOLLOW), refuses duplicate and unsafe names, keeps
// symlinks as symlinks and never follows one. A job's result is pinned
// with an expiry (Config.ResultTTL), swept and collected unless someone
// pins it for good.
//
// Imports: p2p (the host and DHT come in through small interfaces) and boxo.
package content
