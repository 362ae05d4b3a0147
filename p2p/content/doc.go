// Package content is the node's IPFS block service: a blockstore, bitswap on
// the node's libp2p host (standard protocol IDs, so Kubo and other IPFS
// implementations can trade blocks with us), UnixFS import and export,
// recursive pins, garbage collection, CAR import and export, provider
// records in the DHT, and a trustless gateway.
//
// Storage: one pebble datastore in the repo holds blocks, pins and anything
// else the node persists. Pebble, because it is the datastore Kubo itself
// now ships (go-ds-pebble), it is pure Go (no cgo), it writes through a WAL
// so a crash loses nothing that was acknowledged, and one store for the node
// keeps a block and the pin that protects it consistent on disk. A flatfs
// directory per block (Kubo's default) costs a file per 1 MiB chunk and
// an fsync each; a 64 MiB add writes one pebble batch instead.
//
// Imports: p2p (the host and DHT come in through small interfaces) and boxo.
package content
