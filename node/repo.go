package node

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/gofrs/flock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Files in a repo.
const (
	ConfigFile   = "config.json"
	IdentityFile = "identity.key"
	TokenFile    = "api.token"
	APIFile      = "api"
	lockFile     = "repo.lock"
)

// ErrNoRepo means the directory holds no initialized repo.
var ErrNoRepo = errors.New("no aixblock repo")

// Repo is an opened repo directory.
type Repo struct {
	Dir      string
	Config   Config
	Identity crypto.PrivKey
	PeerID   peer.ID
	Token    string
	// Passphrase unlocks the wallet; the daemon sets it before New.
	Passphrase string
	lock       *flock.Flock
}

// WalletOptions say how Init makes the wallet.
type WalletOptions struct {
	// Passphrase encrypts the keystore; empty is allowed only when the
	// config's chain is a dev chain.
	Passphrase string
	// Key imports an existing key instead of generating one.
	Key *ecdsa.PrivateKey
}

// KeystoreDir is where a repo keeps its wallet.
func KeystoreDir(repoDir string) string { return filepath.Join(repoDir, "keystore") }

// Init creates a repo in dir: a new Ed25519 identity, cfg as config.json,
// an API token and a wallet keystore, each readable only by the owner. It
// refuses to touch a directory that already holds any of them, and leaves
// nothing behind when it fails.
func Init(dir string, cfg Config, wo WalletOptions) (*Repo, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if wo.Passphrase == "" && !cfg.Chain.IsDev() {
		return nil, fmt.Errorf("wallet: a wallet for chain %s needs a passphrase: set %s or %s (empty passphrases are for dev chains only)",
			cfg.Chain.RPC, chain.PassphraseEnv, chain.PassphraseFileEnv)
	}
	for _, f := range []string{ConfigFile, IdentityFile, TokenFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("repo %s already exists (found %s); not overwriting it", dir, f)
		}
	}
	if _, err := chain.WalletAddress(KeystoreDir(dir)); err == nil {
		return nil, fmt.Errorf("repo %s already exists (found a wallet in %s); not overwriting it", dir, KeystoreDir(dir))
	}
	createdDir := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		createdDir = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create repo: %w", err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	keyBytes, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode identity: %w", err)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("generate API token: %w", err)
	}
	cfgBytes, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	var written []string
	undo := func() {
		for _, p := range written {
			os.Remove(p)
		}
		os.RemoveAll(KeystoreDir(dir))
		if createdDir {
			os.Remove(dir)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{IdentityFile, keyBytes},
		{TokenFile, []byte(hex.EncodeToString(tok) + "\n")},
		{ConfigFile, append(cfgBytes, '\n')},
	} {
		p := filepath.Join(dir, f.name)
		if err := writeNew(p, f.data); err != nil {
			undo()
			return nil, err
		}
		written = append(written, p)
	}
	var err2 error
	if wo.Key != nil {
		_, err2 = chain.ImportWallet(KeystoreDir(dir), wo.Passphrase, wo.Key)
	} else {
		_, err2 = chain.CreateWallet(KeystoreDir(dir), wo.Passphrase)
	}
	if err2 != nil {
		undo()
		return nil, err2
	}
	return Open(dir)
}

// writeNew writes a file that must not exist yet, owner-only.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// Open reads a repo without locking it (the CLI's clients do this).
func Open(dir string) (*Repo, error) {
	st, err := os.Stat(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (run `aixblock init` first, or set --repo / AIXBLOCK_REPO)", ErrNoRepo, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open repo: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("repo %s: %s is a directory", dir, ConfigFile)
	}
	r := &Repo{Dir: dir}
	if r.Config, err = loadConfig(filepath.Join(dir, ConfigFile)); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, IdentityFile)
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if r.Identity, err = crypto.UnmarshalPrivateKey(kb); err != nil {
		return nil, fmt.Errorf("identity %s is corrupt: %w", keyPath, err)
	}
	if r.PeerID, err = peer.IDFromPrivateKey(r.Identity); err != nil {
		return nil, fmt.Errorf("identity %s: %w", keyPath, err)
	}
	if r.Token, err = readToken(dir); err != nil {
		return nil, err
	}
	return r, nil
}

func readToken(dir string) (string, error) {
	p := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("API token %s is too short (%d chars)", p, len(tok))
	}
	return tok, nil
}

// Lock takes the repo's lock so that only one daemon runs on it.
func (r *Repo) Lock() error {
	p := filepath.Join(r.Dir, lockFile)
	l := flock.New(p)
	ok, err := l.TryLock()
	if err != nil {
		return fmt.Errorf("lock repo: %w", err)
	}
	if !ok {
		msg := fmt.Sprintf("repo %s is in use by another daemon", r.Dir)
		if b, err := os.ReadFile(p); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				msg += fmt.Sprintf(" (pid %d)", pid)
			}
		}
		return errors.New(msg)
	}
	// The pid is a hint for the message above; the flock is what counts.
	_ = os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	r.lock = l
	return nil
}

// Unlock releases the lock taken by Lock.
func (r *Repo) Unlock() error {
	if r.lock == nil {
		return nil
	}
	_ = os.Truncate(r.lock.Path(), 0)
	return r.lock.Unlock()
}

// writeAPIFile publishes the API URL for the CLI, atomically.
func (r *Repo) writeAPIFile(url string) error {
	if err := atomicfile.WriteFile(filepath.Join(r.Dir, APIFile), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("api file: %w", err)
	}
	return nil
}

func (r *Repo) removeAPIFile() error {
	err := os.Remove(filepath.Join(r.Dir, APIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
