package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/node/lease"
	"github.com/ethereum/go-ethereum/common"
)

// openChain unlocks the wallet and connects to the configured chain, or
// starts the embedded dev chain (kept in <repo>/devchain) with the wallet
// funded. A repo made before wallets existed gets one here, on a dev chain.
func (n *Node) openChain(ctx context.Context, cfg chain.Config, log *slog.Logger) error {
	cc := n.repo.Config.Chain
	ksDir := KeystoreDir(n.repo.Dir)
	if _, err := chain.WalletAddress(ksDir); errors.Is(err, chain.ErrNoWallet) && cc.IsDev() {
		if _, err := chain.CreateWallet(ksDir, n.repo.Passphrase); err != nil {
			return err
		}
		n.log.Info("created a wallet for this repo", "keystore", ksDir)
	}
	w, err := chain.OpenWallet(ksDir, n.repo.Passphrase)
	if err != nil {
		return err
	}
	n.wallet = w
	var b chain.Backend
	if cc.RPC == "" {
		n.devchain, err = chain.StartDevChain(ctx, chain.DevChainConfig{
			DataDir: filepath.Join(n.repo.Dir, "devchain"),
			Fund:    []common.Address{w.Address()},
			Logger:  log,
		})
		if err != nil {
			return fmt.Errorf("embedded dev chain: %w", err)
		}
		b = n.devchain.Client()
		cfg.Escrow, cfg.Token = n.devchain.Info.Escrow, n.devchain.Info.Token
	} else {
		f, err := chain.DialFailover(cc.RPCs(), 0, log)
		if err != nil {
			return err
		}
		n.rpc = f
		b = f
	}
	cfg.Logger = log
	idPath := filepath.Join(n.repo.Dir, "chain-identity.json")
	if cc.RPC != "" {
		cfg.Known = readIdentity(idPath)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if n.chain, err = chain.NewClient(cctx, b, w, cfg); err != nil {
		if cc.RPC != "" {
			return fmt.Errorf("chain.rpc %s: %w", cc.RPC, err)
		}
		return err
	}
	if cc.RPC != "" {
		if id := n.chain.Identity(); cfg.Known == nil || *cfg.Known != id {
			if b, err := json.Marshal(id); err == nil {
				if err := atomicfile.WriteFile(idPath, b, 0o600); err != nil {
					n.log.Warn("chain identity not kept: a start during an RPC outage will fail", "err", err)
				}
			}
		}
	}
	n.vouchers, err = lease.OpenVouchers(filepath.Join(n.repo.Dir, "vouchers.json"))
	return err
}

// readIdentity is the chain a repo used before (chain-identity.json), or
// nil.
func readIdentity(path string) *chain.Identity {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var id chain.Identity
	if json.Unmarshal(b, &id) != nil || id.ChainID == 0 {
		return nil
	}
	return &id
}

func (n *Node) closeChain() error {
	if n.rpc != nil {
		n.rpc.Close()
	}
	if n.devchain != nil {
		return n.devchain.Close()
	}
	return nil
}
