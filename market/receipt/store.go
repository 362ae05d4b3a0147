package receipt

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/libp2p/go-libp2p/core/peer"
)

// StoreConfig says where receipts are kept and how many. The zero value
// of each field but Network is a working default.
type StoreConfig struct {
	// Path is the JSON file the receipts live in, rewritten whole and
	// atomically on each change; zero: memory only.
	Path string
	// Network is the only network whose receipts are kept.
	Network string
	// Self is this node's peer ID: receipts it signed are evicted last,
	// and are what Served offers.
	Self peer.ID
	// Trusted names the requesters whose receipts are evicted after
	// strangers' besides the peers this node signed a receipt with,
	// which the store trusts itself (the daemon: the providers this
	// node dealt with as requester); nil: none.
	Trusted func(peer.ID) bool
	// MaxReceipts bounds the receipts kept in all; zero: 4096.
	MaxReceipts int
	// MaxPerProvider bounds the receipts kept about one provider; zero:
	// 256.
	MaxPerProvider int
	// Log is the store's logger; zero: slog.Default().
	Log *slog.Logger
}

// Store keeps signed receipts, checked on the way in, one per deal,
// bounded per provider and in all: a provider's about itself, a
// requester's that it signed or fetched.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	mu    sync.Mutex
	by    map[string][]Signed // by provider, newest first
	deals map[string]Signed   // by deal ID
	dealt map[string]int      // the other side's peer ID -> receipts held this node signed
}

// storeFile is the file's contents: each receipt as it came.
type storeFile struct {
	V        int      `json:"v"`
	Receipts [][]byte `json:"receipts"`
}

// OpenStore opens the store at cfg.Path, reading what is there. A
// receipt that no longer verifies is dropped with a warning; a file that
// cannot be read at all is an error, so that nothing is thrown away
// unseen.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Network == "" {
		return nil, errors.New("receipt: store without a network")
	}
	if cfg.MaxReceipts == 0 {
		cfg.MaxReceipts = 4096
	}
	if cfg.MaxPerProvider == 0 {
		cfg.MaxPerProvider = 256
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Store{cfg: cfg, log: cfg.Log.With("component", "receipt"), by: map[string][]Signed{}, deals: map[string]Signed{}, dealt: map[string]int{}}
	if cfg.Path == "" {
		return s, nil
	}
	raws, err := s.read()
	if err != nil {
		return nil, err
	}
	for _, raw := range raws {
		if _, err := s.add(raw, time.Time{}); err != nil {
			s.log.Warn("receipt dropped on load", "path", cfg.Path, "err", err)
		}
	}
	return s, nil
}

// read is the receipts in the file, none if there is no file.
func (s *Store) read() ([][]byte, error) {
	b, err := os.ReadFile(s.cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("receipt: store: %w", err)
	}
	// Base64 takes 4 bytes for 3, and each receipt a comma and quotes.
	limit := s.cfg.MaxReceipts*(MaxReceiptBytes*4/3+8) + 64
	if len(b) > limit {
		return nil, fmt.Errorf("receipt: store: %s of %d bytes over the %d limit", s.cfg.Path, len(b), limit)
	}
	var f storeFile
	if err := json.Unmarshal(b, &f); err != nil || f.V != Version {
		return nil, fmt.Errorf("receipt: store: %s: version %d: %v", s.cfg.Path, f.V, err)
	}
	return f.Receipts, nil
}

// Add checks a signed receipt (Decode, and Check against the store's
// network and now) and keeps it. The same receipt again is no error, and
// the other side's signature of one held joins it; a different receipt
// for a deal held is refused with ErrReplay, unless it is stronger
// (strength: this node signed it, or a trusted requester) than the one
// held, which it replaces: a stranger who learnt a deal's ID cannot
// shut out the receipt that counts.
func (s *Store) Add(raw []byte, now time.Time) (Signed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	got, err := s.add(raw, now)
	if err != nil {
		return Signed{}, err
	}
	return got, s.save()
}

// AddAll adds each of raws, saving once; it returns those kept and why
// each other was refused.
func (s *Store) AddAll(raws [][]byte, now time.Time) ([]Signed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []Signed
	var errs []error
	for i, raw := range raws {
		got, err := s.add(raw, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("receipt %d: %w", i, err))
			continue
		}
		kept = append(kept, got)
	}
	if len(kept) > 0 {
		errs = append(errs, s.save())
	}
	return kept, errors.Join(errs...)
}

// add decodes, checks and inserts raw; a zero now skips the check of
// its date (receipts read back from the file).
func (s *Store) add(raw []byte, now time.Time) (Signed, error) {
	got, err := Decode(raw)
	if err != nil {
		return Signed{}, err
	}
	if now.IsZero() {
		now = got.Ended()
	}
	if err := got.Check(s.cfg.Network, now); err != nil {
		return Signed{}, err
	}
	old, held := s.deals[got.Deal]
	if !held {
		s.insert(got)
		return got, nil
	}
	return s.again(old, got)
}

// again settles a receipt for a deal already held.
func (s *Store) again(old, got Signed) (Signed, error) {
	if old.ID() == got.ID() {
		if old.Kind == got.Kind || old.Kind == Both {
			return old, nil
		}
		merged, err := join(old, got)
		if err != nil {
			return Signed{}, err
		}
		s.remove(old)
		s.insert(merged)
		return merged, nil
	}
	if s.strength(got) <= s.strength(old) {
		return Signed{}, fmt.Errorf("%w: deal %s: receipt %.12s differs from the one held (%.12s)", ErrReplay, got.Deal, got.ID(), old.ID())
	}
	s.log.Warn("receipt replaced by a stronger one", "deal_id", got.Deal, "held", old.Kind, "new", got.Kind)
	s.remove(old)
	s.insert(got)
	return got, nil
}

// strength orders receipts for one deal: by rank, then one both sides
// signed over one side's.
func (s *Store) strength(r Signed) int {
	n := 2 * s.rank(r)
	if r.Kind == Both {
		n++
	}
	return n
}

// join is a receipt signed by one side and the same receipt signed by
// the other, as one signed by both.
func join(a, b Signed) (Signed, error) {
	var ea, eb envelope
	if err := codec.Unmarshal(a.Raw, &ea); err != nil {
		return Signed{}, fmt.Errorf("%w: join: %v", ErrInvalid, err)
	}
	if err := codec.Unmarshal(b.Raw, &eb); err != nil {
		return Signed{}, fmt.Errorf("%w: join: %v", ErrInvalid, err)
	}
	if ea.ProviderSig == nil {
		ea.ProviderKey, ea.ProviderSig = eb.ProviderKey, eb.ProviderSig
	} else {
		ea.RequesterKey, ea.RequesterSig = eb.RequesterKey, eb.RequesterSig
	}
	raw, err := encode(ea)
	if err != nil {
		return Signed{}, err
	}
	return Decode(raw)
}

// insert adds r in its provider's list by date, and evicts beyond the
// bounds.
func (s *Store) insert(r Signed) {
	list := s.by[r.Provider]
	i, _ := slices.BinarySearchFunc(list, r, func(a, b Signed) int { return -cmp.Compare(a.EndedAt, b.EndedAt) })
	s.by[r.Provider] = slices.Insert(list, i, r)
	s.deals[r.Deal] = r
	if other, ok := s.otherSide(r); ok {
		s.dealt[other]++
	}
	s.evict(r.Provider)
}

// evict drops receipts beyond the bounds: the weakest about provider
// beyond MaxPerProvider, then the weakest of all beyond MaxReceipts.
func (s *Store) evict(provider string) {
	for len(s.by[provider]) > s.cfg.MaxPerProvider {
		s.remove(s.weakest(s.by[provider]))
	}
	for len(s.deals) > s.cfg.MaxReceipts {
		var v Signed
		first := true
		for _, list := range s.by {
			if w := s.weakest(list); first || s.weaker(w, v) {
				v, first = w, false
			}
		}
		s.remove(v)
	}
}

// weakest is the receipt of list to evict first.
func (s *Store) weakest(list []Signed) Signed {
	v := list[len(list)-1]
	for _, r := range list {
		if s.weaker(r, v) {
			v = r
		}
	}
	return v
}

// weaker reports whether a goes before b: by rank, then the older.
func (s *Store) weaker(a, b Signed) bool {
	if ra, rb := s.rank(a), s.rank(b); ra != rb {
		return ra < rb
	}
	return a.EndedAt < b.EndedAt
}

// rank is what a receipt is worth keeping: one this node signed, then
// one a trusted requester signed, then one both sides signed, then the
// rest (a stranger's word, or a provider's own).
func (s *Store) rank(r Signed) int {
	switch {
	case r.SignedBy(s.cfg.Self):
		return 3
	case s.trusted(r.Requester) && r.Kind != ProviderOnly:
		return 2
	case r.Kind == Both:
		return 1
	}
	return 0
}

func (s *Store) trusted(p string) bool {
	if s.dealt[p] > 0 {
		return true
	}
	id, err := peer.Decode(p)
	return err == nil && s.cfg.Trusted != nil && s.cfg.Trusted(id)
}

// otherSide is the peer this node dealt with in r, if this node signed
// r.
func (s *Store) otherSide(r Signed) (string, bool) {
	switch {
	case !r.SignedBy(s.cfg.Self):
		return "", false
	case r.Provider == s.cfg.Self.String():
		return r.Requester, true
	}
	return r.Provider, true
}

// remove drops r.
func (s *Store) remove(r Signed) {
	if other, ok := s.otherSide(r); ok {
		if s.dealt[other]--; s.dealt[other] <= 0 {
			delete(s.dealt, other)
		}
	}
	delete(s.deals, r.Deal)
	list := slices.DeleteFunc(s.by[r.Provider], func(x Signed) bool { return x.Deal == r.Deal })
	if len(list) == 0 {
		delete(s.by, r.Provider)
		return
	}
	s.by[r.Provider] = list
}

// save writes every receipt to the file.
func (s *Store) save() error {
	if s.cfg.Path == "" {
		return nil
	}
	f := storeFile{V: Version, Receipts: [][]byte{}}
	for _, p := range slices.Sorted(maps.Keys(s.by)) {
		for _, r := range s.by[p] {
			f.Receipts = append(f.Receipts, r.Raw)
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("receipt: store: %w", err)
	}
	if err := atomicfile.WriteFile(s.cfg.Path, b, 0o600); err != nil {
		return fmt.Errorf("receipt: store: %w", err)
	}
	return nil
}

// Receipts are the receipts about provider, newest first.
func (s *Store) Receipts(provider peer.ID) []Signed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.by[provider.String()])
}

// Served are the receipts about provider that this node signed, newest
// first, at most MaxServed: what the receipts protocol answers.
func (s *Store) Served(provider peer.ID) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, r := range s.by[provider.String()] {
		if len(out) == MaxServed {
			break
		}
		if r.SignedBy(s.cfg.Self) {
			out = append(out, r.Raw)
		}
	}
	return out
}

// Get is the receipt held for deal.
func (s *Store) Get(deal string) (Signed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.deals[deal]
	return r, ok
}

// Len is the number of receipts held.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.deals)
}

// Network is the network whose receipts the store keeps.
func (s *Store) Network() string { return s.cfg.Network }

// DealtWith is, as of now, whether this node signed a receipt held with
// p as the other side: the peers it dealt with, which a View trusts.
func (s *Store) DealtWith() func(peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := make(map[string]bool, len(s.dealt))
	for p := range s.dealt {
		set[p] = true
	}
	return func(p peer.ID) bool { return set[p.String()] }
}

// Dealt are the peers this node signed a receipt held with, the one it
// dealt with last first: whom to ask for receipts about a provider.
func (s *Store) Dealt() []peer.ID {
	s.mu.Lock()
	last := map[string]int64{}
	for _, r := range s.deals {
		if other, ok := s.otherSide(r); ok {
			last[other] = max(last[other], r.EndedAt)
		}
	}
	s.mu.Unlock()
	var out []peer.ID
	for _, p := range slices.SortedFunc(maps.Keys(last), func(a, b string) int {
		return cmp.Or(-cmp.Compare(last[a], last[b]), cmp.Compare(a, b))
	}) {
		if id, err := peer.Decode(p); err == nil {
			out = append(out, id)
		}
	}
	return out
}
