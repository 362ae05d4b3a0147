package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aixblock/aixblock/node/api"
)

// NewClient finds the daemon of the repo in dir through its api file and
// returns a client of its API with the repo's token.
func NewClient(dir string) (*api.Client, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (run `aixblock init` first, or set --repo / AIXBLOCK_REPO)", ErrNoRepo, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, APIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w on repo %s (start one with `aixblock daemon`)", api.ErrNoDaemon, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read api file: %w", err)
	}
	tok, err := readToken(dir)
	if err != nil {
		return nil, err
	}
	return api.NewClient(strings.TrimSpace(string(b)), tok), nil
}
