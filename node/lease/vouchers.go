package lease

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/ethereum/go-ethereum/common"
)

// Vouchers keeps, per channel, the best voucher this node received as
// payee and the last it signed as payer, in one JSON file replaced
// atomically, so a voucher once stored survives a crash.
type Vouchers struct {
	path string
	mu   sync.Mutex
	data voucherFile
}

type voucherFile struct {
	Received map[common.Hash]*chain.Voucher `json:"received"`
	Signed   map[common.Hash]*chain.Voucher `json:"signed"`
}

func OpenVouchers(path string) (*Vouchers, error) {
	s := &Vouchers{path: path, data: voucherFile{Received: map[common.Hash]*chain.Voucher{}, Signed: map[common.Hash]*chain.Voucher{}}}
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
func (s *Vouchers) keep(m map[common.Hash]*chain.Voucher, v *chain.Voucher) (bool, error) {
	return s.keepIf(m, v, func(old *chain.Voucher) bool {
		return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
	})
}

// keepIf stores v if better says so of what m holds for its channel (nil
// for none), on disk first: a failed write leaves the old one in place.
func (s *Vouchers) keepIf(m map[common.Hash]*chain.Voucher, v *chain.Voucher, better func(old *chain.Voucher) bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := m[v.Channel]
	if !better(old) {
		return false, nil
	}
	m[v.Channel] = v
	b, err := json.MarshalIndent(s.data, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(s.path, b, 0o600)
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

func (s *Vouchers) list(m map[common.Hash]*chain.Voucher) []*chain.Voucher {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*chain.Voucher, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel.Hex() < out[j].Channel.Hex() })
	return out
}

func (s *Vouchers) get(m map[common.Hash]*chain.Voucher, id common.Hash) *chain.Voucher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m[id]
}

// KeepSigned and KeepReceived store v as the best voucher this node signed
// as payer, or received as payee, of its channel, if it raises the amount.
func (s *Vouchers) KeepSigned(v *chain.Voucher) (bool, error)   { return s.keep(s.data.Signed, v) }
func (s *Vouchers) KeepReceived(v *chain.Voucher) (bool, error) { return s.keep(s.data.Received, v) }

// Signed and Received list the best vouchers of each channel, by channel.
func (s *Vouchers) Signed() []*chain.Voucher   { return s.list(s.data.Signed) }
func (s *Vouchers) Received() []*chain.Voucher { return s.list(s.data.Received) }

// Best is the best voucher kept for channel id: signed (payer) or received.
func (s *Vouchers) Best(id common.Hash, payer bool) *chain.Voucher {
	if payer {
		return s.get(s.data.Signed, id)
	}
	return s.get(s.data.Received, id)
}
