package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"
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
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		ec, err := ethclient.DialContext(dctx, cc.RPC)
		cancel()
		if err != nil {
			return fmt.Errorf("chain.rpc %s: %w", cc.RPC, err)
		}
		n.rpc = ec
		b = ec
	}
	cfg.Logger = log
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if n.chain, err = chain.NewClient(cctx, b, w, cfg); err != nil {
		if cc.RPC != "" {
			return fmt.Errorf("chain.rpc %s: %w", cc.RPC, err)
		}
		return err
	}
	n.vouchers, err = openVoucherStore(filepath.Join(n.repo.Dir, "vouchers.json"))
	return err
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

// voucherStore keeps, per channel, the best voucher this node received as
// payee and the last it signed as payer, in one JSON file replaced
// atomically, so a voucher once stored survives a crash.
type voucherStore struct {
	path string
	mu   sync.Mutex
	data voucherFile
}

type voucherFile struct {
	Received map[common.Hash]*chain.Voucher `json:"received"`
	Signed   map[common.Hash]*chain.Voucher `json:"signed"`
}

func openVoucherStore(path string) (*voucherStore, error) {
	s := &voucherStore{path: path, data: voucherFile{Received: map[common.Hash]*chain.Voucher{}, Signed: map[common.Hash]*chain.Voucher{}}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vouchers: %w", err)
	}
	if err := json.Unmarshal(b, &s.data); err != nil {
		return nil, fmt.Errorf("vouchers %s is corrupt: %w", path, err)
	}
	if s.data.Received == nil {
		s.data.Received = map[common.Hash]*chain.Voucher{}
	}
	if s.data.Signed == nil {
		s.data.Signed = map[common.Hash]*chain.Voucher{}
	}
	return s, nil
}

// keep stores v if it beats what m holds for its channel; it reports
// whether it did.
func (s *voucherStore) keep(m map[common.Hash]*chain.Voucher, v *chain.Voucher) (bool, error) {
	return s.keepIf(m, v, func(old *chain.Voucher) bool {
		return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
	})
}

// keepIf stores v if better says so of what m holds for its channel (nil
// for none), on disk first: a failed write leaves the old one in place.
func (s *voucherStore) keepIf(m map[common.Hash]*chain.Voucher, v *chain.Voucher, better func(old *chain.Voucher) bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := m[v.Channel]
	if !better(old) {
		return false, nil
	}
	m[v.Channel] = v
	b, err := json.MarshalIndent(s.data, "", "  ")
	if err == nil {
		err = writeAtomic(s.path, b)
	}
	if err != nil {
		if had {
			m[v.Channel] = old
		} else {
			delete(m, v.Channel)
		}
		return false, fmt.Errorf("vouchers: %w", err)
	}
	return true, nil
}

// writeAtomic replaces path with b: a crash leaves the old file or the
// new one, never part of either.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func (s *voucherStore) received() []*chain.Voucher { return s.list(s.data.Received) }

func (s *voucherStore) list(m map[common.Hash]*chain.Voucher) []*chain.Voucher {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*chain.Voucher, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel.Hex() < out[j].Channel.Hex() })
	return out
}

func (s *voucherStore) get(m map[common.Hash]*chain.Voucher, id common.Hash) *chain.Voucher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m[id]
}
