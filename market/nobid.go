package market

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/aixblock/aixblock/gpu"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// NoBid is a provider's signed answer to an offer sent to it directly that
// it does not bid on: why, in a few words, so the requester can tell the
// user what to change. Providers that hear an offer by gossip send none.
type NoBid struct {
	Version  int    `cbor:"v" json:"version"`
	OfferID  string `cbor:"o" json:"offer_id"`
	Provider string `cbor:"p" json:"provider"`
	// Code is one of the NoBid* codes.
	Code string `cbor:"c" json:"code"`
	// Class and Floor (base units per GPU-hour, or per core-hour for cpu)
	// name the price a NoBidPrice refusal was over.
	Class string `cbor:"cl" json:"class"`
	Floor string `cbor:"f" json:"floor"`
	// Detail says the rest, with numbers ("need 4 CPU cores, 2 here").
	Detail string `cbor:"d" json:"detail"`
}

func (n *NoBid) signer() string { return n.Provider }

// Why a provider does not bid.
const (
	NoBidPrice    = "price"    // the floor is over the offer's max price
	NoBidGPUs     = "gpus"     // not enough free healthy GPUs of the class
	NoBidCPU      = "cpu"      // not enough CPU cores
	NoBidMemory   = "memory"   // not enough memory
	NoBidDisk     = "disk"     // not enough disk
	NoBidImage    = "image"    // the image is not accepted here
	NoBidToken    = "token"    // no price in the offer's token
	NoBidChain    = "chain"    // the requester pays on another chain
	NoBidDuration = "duration" // the job may run longer than jobs here do
	NoBidLimit    = "limit"    // the requester holds too many reservations here
	NoBidDeclined = "declined" // the pricing command declined, or the offer was already declined
	NoBidFunds    = "funds"    // the requester's wallet cannot pay the deal, or is not the requester's
	NoBidHoldback = "holdback" // the offer holds back more pay than this provider accepts
)

var noBidCodes = []string{NoBidPrice, NoBidGPUs, NoBidCPU, NoBidMemory, NoBidDisk, NoBidImage, NoBidToken, NoBidChain, NoBidDuration, NoBidLimit, NoBidDeclined, NoBidFunds, NoBidHoldback}

// Size limits of a no-bid: it fits in an offer's response with room.
const (
	MaxNoBidBytes  = 1 << 10
	maxNoBidDetail = 200
)

func (n *NoBid) validate() error {
	switch {
	case n.Version != ProtocolVersion:
		return bad("no-bid version %d", n.Version)
	case !hashRE.MatchString(n.OfferID):
		return bad("no-bid offer_id %q", n.OfferID)
	case !slices.Contains(noBidCodes, n.Code):
		return bad("no-bid code %q", n.Code)
	case n.Class != "" && !classRE.MatchString(n.Class):
		return bad("no-bid class %q", n.Class)
	case n.Code == NoBidPrice && n.Floor == "":
		return bad("price no-bid without a floor")
	case len(n.Detail) > maxNoBidDetail:
		return bad("no-bid detail of %d bytes over %d", len(n.Detail), maxNoBidDetail)
	}
	// The detail ends up on a terminal: printable ASCII only.
	for _, r := range n.Detail {
		if r < 0x20 || r > 0x7e {
			return bad("no-bid detail has character %U", r)
		}
	}
	if n.Floor != "" {
		if _, err := parseAmount("no-bid floor", n.Floor); err != nil {
			return err
		}
	}
	return nil
}

// refusal is why the bid engine did not bid; handleOffer sends it back as
// a signed NoBid.
type refusal struct {
	code, class, floor, detail string
}

func (r *refusal) Error() string {
	if r.code == NoBidPrice {
		return fmt.Sprintf("no bid: price floor %s per GPU-hour for %s is over the offer's max price", r.floor, r.class)
	}
	return "no bid: " + r.detail
}

func refuse(code, format string, a ...any) *refusal {
	d := fmt.Sprintf(format, a...)
	if len(d) > maxNoBidDetail {
		d = d[:maxNoBidDetail]
	}
	return &refusal{code: code, detail: d}
}

// sealNoBid signs a refusal of offer id.
func sealNoBid(id string, self peer.ID, r *refusal, key crypto.PrivKey) ([]byte, error) {
	nb := NoBid{Version: ProtocolVersion, OfferID: id, Provider: self.String(), Code: r.code, Class: r.class, Floor: r.floor, Detail: printable(r.detail)}
	raw, _, err := seal("nobid", &nb, key)
	return raw, err
}

// decodeNoBid opens a no-bid from the network and checks it answers offer
// offerID from provider p.
func decodeNoBid(raw []byte, offerID string, p peer.ID) (*NoBid, error) {
	var nb NoBid
	if _, err := open("nobid", raw, MaxNoBidBytes, &nb); err != nil {
		return nil, err
	}
	if err := nb.validate(); err != nil {
		return nil, err
	}
	switch {
	case nb.OfferID != offerID:
		return nil, bad("no-bid for offer %s, not %s", short(nb.OfferID), short(offerID))
	case nb.Provider != p.String():
		return nil, bad("no-bid of %s sent by %s", nb.Provider, p)
	}
	return &nb, nil
}

// envelopeKind is the kind of a signed message, before it is opened.
func envelopeKind(raw []byte) string {
	var env envelope
	if len(raw) > MaxBidBytes || codec.Unmarshal(raw, &env) != nil {
		return ""
	}
	return env.Kind
}

// Refusal is why one provider asked directly did not bid, as the requester
// shows it.
type Refusal struct {
	Provider string `json:"provider"`
	// Code is a NoBid code, or "" when the provider gave no signed reason
	// (it did not answer, or an older version answered with an error).
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason"`
}

func (r Refusal) String() string { return short(r.Provider) + ": " + r.Reason }

// refusalOf renders a no-bid; amounts go through the requester's
// FormatAmount so that they read in the token's units.
func (m *Market) refusalOf(nb *NoBid, o *JobOffer) Refusal {
	r := Refusal{Provider: nb.Provider, Code: nb.Code, Reason: nb.Detail}
	if nb.Code == NoBidPrice {
		per := "GPU-hour"
		if nb.Class == CPU {
			per = "core-hour"
		}
		r.Reason = fmt.Sprintf("price floor %s per %s for %s > max price %s",
			m.cfg.FormatAmount(o.Token, nb.Floor), per, orAny(nb.Class), m.cfg.FormatAmount(o.Token, o.MaxPrice))
	}
	return r
}

// printable keeps printable ASCII of s, at most maxNoBidDetail bytes: a
// reason from another peer goes to a terminal.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxNoBidDetail {
			break
		}
		if r >= 0x20 && r <= 0x7e {
			b.WriteRune(r)
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// knownNames are GPUs the market knows by name, so that a requester can
// tell a class that does not exist from one no provider has now.
var knownNames = []struct {
	name string
	mib  uint64
}{
	{"NVIDIA H100 80GB HBM3", 81559}, {"NVIDIA H100 NVL", 95830}, {"NVIDIA H200", 143771},
	{"NVIDIA B200", 183359}, {"NVIDIA A100-SXM4-40GB", 40960}, {"NVIDIA A100-SXM4-80GB", 81920},
	{"NVIDIA L40S", 46068}, {"NVIDIA L4", 23034}, {"NVIDIA A10G", 23028}, {"NVIDIA A10", 23028},
	{"NVIDIA GeForce RTX 4090", 24564}, {"NVIDIA GeForce RTX 3090", 24576}, {"NVIDIA RTX 6000 Ada Generation", 49140},
	{"Tesla V100-SXM2-16GB", 16384}, {"Tesla T4", 15360},
}

// KnownClasses are the GPU classes this build knows of (by the gpu
// package's naming), sorted.
func KnownClasses() []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range knownNames {
		c := gpu.ClassKey(k.name, k.mib)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// classesSeen are the known classes and those in the adverts this node
// holds, sorted.
func (m *Market) classesSeen() []string {
	set := map[string]bool{}
	for _, c := range KnownClasses() {
		set[c] = true
	}
	m.mu.Lock()
	for _, a := range m.adverts {
		for _, g := range a.GPUs {
			set[g.Class] = true
		}
	}
	m.mu.Unlock()
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// unknownClass says why class is not one the market knows, with the known
// ones listed and the nearest named; "" when it is known.
func (m *Market) unknownClass(class string) string {
	if class == "" {
		return ""
	}
	known := m.classesSeen()
	if slices.Contains(known, class) {
		return ""
	}
	msg := fmt.Sprintf("unknown GPU class %q (known: %s)", class, strings.Join(known, ", "))
	for _, k := range known {
		if strings.Contains(k, class) {
			return msg + fmt.Sprintf("; did you mean %s?", k)
		}
	}
	return msg
}
