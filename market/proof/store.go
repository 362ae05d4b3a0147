package proof

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/fxamacker/cbor/v2"
	"github.com/libp2p/go-libp2p/core/peer"
)

// StoreConfig says where records are kept and how many. The zero value
// of each field but Network is a working default.
type StoreConfig struct {
	// Path is the file the records live in, rewritten whole and
	// atomically on each change; zero: memory only.
	Path string
	// Network is the only network whose records are kept.
	Network string
	// Self is this node's peer ID: records it signed are evicted last.
	Self peer.ID
	// MaxRecords bounds the records kept in all; zero: 4096.
	MaxRecords int
	// MaxPerProvider bounds the records kept about one provider; zero:
	// 32.
	MaxPerProvider int
	// Log is the store's logger; zero: slog.Default().
	Log *slog.Logger
}

// Store keeps signed records, checked on the way in, bounded, newest
// first per provider: a provider's about itself (which it serves), a
// requester's that it made or fetched.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	mu    sync.Mutex
	by    map[string][]entry // by provider, newest first
	ids   map[string]bool
	total int
}

// entry is one kept record and the bytes it came in.
type entry struct {
	rec Record
	raw []byte
	id  string
}

// storeFile is the file's contents.
type storeFile struct {
	V       uint8    `cbor:"v"`
	Records [][]byte `cbor:"r"`
}

// OpenStore opens the store at cfg.Path, reading what is there. A record
// that no longer verifies is dropped with a warning; a file that cannot
// be read at all is an error, so that nothing is thrown away unseen.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Network == "" {
		return nil, errors.New("proof: store without a network")
	}
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = 4096
	}
	if cfg.MaxPerProvider == 0 {
		cfg.MaxPerProvider = 32
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Store{cfg: cfg, log: cfg.Log.With("component", "proof"), by: map[string][]entry{}, ids: map[string]bool{}}
	if cfg.Path == "" {
		return s, nil
	}
	raws, err := s.read()
	if err != nil {
		return nil, err
	}
	for _, raw := range raws {
		rec, err := DecodeRecord(raw)
		if err == nil {
			err = s.insert(rec, raw, time.Time{})
		}
		if err != nil {
			s.log.Warn("record dropped on load", "path", cfg.Path, "err", err)
		}
	}
	return s, nil
}

// read is the records in the file, none if there is no file.
func (s *Store) read() ([][]byte, error) {
	b, err := os.ReadFile(s.cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("proof: records: %w", err)
	}
	limit := s.cfg.MaxRecords*(MaxRecordBytes+8) + 64
	if len(b) > limit {
		return nil, fmt.Errorf("proof: records: %s of %d bytes over the %d limit", s.cfg.Path, len(b), limit)
	}
	dm, err := cbor.DecOptions{MaxArrayElements: max(s.cfg.MaxRecords, 16), IndefLength: cbor.IndefLengthForbidden}.DecMode()
	if err != nil {
		return nil, err
	}
	var f storeFile
	if err := dm.Unmarshal(b, &f); err != nil || f.V != Version {
		return nil, fmt.Errorf("proof: records: %s: version %d: %v", s.cfg.Path, f.V, err)
	}
	return f.Records, nil
}

// Add checks a signed record (DecodeRecord, and Record.Check against the
// provider it names) and keeps it. A record kept already is no error.
func (s *Store) Add(raw []byte, now time.Time) (Record, error) {
	rec, err := DecodeRecord(raw)
	if err != nil {
		return Record{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[rec.ID()] {
		return rec, nil
	}
	if err := s.insert(rec, raw, now); err != nil {
		return Record{}, err
	}
	return rec, s.save()
}

// insert checks a decoded record and adds it, evicting beyond the
// bounds; a zero now skips the check of its time (records read back
// from the file).
func (s *Store) insert(rec Record, raw []byte, now time.Time) error {
	prov, err := peer.Decode(rec.Provider)
	if err != nil {
		return fmt.Errorf("%w: provider: %v", ErrInvalid, err)
	}
	if now.IsZero() {
		now = rec.Time()
	}
	if err := rec.Check(s.cfg.Network, prov, now); err != nil {
		return err
	}
	e := entry{rec: rec, raw: raw, id: rec.ID()}
	if s.ids[e.id] {
		return nil
	}
	list := s.by[rec.Provider]
	i, _ := slices.BinarySearchFunc(list, e, func(a, b entry) int { return -compareAt(a, b) })
	s.by[rec.Provider] = slices.Insert(list, i, e)
	s.ids[e.id] = true
	s.total++
	s.evict(rec.Provider)
	return nil
}

func compareAt(a, b entry) int { return cmp.Compare(a.rec.At, b.rec.At) }

// evict drops records beyond the bounds: the oldest about provider
// beyond MaxPerProvider, then the oldest in all beyond MaxRecords;
// among those, others' records before this node's own.
func (s *Store) evict(provider string) {
	for len(s.by[provider]) > s.cfg.MaxPerProvider {
		s.drop(provider, s.victim(s.by[provider]))
	}
	for s.total > s.cfg.MaxRecords {
		prov, i := "", -1
		for p, list := range s.by {
			j := s.victim(list)
			if i < 0 || s.worse(list[j], s.by[prov][i]) {
				prov, i = p, j
			}
		}
		s.drop(prov, i)
	}
}

// victim is the index of the record in list to evict first.
func (s *Store) victim(list []entry) int {
	v := len(list) - 1
	for i := len(list) - 2; i >= 0; i-- {
		if s.worse(list[i], list[v]) {
			v = i
		}
	}
	return v
}

// worse reports whether a goes before b: another's before this node's
// own, then the older.
func (s *Store) worse(a, b entry) bool {
	aOwn, bOwn := a.rec.Verifier == s.cfg.Self.String(), b.rec.Verifier == s.cfg.Self.String()
	if aOwn != bOwn {
		return bOwn
	}
	return a.rec.At < b.rec.At
}

func (s *Store) drop(provider string, i int) {
	list := s.by[provider]
	delete(s.ids, list[i].id)
	s.total--
	if list = slices.Delete(list, i, i+1); len(list) == 0 {
		delete(s.by, provider)
	} else {
		s.by[provider] = list
	}
}

// save writes every record to the file.
func (s *Store) save() error {
	if s.cfg.Path == "" {
		return nil
	}
	f := storeFile{V: Version}
	for _, list := range s.by {
		for _, e := range list {
			f.Records = append(f.Records, e.raw)
		}
	}
	b, err := encode(f)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.cfg.Path, b, 0o600); err != nil {
		return fmt.Errorf("proof: records: %w", err)
	}
	return nil
}

// Records are the records about provider, newest first.
func (s *Store) Records(provider peer.ID) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, e := range s.by[provider.String()] {
		out = append(out, e.rec)
	}
	return out
}

// Signed are the records about provider as they came, newest first:
// what the records protocol serves.
func (s *Store) Signed(provider peer.ID) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, e := range s.by[provider.String()] {
		out = append(out, e.raw)
	}
	return out
}

// Providers are the providers the store holds records about.
func (s *Store) Providers() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []peer.ID
	for p := range s.by {
		if id, err := peer.Decode(p); err == nil {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
