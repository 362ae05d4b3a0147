package chain

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Passphrase sources, in the order they are read.
const (
	PassphraseEnv     = "AIXBLOCK_PASSPHRASE"
	PassphraseFileEnv = "AIXBLOCK_PASSPHRASE_FILE"
)

// ErrNoWallet means the keystore directory holds no account.
var ErrNoWallet = errors.New("no wallet")

// Wallet is the node's Ethereum account: one key in a go-ethereum keystore
// (the same encrypted JSON files geth and other wallets read), unlocked for
// the daemon's lifetime.
type Wallet struct {
	dir  string
	addr common.Address
	key  *ecdsa.PrivateKey
}

// ReadPassphrase returns the passphrase from file (when not empty), else
// from $AIXBLOCK_PASSPHRASE_FILE, else $AIXBLOCK_PASSPHRASE, else "".
// A trailing newline in a file is not part of it.
func ReadPassphrase(file string) (string, error) {
	if file == "" {
		file = os.Getenv(PassphraseFileEnv)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("passphrase file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv(PassphraseEnv), nil
}

// scrypt cost: the standard one for real passphrases; an empty passphrase
// protects nothing, so dev wallets skip the second of work and 256 MiB.
func scryptParams(passphrase string) (n, p int) {
	if passphrase == "" {
		return keystore.LightScryptN, keystore.LightScryptP
	}
	return keystore.StandardScryptN, keystore.StandardScryptP
}

// CreateWallet makes a new key in the keystore at dir, which must hold none.
func CreateWallet(dir, passphrase string) (*Wallet, error) {
	key, err := crypto.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	return ImportWallet(dir, passphrase, key)
}

// ImportWallet stores key in the keystore at dir, which must hold none.
func ImportWallet(dir, passphrase string, key *ecdsa.PrivateKey) (*Wallet, error) {
	if _, err := WalletAddress(dir); err == nil {
		return nil, fmt.Errorf("wallet: keystore %s already holds an account; not adding another", dir)
	}
	n, p := scryptParams(passphrase)
	ks := keystore.NewKeyStore(dir, n, p)
	acct, err := ks.ImportECDSA(key, passphrase)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	return &Wallet{dir: dir, addr: acct.Address, key: key}, nil
}

// keyFile finds the one key file in dir.
func keyFile(dir string) (string, common.Address, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", common.Address{}, fmt.Errorf("wallet: %w", err)
	}
	var found []string
	var addr common.Address
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var k struct {
			Address string `json:"address"`
		}
		if json.Unmarshal(b, &k) != nil || !common.IsHexAddress(k.Address) {
			continue
		}
		found = append(found, filepath.Join(dir, e.Name()))
		addr = common.HexToAddress(k.Address)
	}
	switch len(found) {
	case 0:
		return "", common.Address{}, fmt.Errorf("%w in %s (aixblock init creates one)", ErrNoWallet, dir)
	case 1:
		return found[0], addr, nil
	}
	return "", common.Address{}, fmt.Errorf("wallet: keystore %s holds %d accounts; keep one", dir, len(found))
}

// WalletAddress reads the account's address without the passphrase.
func WalletAddress(dir string) (common.Address, error) {
	_, addr, err := keyFile(dir)
	return addr, err
}

// OpenWallet decrypts the keystore's one key.
func OpenWallet(dir, passphrase string) (*Wallet, error) {
	file, _, err := keyFile(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	k, err := keystore.DecryptKey(b, passphrase)
	if err != nil {
		if errors.Is(err, keystore.ErrDecrypt) {
			return nil, fmt.Errorf("wallet: wrong passphrase for %s (set %s or %s)", file, PassphraseEnv, PassphraseFileEnv)
		}
		return nil, fmt.Errorf("wallet: %w", err)
	}
	return &Wallet{dir: dir, addr: k.Address, key: k.PrivateKey}, nil
}

// Address is the account's address.
func (w *Wallet) Address() common.Address { return w.addr }

// Account is the account as go-ethereum's accounts package names it.
func (w *Wallet) Account() accounts.Account { return accounts.Account{Address: w.addr} }

// Key is the private key, for signing vouchers and deals.
func (w *Wallet) Key() *ecdsa.PrivateKey { return w.key }

// Transactor signs transactions for chainID.
func (w *Wallet) Transactor(chainID *big.Int) *bind.TransactOpts {
	return bind.NewKeyedTransactor(w.key, chainID)
}
