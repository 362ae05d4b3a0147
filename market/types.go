package market

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// GPUGroup is the free healthy GPUs of one class in an advert.
type GPUGroup struct {
	Class             string `cbor:"c" json:"class"`
	Free              int    `cbor:"n" json:"free"`
	Total             int    `cbor:"t" json:"total"`
	MemoryMiB         uint64 `cbor:"m" json:"memory_mib"`
	ComputeCapability string `cbor:"cc" json:"compute_capability"`
	// UUIDs are the free GPUs of the group, so that a verifier can name
	// the ones it challenges.
	UUIDs []string `cbor:"u,omitempty" json:"uuids,omitempty"`
}

// Price is what a provider asks per GPU-hour (per CPU core-hour for a
// CPU-only provider) in one token, in the token's base units.
type Price struct {
	Token      string `cbor:"t" json:"token"` // address, or "native"
	PerGPUHour string `cbor:"p" json:"per_gpu_hour"`
}

// ProviderAdvert is a provider's signed offer of its hardware.
type ProviderAdvert struct {
	Version      int        `cbor:"v" json:"version"`
	PeerID       string     `cbor:"p" json:"peer_id"`
	Wallet       string     `cbor:"w" json:"wallet"`
	GPUs         []GPUGroup `cbor:"g" json:"gpus"`
	Healthy      int        `cbor:"hh" json:"healthy"`
	Degraded     int        `cbor:"hd" json:"degraded"`
	Unhealthy    int        `cbor:"hu" json:"unhealthy"`
	CPUCores     int        `cbor:"cpu" json:"cpu_cores"`
	MemoryMiB    uint64     `cbor:"mem" json:"memory_mib"`
	DiskMiB      uint64     `cbor:"disk" json:"disk_mib"`
	Prices       []Price    `cbor:"pr" json:"prices"`
	MaxDurationS int64      `cbor:"d" json:"max_duration_s"`
	IssuedAtMs   int64      `cbor:"i" json:"issued_at_ms"`
	ExpiresAtMs  int64      `cbor:"e" json:"expires_at_ms"`
	// Proofs are signed proof-of-GPU records about this provider that it
	// carries next to its advert (newest passes first). Each is checked
	// by whoever reads it: the provider cannot forge one, only choose
	// which to show.
	Proofs [][]byte `cbor:"pf,omitempty" json:"proofs,omitempty"`
}

func (a *ProviderAdvert) signer() string { return a.PeerID }

// Requirements are what a job needs of one node.
type Requirements struct {
	GPUClass     string `cbor:"c" json:"gpu_class,omitempty"` // empty: any class
	GPUs         int    `cbor:"g" json:"gpus"`
	GPUMemoryMiB uint64 `cbor:"gm" json:"gpu_memory_mib,omitempty"`
	CPUCores     int    `cbor:"cpu" json:"cpu_cores,omitempty"`
	MemoryMiB    uint64 `cbor:"mem" json:"memory_mib,omitempty"`
	DiskMiB      uint64 `cbor:"disk" json:"disk_mib,omitempty"`
	Nodes        int    `cbor:"n" json:"nodes,omitempty"`
}

// JobOffer is a requester's signed call for bids.
type JobOffer struct {
	Version   int    `cbor:"v" json:"version"`
	Requester string `cbor:"r" json:"requester"`
	// Addrs is ignored: providers reach the requester by its peer ID, never
	// at addresses an offer names (it is kept so that older offers decode).
	Addrs  []string     `cbor:"a" json:"addrs"`
	Wallet string       `cbor:"w" json:"wallet"`
	Req    Requirements `cbor:"q" json:"requirements"`
	Image  string       `cbor:"im" json:"image,omitempty"`
	Token  string       `cbor:"t" json:"token"`
	// Chain is the requester's chain (Config.Chain); empty from older
	// requesters, which then meet any provider.
	Chain string `cbor:"ch,omitempty" json:"chain,omitempty"`
	// MaxPrice is per GPU-hour in base units of Token.
	MaxPrice     string `cbor:"mp" json:"max_price"`
	MaxDurationS int64  `cbor:"d" json:"max_duration_s"`
	SpecHash     string `cbor:"sh" json:"spec_hash"` // hex SHA-256 of the job spec
	DeadlineMs   int64  `cbor:"dl" json:"deadline_ms"`
	Nonce        uint64 `cbor:"nc" json:"nonce"`
	// Direct are the providers the offer was sent to directly; they ignore
	// its gossip copy.
	Direct []string `cbor:"dr" json:"direct"`
	// OpenBids asks providers who hear the offer by gossip to bid too: the
	// requester sets it when the DHT named fewer providers than it wanted,
	// so that in a large network a deal costs the same few messages.
	OpenBids bool `cbor:"ob" json:"open_bids"`
	// WalletSig is Wallet's signature of the offer (see walletProof): the
	// requester controls the wallet it names.
	WalletSig []byte `cbor:"ws,omitempty" json:"wallet_sig,omitempty"`
	// HoldbackBps is the share of the pay, in basis points, that is paid
	// only once the job's result verifies (a spec's verify.holdback);
	// zero: none. Empty in older offers, so their bytes do not change.
	HoldbackBps int `cbor:"hb,omitempty" json:"holdback_bps,omitempty"`
}

func (o *JobOffer) signer() string { return o.Requester }

// Bid is a provider's signed answer to an offer: these GPUs, at this price,
// reserved until ReservedUntilMs.
type Bid struct {
	Version         int      `cbor:"v" json:"version"`
	OfferID         string   `cbor:"o" json:"offer_id"`
	Provider        string   `cbor:"p" json:"provider"`
	Wallet          string   `cbor:"w" json:"wallet"`
	Token           string   `cbor:"t" json:"token"`
	Price           string   `cbor:"pr" json:"price"` // per GPU-hour, base units
	GPUs            []string `cbor:"g" json:"gpus"`   // UUIDs
	GPUClass        string   `cbor:"c" json:"gpu_class"`
	ReservedUntilMs int64    `cbor:"ru" json:"reserved_until_ms"`
	// HoldbackBps is the offer's, agreed by the provider's signature.
	HoldbackBps int `cbor:"hb,omitempty" json:"holdback_bps,omitempty"`
}

func (b *Bid) signer() string { return b.Provider }

// DealTerms are what both sides sign with their wallets; ID is the hash of
// their canonical bytes (with ID empty).
type DealTerms struct {
	Version         int      `cbor:"v" json:"version"`
	ID              string   `cbor:"id" json:"deal_id"`
	OfferID         string   `cbor:"o" json:"offer_id"`
	Requester       string   `cbor:"r" json:"requester"`
	Provider        string   `cbor:"p" json:"provider"`
	RequesterWallet string   `cbor:"rw" json:"requester_wallet"`
	ProviderWallet  string   `cbor:"pw" json:"provider_wallet"`
	Token           string   `cbor:"t" json:"token"`
	Price           string   `cbor:"pr" json:"price"` // per GPU-hour
	MaxDurationS    int64    `cbor:"d" json:"max_duration_s"`
	GPUs            []string `cbor:"g" json:"gpus"`
	GPUClass        string   `cbor:"c" json:"gpu_class"`
	SpecHash        string   `cbor:"sh" json:"spec_hash"`
	// HoldbackBps of the pay waits for the result's verification: the
	// requester's vouchers cover the rest as the job runs, and the held
	// share is paid once the result agrees, never when it is outvoted.
	HoldbackBps int `cbor:"hb,omitempty" json:"holdback_bps,omitempty"`
}

// Deal is agreed terms with both wallet signatures.
type Deal struct {
	DealTerms
	RequesterSig []byte `cbor:"rs" json:"requester_sig"`
	ProviderSig  []byte `cbor:"ps" json:"provider_sig"`
}

// computeID fills in the deal's ID.
func (t *DealTerms) computeID() error {
	c := *t
	c.ID = ""
	b, err := canonical(c)
	if err != nil {
		return err
	}
	t.ID = hashID(b)
	return nil
}

// DealSigner signs and checks deals with a wallet key (EIP-712); package
// chain implements it, node hands it in.
type DealSigner interface {
	// Wallet is the signer's address (0x...).
	Wallet() string
	SignDeal(t DealTerms) ([]byte, error)
	// VerifyDeal checks that wallet signed t.
	VerifyDeal(t DealTerms, sig []byte, wallet string) error
}

var (
	classRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	walletRE = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
	hashRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	chainRE  = regexp.MustCompile(`^[0-9]{1,20}/0x[0-9a-f]{64}$`)
	uuidRE   = regexp.MustCompile(`^[A-Za-z0-9-]{1,80}$`)
)

// maxAmount is 2^96-1, the most a channel holds.
var maxAmount = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 96), big.NewInt(1))

func parseAmount(field, s string) (*big.Int, error) {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.Sign() < 0 || v.Cmp(maxAmount) > 0 || strings.HasPrefix(s, "+") {
		return nil, fmt.Errorf("%w: %s %q is not an amount of base units", ErrInvalid, field, s)
	}
	return v, nil
}

func checkToken(field, s string) error {
	if s != "native" && !walletRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q is not an address or native", ErrInvalid, field, s)
	}
	return nil
}

func bad(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

func (a *ProviderAdvert) validate(now time.Time) error {
	switch {
	case a.Version != ProtocolVersion:
		return bad("advert version %d, want %d", a.Version, ProtocolVersion)
	case !walletRE.MatchString(a.Wallet):
		return bad("advert wallet %q", a.Wallet)
	case a.ExpiresAtMs <= a.IssuedAtMs || a.ExpiresAtMs-a.IssuedAtMs > int64(24*time.Hour/time.Millisecond):
		return bad("advert lifetime %d ms", a.ExpiresAtMs-a.IssuedAtMs)
	case a.ExpiresAtMs <= now.UnixMilli():
		return bad("advert expired at %s", time.UnixMilli(a.ExpiresAtMs).UTC().Format(time.RFC3339))
	case a.IssuedAtMs > now.Add(time.Minute).UnixMilli():
		return bad("advert issued in the future")
	case len(a.GPUs) > 16 || len(a.Prices) > 16 || len(a.Prices) == 0:
		return bad("advert has %d GPU groups and %d prices", len(a.GPUs), len(a.Prices))
	case a.Healthy < 0 || a.Degraded < 0 || a.Unhealthy < 0 || a.CPUCores < 0 || a.MaxDurationS <= 0:
		return bad("advert has negative counts or no maximum duration")
	}
	for _, g := range a.GPUs {
		if !classRE.MatchString(g.Class) || g.Free < 0 || g.Total < g.Free || g.Total > 1024 || len(g.UUIDs) > g.Free {
			return bad("advert GPU group %+v", g)
		}
		for _, u := range g.UUIDs {
			if len(u) == 0 || len(u) > 96 {
				return bad("advert GPU UUID of %d bytes: want 1 to 96", len(u))
			}
		}
	}
	if err := checkCarried(a.Proofs); err != nil {
		return err
	}
	for _, p := range a.Prices {
		if err := checkToken("advert price token", p.Token); err != nil {
			return err
		}
		if _, err := parseAmount("advert price", p.PerGPUHour); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks requirements as a requester gives them.
func (r Requirements) Validate() error {
	switch {
	case r.GPUClass != "" && !classRE.MatchString(r.GPUClass):
		return bad("gpu_class %q: want a class key such as nvidia-h100-80gb", r.GPUClass)
	case r.GPUs < 0 || r.GPUs > 1024:
		return bad("gpus %d: want 0 to 1024", r.GPUs)
	case r.GPUs == 0 && r.GPUClass != "":
		return bad("gpu_class %q with gpus 0", r.GPUClass)
	case r.CPUCores < 0 || r.Nodes < 0 || r.Nodes > 1024:
		return bad("cpu_cores %d / nodes %d", r.CPUCores, r.Nodes)
	case r.GPUs == 0 && r.CPUCores == 0:
		return bad("a job needs gpus or cpu_cores")
	}
	return nil
}

func (o *JobOffer) validate(now time.Time) error {
	switch {
	case o.Version != ProtocolVersion:
		return bad("offer version %d, want %d", o.Version, ProtocolVersion)
	case !walletRE.MatchString(o.Wallet):
		return bad("offer wallet %q", o.Wallet)
	case o.DeadlineMs <= now.UnixMilli():
		return bad("offer expired")
	case o.DeadlineMs > now.Add(time.Hour).UnixMilli():
		return bad("offer deadline more than an hour away")
	case o.MaxDurationS <= 0 || o.MaxDurationS > 30*24*3600:
		return bad("offer max_duration_s %d", o.MaxDurationS)
	case !hashRE.MatchString(o.SpecHash):
		return bad("offer spec_hash %q", o.SpecHash)
	case o.Chain != "" && !chainRE.MatchString(o.Chain):
		return bad("offer chain %q: want CHAIN-ID/0xGENESIS-HASH", o.Chain)
	case len(o.Addrs) > 8 || len(o.Image) > 256 || len(o.Direct) > 16:
		return bad("offer has %d addresses, %d direct providers, an image of %d bytes", len(o.Addrs), len(o.Direct), len(o.Image))
	case len(o.WalletSig) > 256:
		return bad("offer wallet_sig of %d bytes", len(o.WalletSig))
	case o.HoldbackBps < 0 || o.HoldbackBps > MaxHoldbackBps:
		return bad("offer holdback_bps %d: want 0 to %d", o.HoldbackBps, MaxHoldbackBps)
	}
	if err := o.Req.Validate(); err != nil {
		return err
	}
	if err := checkToken("offer token", o.Token); err != nil {
		return err
	}
	_, err := parseAmount("offer max_price", o.MaxPrice)
	return err
}

func (b *Bid) validate(now time.Time) error {
	switch {
	case b.Version != ProtocolVersion:
		return bad("bid version %d", b.Version)
	case !hashRE.MatchString(b.OfferID):
		return bad("bid offer_id %q", b.OfferID)
	case !walletRE.MatchString(b.Wallet):
		return bad("bid wallet %q", b.Wallet)
	case b.ReservedUntilMs <= now.UnixMilli():
		return bad("bid reservation already over")
	case len(b.GPUs) > 1024:
		return bad("bid names %d GPUs", len(b.GPUs))
	case b.HoldbackBps < 0 || b.HoldbackBps > MaxHoldbackBps:
		return bad("bid holdback_bps %d: want 0 to %d", b.HoldbackBps, MaxHoldbackBps)
	}
	for _, u := range b.GPUs {
		if !uuidRE.MatchString(u) {
			return bad("bid GPU %q", u)
		}
	}
	if err := checkToken("bid token", b.Token); err != nil {
		return err
	}
	_, err := parseAmount("bid price", b.Price)
	return err
}

// VerifyDeal checks a deal another node shows: its ID is its terms' hash
// and both wallets signed them (a provider checks the deals of its gang's
// other ranks this way before letting their providers into the job's
// network).
func (m *Market) VerifyDeal(d Deal) error {
	want := d.DealTerms
	if err := want.computeID(); err != nil {
		return err
	}
	if want.ID != d.ID {
		return fmt.Errorf("deal %s: its ID is not its terms' hash", d.ID)
	}
	if err := m.signer.VerifyDeal(d.DealTerms, d.RequesterSig, d.RequesterWallet); err != nil {
		return fmt.Errorf("deal %s: requester's signature: %w", d.ID, err)
	}
	if err := m.signer.VerifyDeal(d.DealTerms, d.ProviderSig, d.ProviderWallet); err != nil {
		return fmt.Errorf("deal %s: provider's signature: %w", d.ID, err)
	}
	return nil
}

// MaxHoldbackBps bounds a held-back share of pay: beyond half, a provider
// works mostly on the requester's word.
const MaxHoldbackBps = 5000

// FormatBps writes basis points as a percentage ("20%", "12.5%").
func FormatBps(bps int) string {
	return strconv.FormatFloat(float64(bps)/100, 'f', -1, 64) + "%"
}
