package chain

import (
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
)

// Deal is what a requester and a provider both sign when they agree on a
// job: EIP-712 typed data under the domain "AIxBlock Market"/"1", the chain
// and the escrow that will pay, so a wallet shows the price and parties,
// and a signature binds the deal to one payment chain. ID is the hash of
// all the terms (peers, GPUs and so on) as the market encodes them.
type Deal struct {
	ID              common.Hash
	OfferID         common.Hash
	RequesterWallet common.Address
	ProviderWallet  common.Address
	Token           common.Address
	Price           *big.Int // per GPU-hour, base units
	MaxDurationS    uint64
	GPUs            uint32
	SpecHash        common.Hash
}

// DealTypedData is the deal as eth_signTypedData_v4 JSON.
func DealTypedData(chainID *big.Int, escrow common.Address, d Deal) apitypes.TypedData {
	return apitypes.TypedData{
		Types: apitypes.Types{
			"EIP712Domain": eip712Domain,
			"Deal": {
				{Name: "dealId", Type: "bytes32"},
				{Name: "offerId", Type: "bytes32"},
				{Name: "requester", Type: "address"},
				{Name: "provider", Type: "address"},
				{Name: "token", Type: "address"},
				{Name: "pricePerGpuHour", Type: "uint256"},
				{Name: "maxDurationS", Type: "uint64"},
				{Name: "gpus", Type: "uint32"},
				{Name: "specHash", Type: "bytes32"},
			},
		},
		PrimaryType: "Deal",
		Domain: apitypes.TypedDataDomain{
			Name: "AIxBlock Market", Version: "1",
			ChainId:           (*math.HexOrDecimal256)(new(big.Int).Set(chainID)),
			VerifyingContract: escrow.Hex(),
		},
		Message: apitypes.TypedDataMessage{
			"dealId":          d.ID.Hex(),
			"offerId":         d.OfferID.Hex(),
			"requester":       d.RequesterWallet.Hex(),
			"provider":        d.ProviderWallet.Hex(),
			"token":           d.Token.Hex(),
			"pricePerGpuHour": d.Price.String(),
			"maxDurationS":    fmt.Sprint(d.MaxDurationS),
			"gpus":            fmt.Sprint(d.GPUs),
			"specHash":        d.SpecHash.Hex(),
		},
	}
}

func dealDigest(chainID *big.Int, escrow common.Address, d Deal) ([]byte, error) {
	if d.Price == nil || d.Price.Sign() < 0 {
		return nil, fmt.Errorf("deal: price must be 0 or more")
	}
	h, _, err := apitypes.TypedDataAndHash(DealTypedData(chainID, escrow, d))
	if err != nil {
		return nil, fmt.Errorf("deal: %w", err)
	}
	return h, nil
}

// SignDeal signs d with the wallet for the escrow on chainID.
func (w *Wallet) SignDeal(chainID *big.Int, escrow common.Address, d Deal) ([]byte, error) {
	h, err := dealDigest(chainID, escrow, d)
	if err != nil {
		return nil, err
	}
	sig, err := crypto.Sign(h, w.key)
	if err != nil {
		return nil, fmt.Errorf("sign deal: %w", err)
	}
	sig[64] += 27
	return sig, nil
}

// VerifyDeal checks that signer signed d for the escrow on chainID.
func VerifyDeal(chainID *big.Int, escrow common.Address, d Deal, sig []byte, signer common.Address) error {
	if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
		return fmt.Errorf("deal signature: want 65 bytes ending in 27 or 28")
	}
	if new(big.Int).SetBytes(sig[32:64]).Cmp(secp256k1HalfN) > 0 {
		return fmt.Errorf("deal signature is malleable (high s)")
	}
	h, err := dealDigest(chainID, escrow, d)
	if err != nil {
		return err
	}
	s := append([]byte{}, sig...)
	s[64] -= 27
	pub, err := crypto.SigToPub(h, s)
	if err != nil {
		return fmt.Errorf("deal signature: %w", err)
	}
	if got := crypto.PubkeyToAddress(*pub); got != signer {
		return fmt.Errorf("deal signed by %s, not %s", got, signer)
	}
	return nil
}
