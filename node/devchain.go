package node

import (
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/aixblock/aixblock/chain"
	"github.com/ethereum/go-ethereum/crypto"
)

// ReadKeyFile reads a hex private key (as `aixblock devchain` prints them)
// from a file, for importing into a new repo's wallet.
func ReadKeyFile(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wallet key: %w", err)
	}
	k, err := crypto.HexToECDSA(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"))
	if err != nil {
		return nil, fmt.Errorf("wallet key %s: not a hex secp256k1 private key: %w", path, err)
	}
	return k, nil
}

// DevChainConfigFor reads the file `aixblock devchain --out` wrote into a
// chain config section that points at that chain.
func DevChainConfigFor(path string) (ChainConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ChainConfig{}, fmt.Errorf("devchain file: %w", err)
	}
	var info chain.DevChainInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return ChainConfig{}, fmt.Errorf("devchain file %s: %w", path, err)
	}
	if info.RPCURL == "" {
		return ChainConfig{}, fmt.Errorf("devchain file %s: no rpc_url (was the chain started with --http?)", path)
	}
	return ChainConfig{RPC: info.RPCURL, Escrow: info.Escrow.Hex(), Token: info.Token.Hex(), Dev: true}, nil
}

// WalletAddress is the repo's wallet address, read without the passphrase.
func WalletAddress(repoDir string) (string, error) {
	a, err := chain.WalletAddress(KeystoreDir(repoDir))
	if err != nil {
		return "", err
	}
	return a.Hex(), nil
}
