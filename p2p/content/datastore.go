package content

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// OpenDatastore opens the node's one datastore (small blocks, pins and
// records) at dir, and marks dir/blocks as the place where a Store over it
// keeps blocks of 64 KiB and more, one file each (see flatStore), with pebble tuned for a block store: most values are
// whole blocks of up to 1 MiB, which pebble's defaults would copy again at
// every compaction. Blocks go to blob files (value separation) that
// compactions leave alone, and memtables hold a few dozen blocks rather
// than four, uncompressed. An existing datastore is upgraded in place to the format that
// value separation needs.
func OpenDatastore(dir string) (*pebbleds.Datastore, error) {
	opts := &pebble.Options{
		FormatMajorVersion:          pebble.FormatValueSeparation,
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
	}
	// Blocks are mostly incompressible (weights, archives, media) and
	// snappy's attempt showed in every write's profile; the small
	// records that would compress are few.
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           4 << 10, // CIDs, pins and DHT records stay inline
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	d, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(opts))
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", dir, err)
	}
	blockDirs.Store(d, filepath.Join(dir, "blocks")) // pebble ignores names it did not make
	return d, nil
}

// blockDirs maps each datastore OpenDatastore opened to its block-file
// directory, which New uses when Config.BlocksDir is empty.
var blockDirs sync.Map
