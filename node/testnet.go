package node

import (
	"context"

	"github.com/aixblock/aixblock/testnet"
)

// What the CLI needs of package testnet.
type (
	TestnetConfig = testnet.Config
	TestnetInfo   = testnet.Info
)

// TestnetUp starts a local testnet (see package testnet).
func TestnetUp(ctx context.Context, cfg TestnetConfig) (*TestnetInfo, error) {
	return testnet.Up(ctx, cfg)
}

// TestnetStatus reads a testnet's state.
func TestnetStatus(dir string) (*TestnetInfo, error) { return testnet.Status(dir) }

// TestnetDown stops a testnet; purge removes its directory.
func TestnetDown(dir string, purge bool) (*TestnetInfo, error) { return testnet.Down(dir, purge) }
